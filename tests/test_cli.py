"""The command line: exit codes, tables, JSON, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cartesian_irreps.cli import main


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
