"""The command line: exit codes, tables, JSON, clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from cartesian_irreps.cli import main
from cartesian_irreps.verify_budget import SAFE_LMAX, estimated_seconds, format_duration


def test_verify_passes_and_writes_json(tmp_path, capsys):
    out = tmp_path / "v.json"
    assert main(["verify", "--lmax", "2", "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "object" in text and "seconds" in text and " 0 failed" in text
    data = json.loads(out.read_text())
    assert data["failed"] == 0 and data["passed"] == len(data["results"]) > 100


def test_verify_fails_on_mutation(capsys):
    assert main(["verify", "--lmax", "2", "--mutate", "2,2,2", "--quiet", "--table", "full"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_show_prints_formula(capsys):
    assert main(["show", "1", "1", "2", "--entries"]) == 0
    out = capsys.readouterr().out
    assert "published  C' = 3/2" in out and "LaTeX" in out and "C[" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "1", "1", "3"], "triangle"),
        (["show", "1", "x", "1"], "non-negative integer"),
        (["show", "-1", "1", "1"], "non-negative integer"),
        (["verify", "--lmax", "-2"], "non-negative integer"),
        (["verify", "--lmax", "two"], "non-negative integer"),
        (["verify", "--lmax", "2.5"], "non-negative integer"),
        (["verify", "--layout", "spherical"], "invalid choice"),
        (["show", "1", "1", "1", "--normalization", "l2"], "invalid choice"),
        (["verify", "--lmax", "2", "--mutate", "1,1"], "l1,l2,l3"),
        (["verify", "--lmax", "2", "--mutate", "1,1,5"], "triangle"),
    ],
)
def test_bad_arguments_give_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "cartesian_irreps", "show", "0", "0", "0", "--format", "text"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Product 0 ⊗ 0 -> 0" in proc.stdout


@pytest.mark.parametrize("lmax", [SAFE_LMAX + 1, 100])
def test_verify_refuses_lmax_above_the_safe_bound(lmax, capsys):
    assert main(["verify", "--lmax", str(lmax)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartesian-irreps verify: error: ")
    assert f"--lmax {lmax} is above the safe bound {SAFE_LMAX}" in err and "--force" in err
    assert f"estimated ~{format_duration(estimated_seconds(lmax))} at lmax {lmax}" in err
    assert "lmax^6" in err


def test_verify_refusal_is_instant_and_exits_nonzero_from_the_shell():
    argv = [sys.executable, "-m", "cartesian_irreps", "verify", "--lmax", "100"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "error: --lmax 100 is above the safe bound" in proc.stderr and "years" in proc.stderr


def test_force_lifts_the_bound(monkeypatch, capsys):
    """--force runs above the bound (verify.run is replaced: the real run would take minutes)."""
    from cartesian_irreps import verify

    calls = []
    monkeypatch.setattr(verify, "run", lambda lmax, **kw: calls.append(lmax) or [])
    assert main(["verify", "--lmax", str(SAFE_LMAX + 1), "--force", "--quiet"]) == 0
    assert calls == [SAFE_LMAX + 1]
    assert "0 passed, 0 failed" in capsys.readouterr().out


def test_verify_prints_one_progress_line_per_rank(capsys):
    assert main(["verify", "--lmax", "2", "--layout", "compact"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("verify: rank")]
    assert [line.split(":")[1].split()[1] for line in lines] == ["0/2", "1/2", "2/2"]
    for line in lines:
        assert re.search(r"done: \d+ checks, 0 failed, [\d.]+ s \(elapsed [\d.]+ s\)$", line), line
    assert "estimated" in captured.err.splitlines()[0]
    assert "verify: rank" not in captured.out  # progress goes to stderr, the table to stdout
    total = sum(int(re.search(r"(\d+) checks", line).group(1)) for line in lines)
    assert f"{total} passed, 0 failed" in captured.out


def test_quiet_verify_prints_no_progress(capsys):
    assert main(["verify", "--lmax", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
