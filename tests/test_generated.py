"""Generated modules: fresh, deterministic, and a corrupted coefficient is caught."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cartesian_irreps._validate import triples
from cartesian_irreps.cli import main
from cartesian_irreps.generated import couplings
from cartesian_irreps.generator import emit, strategy
from cartesian_irreps.symbolic.coupling import derive_coupling


def test_generate_check_passes(capsys):
    assert main(["generate", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_generation_is_deterministic():
    tuning = strategy.load_tuning()
    a = emit.sources(3, plans=lambda lmax: strategy.plans_source(lmax, tuning))
    b = emit.sources(3, plans=lambda lmax: strategy.plans_source(lmax, tuning))
    assert a == b


def test_check_detects_a_broken_coefficient(tmp_path):
    files = emit.sources(2)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert emit.stale(files, tmp_path) == []
    path = tmp_path / "couplings.py"
    text = path.read_text()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("(2, 2, 2):"))
    value = re.findall(r"-?\d\.\d+(?:e-?\d+)?", line)[-1]
    broken_line = line.replace(value, repr(float(value) * (1 + 1e-15) + 1e-16))
    assert broken_line != line
    path.write_text(text.replace(line, broken_line))
    problems = emit.stale(files, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("couplings.py: stale")


@pytest.mark.parametrize("t", triples(6))
def test_committed_coefficients_equal_the_exact_ones(t):
    """Every generated float is the correctly rounded exact coefficient (a broken one fails here)."""
    i, j, k, v = couplings.COUPLINGS[t]
    dense = np.zeros(tuple(2 * l + 1 for l in t))
    dense[i, j, k] = v
    assert np.array_equal(dense, derive_coupling(*t, "unit").floats())


def test_lmax_8_generates(tmp_path, capsys):
    assert main(["generate", "--lmax", "8", "--output", str(tmp_path), "--quiet"]) == 0
    text = (tmp_path / "couplings.py").read_text()
    assert "(8, 8, 8):" in text and "LMAX = 8" in text
    assert "(8, 8, 8):" in (tmp_path / "plans.py").read_text()
    assert main(["generate", "--lmax", "8", "--output", str(tmp_path), "--check"]) == 0
