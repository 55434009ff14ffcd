"""The polynomial dictionary for symmetric tensors, checked against explicit full-layout tensors."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from sympy import QQ

from cartesian_irreps.symbolic.polynomials import (
    RING,
    X,
    Y,
    Z,
    frobenius,
    from_coordinates,
    laplacian,
    monomials,
    poly_from_tensor,
    substitute_linear,
    tensor_from_poly,
)
from tests.conftest import rational_vectors, rationals


@st.composite
def symmetric_polys(draw, l: int):
    return from_coordinates(draw(rational_vectors(len(monomials(l)))), l)


@given(st.integers(0, 4).flatmap(lambda l: st.tuples(st.just(l), symmetric_polys(l), symmetric_polys(l))))
def test_frobenius_matches_full_tensor_sum(args):
    l, p, q = args
    tp, tq = tensor_from_poly(p, l), tensor_from_poly(q, l)
    assert frobenius(p, q) == (tp * tq).sum() if l else frobenius(p, q) == tp * tq


@given(st.integers(0, 4).flatmap(lambda l: st.tuples(st.just(l), symmetric_polys(l))))
def test_tensor_round_trip_and_symmetry(args):
    l, p = args
    t = tensor_from_poly(p, l)
    assert poly_from_tensor(t) == p
    for perm in itertools.permutations(range(l)):
        assert (np.transpose(t, perm) == t).all()


@given(st.integers(2, 5).flatmap(lambda l: st.tuples(st.just(l), symmetric_polys(l))))
def test_laplacian_is_trace(args):
    """``Delta p_X = l (l-1) p_{Tr X}`` with the trace over the first two indices."""
    l, p = args
    tr = np.trace(tensor_from_poly(p, l), axis1=0, axis2=1)
    expected = poly_from_tensor(np.asarray(tr, dtype=object)) if l > 2 else RING(tr)
    assert laplacian(p) == expected * (l * (l - 1))


@given(rationals, rationals, rationals)
def test_substitution_is_the_tensor_action(a, b, c):
    """``p(g^T n)`` equals the polynomial of ``g_{ia} g_{jb} X_{ab}`` for a rank-2 tensor."""
    g = [[a, b, QQ(1)], [QQ(0), c, a], [b, QQ(2), c]]
    p = X * Y + 3 * Z**2 - a * X * Z
    t = tensor_from_poly(p, 2)
    gm = np.array(g, dtype=object)
    rotated = gm.dot(t).dot(gm.T)
    assert substitute_linear(p, g) == poly_from_tensor(rotated)
