"""Argument validation shared by every layer."""

from __future__ import annotations

import pytest

from cartesian_irreps._validate import check_choice, check_rank, check_triple, parity_of, triples


@pytest.mark.parametrize("bad", [True, 1.0, "2", None, -1])
def test_check_rank_rejects(bad):
    with pytest.raises((TypeError, ValueError)):
        check_rank(bad)


def test_triangle_and_parity():
    assert check_triple(2, 3, 1) == (2, 3, 1)
    with pytest.raises(ValueError, match=r"1 <= l3 <= 5"):
        check_triple(2, 3, 6)
    assert parity_of(1, 1, 1) == "odd" and parity_of(1, 1, 2) == "even"
    brute = [(a, b, c) for a in range(3) for b in range(3) for c in range(3) if abs(a - b) <= c <= a + b]
    assert triples(2) == sorted(brute)
    assert all(parity_of(*t) == "odd" for t in triples(3, "odd"))


def test_check_choice():
    assert check_choice("unit", ("unit",), "normalisation") == "unit"
    with pytest.raises(ValueError, match="unknown normalisation 'l2'"):
        check_choice("l2", ("unit",), "normalisation")
