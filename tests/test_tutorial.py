"""docs/tutorial.md runs: its bash and python blocks, in order, in a temporary folder, on small settings.

The tutorial is read from the repository (``tests/../docs``); the commands run the installed ``mlip``
(the console script next to this Python). Small settings are plain text substitutions listed in
:data:`SMALL` (fewer structures, epochs and MD steps), each of which must match, so a changed tutorial
cannot silently escape them. Every command of the page runs; none is skipped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
BIN = Path(sys.executable).parent

#: (text in the tutorial, replacement for the test): every one must be found.
SMALL = [
    ("make_emt_dataset(n_structures=150, seed=0)", "make_emt_dataset(n_structures=20, seed=0, size=(1, 1, 2))"),
    ("mlip demo  ", "mlip demo --epochs 1 --structures 12 --md-steps 4 --max-minutes 0.5 --quiet  "),
    ("--epochs 60 --max-minutes 4 --output-dir run", "--epochs 2 --output-dir run"),
    ("epochs: 60", "epochs: 1"),
    ("--epochs 10 --output-dir run_finetuned", "--epochs 1 --output-dir run_finetuned"),
    ("--output-dir run --epochs 100 ", "--output-dir run --epochs 3 "),
    ("--output-dir run --epochs 110 --lr", "--output-dir run --epochs 4 --lr"),
    ("--steps 1000 --temperature 300", "--steps 10 --temperature 300"),
    ("    epochs=60,", "    epochs=1,"),
    ('"md_py", steps=1000)', '"md_py", steps=5)'),
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return env


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every ``bash`` and ``python`` block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(bash|python)\n(.*?)```", text, flags=re.S)]


def small(text: str) -> str:
    for old, new in SMALL:
        assert old in text, f"tutorial no longer contains {old!r}: update tests/test_tutorial.py SMALL"
        text = text.replace(old, new)
    return text


@pytest.mark.slow
def test_tutorial_runs(tmp_path: Path) -> None:
    text = small(TUTORIAL.read_text())
    found = blocks(text)
    assert len(found) >= 8, "the tutorial's command blocks were not found"
    for k, (lang, code) in enumerate(found):
        if lang == "bash":
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        else:
            cmd = [sys.executable, "-c", code]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=600)
        assert proc.returncode == 0, (
            f"block {k} ({lang}) failed:\n{code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    # what the commands must have written (the page describes these files)
    for path in ("run/best.npz", "run/log.csv", "eval/eval_predictions.extxyz", "eval/eval_metrics.json"):
        assert (tmp_path / path).is_file(), path
    for path in ("md/md_trajectory.extxyz", "predicted/eval_predictions.extxyz", "eval_py/eval_metrics.json"):
        assert (tmp_path / path).is_file(), path


def test_tutorial_documents_the_thread_variables() -> None:
    text = TUTORIAL.read_text()
    assert "CARTESIAN_IRREPS_NUM_THREADS" in text and "OPENBLAS_NUM_THREADS" in text


def test_small_settings_all_apply() -> None:
    small(TUTORIAL.read_text())  # every substitution still matches the page
