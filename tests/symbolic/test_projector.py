"""The projector P_l: two constructions, the textbook placement formula, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.symbolic.basis import harmonic_basis
from cartesian_irreps.symbolic.polynomials import frobenius, from_coordinates, laplacian, monomials, tensor_from_poly
from cartesian_irreps.symbolic.projector import (
    detrace_by_placements,
    harmonic_projection,
    projector,
    projector_symmetric,
)
from tests.conftest import rational_vectors


@st.composite
def rank_and_poly(draw, lmax: int = 6):
    l = draw(st.integers(0, lmax))
    return l, from_coordinates(draw(rational_vectors(len(monomials(l)))), l)


@given(rank_and_poly())
def test_harmonic_projection_is_orthogonal_projection(args):
    l, p = args
    h = harmonic_projection(p, l)
    assert not laplacian(h)  # traceless
    assert harmonic_projection(h, l) == h  # idempotent
    for b in harmonic_basis(l).polys:  # p - h is orthogonal to every traceless tensor
        assert frobenius(b, p - h) == 0


@given(rank_and_poly(lmax=3))
def test_projection_matches_literal_placement_formula(args):
    l, p = args
    assert (detrace_by_placements(tensor_from_poly(p, l)) == tensor_from_poly(harmonic_projection(p, l), l)).all()


@pytest.mark.parametrize("l", range(7))
def test_constructions_agree(l):
    assert projector_symmetric(l, "closed_form") == projector_symmetric(l, "nullspace")


@pytest.mark.parametrize("l", range(4))
def test_full_matrix_properties(l):
    p = projector(l)
    assert p.shape == (3**l, 3**l)
    assert p == p.T
    assert p * p == p
    assert p.rank() == 2 * l + 1
    assert p == projector(l, "nullspace")


def test_rank_two_closed_form():
    """P_2(A)_ij = (A_ij + A_ji)/2 - delta_ij tr(A)/3, written out by hand."""
    a = sympy.Matrix(3, 3, sympy.symbols("a0:9"))
    expected = (a + a.T) / 2 - sympy.eye(3) * a.trace() / 3
    got = projector(2) * a.reshape(9, 1)
    assert sympy.simplify(got - expected.reshape(9, 1)) == sympy.zeros(9, 1)


def test_invalid_requests():
    with pytest.raises(ValueError, match=">= 0"):
        projector(-1)
    with pytest.raises(TypeError, match="integer"):
        projector(2.0)
    with pytest.raises(ValueError, match="construction"):
        projector(2, construction="svd")
    with pytest.raises(ValueError, match="layout"):
        projector(2, layout="compact")
    with pytest.raises(ValueError, match="symmetric"):
        projector(7)
    assert np.asarray(projector(7, layout="symmetric")).shape == (36, 36)
