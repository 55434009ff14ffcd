"""docs/tutorial.md runs: its bash and python blocks, in order, in a temporary folder, on small settings.

The tutorial is read from the repository (``tests/../docs``); the commands run the installed ``mlip``
(the console script next to this Python). Small settings are plain text substitutions listed in
:data:`SMALL` (fewer structures, epochs and MD steps), each of which must match, so a changed tutorial
cannot silently escape them. Command lines that use a training feature not yet available in the
installed ``mlip`` (see :data:`PENDING`) are skipped, and reported by :func:`test_tutorial_features_available`.
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

#: Features of ``mlip train`` being added (tutorial lines using them are skipped until the installed
#: ``mlip`` has them): name -> (regex on a command line, probe text in ``mlip train --help``).
PENDING = {
    "--config YAML": (r"--config \S+\.ya?ml", "YAML"),
    "--test": (r"--test ", "--test"),
    "--init-from": (r"--init-from ", "--init-from"),
    "--e0 average": (r"--e0 (average|least-squares)", "average"),
    "--resume --lr": (r"--resume .*--lr ", "--resume"),
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return env


def _train_help() -> str:
    out = subprocess.run([BIN / "mlip", "train", "--help"], capture_output=True, text=True, env=_env())
    return out.stdout if out.returncode == 0 else ""


def missing_features() -> dict[str, str]:
    """Pending features the installed ``mlip`` does not have yet: name -> command-line regex."""
    text = _train_help()
    help_lr = re.search(r"--lr LR\s+(.*?)\n\s+--", text, flags=re.S)
    have = {name: probe in text for name, (_, probe) in PENDING.items()}
    have["--resume --lr"] = bool(help_lr and "resume" in help_lr.group(1))
    have["--config YAML"] = "YAML" in text or "yaml" in text
    return {name: PENDING[name][0] for name, ok in have.items() if not ok}


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every ``bash`` and ``python`` block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(bash|python)\n(.*?)```", text, flags=re.S)]


def small(text: str) -> str:
    for old, new in SMALL:
        assert old in text, f"tutorial no longer contains {old!r}: update tests/test_tutorial.py SMALL"
        text = text.replace(old, new)
    return text


def _skip_pending(code: str, pending: dict[str, str], skipped: list[str]) -> str:
    """Replace each command (continuation lines joined) that uses a pending feature by an echo."""
    out, lines, i = [], code.splitlines(), 0
    while i < len(lines):
        j = i
        while lines[j].rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
        command = " ".join(line.rstrip().rstrip("\\") for line in lines[i : j + 1])
        hit = [name for name, rx in pending.items() if re.search(rx, command)]
        if hit and command.lstrip().startswith("mlip"):
            skipped.append(f"{', '.join(hit)}: {command.strip()[:100]}")
            out.append(f"echo 'skipped (pending {', '.join(hit)})'")
        else:
            out.extend(lines[i : j + 1])
        i = j + 1
    return "\n".join(out)


@pytest.mark.slow
def test_tutorial_runs(tmp_path: Path) -> None:
    text = small(TUTORIAL.read_text())
    pending, skipped = missing_features(), []
    found = blocks(text)
    assert len(found) >= 8, "the tutorial's command blocks were not found"
    for k, (lang, code) in enumerate(found):
        if lang == "bash":
            code = _skip_pending(code, pending, skipped)
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
    # commands of pending features were replaced by an echo; test_tutorial_features_available reports them
    assert len(skipped) <= sum(len(re.findall(rx, text)) for rx in pending.values())


def test_tutorial_features_available() -> None:
    """Reports (as a skip) the tutorial's training features that the installed mlip lacks."""
    missing = missing_features()
    if missing:
        pytest.skip(f"documented in docs/tutorial.md, not yet in the installed mlip: {sorted(missing)}")


def test_tutorial_documents_the_thread_variables() -> None:
    text = TUTORIAL.read_text()
    assert "CARTESIAN_IRREPS_NUM_THREADS" in text and "OPENBLAS_NUM_THREADS" in text


def test_small_settings_all_apply() -> None:
    small(TUTORIAL.read_text())  # every substitution still matches the page
