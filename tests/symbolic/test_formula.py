"""`show` formulas: the printed coefficients are the derived ones."""

from __future__ import annotations

import pytest

from cartesian_irreps.symbolic.formula import compact_entries, placements, product_formula


def test_rank_two_product_formula():
    f = product_formula(2, 2, 2)
    assert "A_{ij} = x_{ia} y_{aj}" in f.plain
    assert "S_{ij} - 1/3 {δ_ij S_{aa}}" in f.plain
    assert "published  C' = 2" in f.plain
    assert r"\tfrac{1}{3}" in f.latex


def test_odd_product_shows_levi_civita():
    f = product_formula(1, 1, 1)
    assert "ε_iuv x_{u} y_{v}" in f.plain
    assert "pseudotensor" in f.plain
    assert r"\varepsilon" in f.latex


@pytest.mark.parametrize(("l", "m", "n"), [(2, 1, 1), (3, 1, 3), (4, 1, 6), (4, 2, 3), (6, 3, 15)])
def test_placement_counts(l, m, n):
    assert placements(l, m) == n


def test_entries_are_exact():
    entries = compact_entries(1, 1, 0, "published")
    assert [(m1, m2, m3) for m1, m2, m3, _ in entries] == [(-1, -1, 0), (0, 0, 0), (1, 1, 0)]
    assert all(v == 1 for *_, v in entries)


def test_large_ranks_are_refused_clearly():
    with pytest.raises(ValueError, match="ranks up to"):
        product_formula(11, 11, 0)
