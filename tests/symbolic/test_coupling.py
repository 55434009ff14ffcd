"""Products l1 x l2 -> l3: equivariance with random exact rotations, the paper's constants, layouts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st
from sympy import QQ

from cartesian_irreps._validate import parity_of, triples
from cartesian_irreps.symbolic.basis import harmonic_basis
from cartesian_irreps.symbolic.coupling import (
    apply_table,
    coupling,
    derive_coupling,
    product_polynomial,
    raw_table,
)
from cartesian_irreps.symbolic.polynomials import substitute_linear, tensor_from_poly
from cartesian_irreps.symbolic.projector import detrace_by_placements
from cartesian_irreps.verify import cayley
from tests.conftest import nonzero_rationals, rational_vectors, rationals

#: C' of the published ICTP code (method.md), an external reference for the even triples with l <= 3
PUBLISHED = {
    (0, 0, 0): 1, (1, 0, 1): 1, (0, 1, 1): 1, (2, 0, 2): 1, (0, 2, 2): 1, (3, 0, 3): 1, (0, 3, 3): 1,
    (1, 1, 0): 1, (2, 2, 0): sympy.Rational(2, 3), (3, 3, 0): sympy.Rational(2, 5), (2, 1, 1): 1, (1, 2, 1): 1,
    (3, 2, 1): sympy.Rational(2, 3), (2, 3, 1): sympy.Rational(2, 3), (1, 1, 2): sympy.Rational(3, 2), (2, 2, 2): 2,
    (3, 3, 2): sympy.Rational(3, 2), (3, 1, 2): 1, (1, 3, 2): 1, (2, 1, 3): sympy.Rational(5, 3),
    (1, 2, 3): sympy.Rational(5, 3), (3, 2, 3): sympy.Rational(5, 2), (2, 3, 3): sympy.Rational(5, 2),
}  # fmt: skip


def test_published_constants_match_the_published_code():
    assert set(PUBLISHED) == set(triples(3, "even"))
    for t, value in PUBLISHED.items():
        assert derive_coupling(*t, "published").scale == value, t


triple_strategy = st.sampled_from(triples(4))


@st.composite
def ict(draw, l: int):
    """A random ICT as a rational harmonic polynomial."""
    return harmonic_basis(l).combine(draw(rational_vectors(2 * l + 1)))


@given(
    triple_strategy.flatmap(lambda t: st.tuples(st.just(t), ict(t[0]), ict(t[1]))),
    rationals,
    rationals,
    rationals,
    st.booleans(),
)
def test_equivariance_under_random_exact_rotations_and_reflections(args, a, b, c, improper):
    """P(g x, g y) = det(g)^parity g P(x, y) for random rational rotations g (Cayley), and -g."""
    (l1, l2, l3), p, q = args
    g = cayley(a, b, c)
    if improper:
        g = [[-v for v in row] for row in g]
    sign = -1 if improper and parity_of(l1, l2, l3) == "odd" else 1
    lhs = product_polynomial(substitute_linear(p, g), substitute_linear(q, g), l1, l2, l3)
    rhs = substitute_linear(product_polynomial(p, q, l1, l2, l3), g)
    assert lhs == sign * rhs
    if rhs:
        assert lhs != -sign * rhs  # the other sign fails


@given(triple_strategy.flatmap(lambda t: st.tuples(st.just(t), ict(t[0]), ict(t[0]), ict(t[1]))), nonzero_rationals)
def test_bilinear(args, s):
    (l1, l2, l3), p, p2, q = args
    assert product_polynomial(p + s * p2, q, l1, l2, l3) == product_polynomial(
        p, q, l1, l2, l3
    ) + s * product_polynomial(p2, q, l1, l2, l3)


def _levi_civita():
    eps = np.zeros((3, 3, 3), dtype=object)
    for (i, j, k), s in zip(itertools.permutations(range(3)), (1, -1, -1, 1, 1, -1)):
        eps[i, j, k] = s
    return eps


def _literal_product(x: np.ndarray, y: np.ndarray, l3: int) -> np.ndarray:
    """The paper's definition with einsum on explicit tensors, then the textbook detracer."""
    l1, l2 = x.ndim, y.ndim
    s = l1 + l2 - l3
    k = s // 2
    letters = "abcdefgh"
    xi = letters[: l1 - k - s % 2]
    yi = letters[len(xi) : len(xi) + l2 - k - s % 2]
    dummies = "pqrs"[:k]
    if s % 2 == 0:
        a = np.einsum(f"{xi}{dummies},{dummies}{yi}->{xi}{yi}", x, y)
    else:
        a = np.einsum(f"wuv,{xi}{dummies}u,{dummies}v{yi}->{xi}w{yi}", _levi_civita(), x, y)
    return detrace_by_placements(np.asarray(a, dtype=object))


@given(st.sampled_from([t for t in triples(3)]).flatmap(lambda t: st.tuples(st.just(t), ict(t[0]), ict(t[1]))))
def test_polynomial_route_matches_literal_index_contraction(args):
    (l1, l2, l3), p, q = args
    x, y = tensor_from_poly(p, l1), tensor_from_poly(q, l2)
    literal = _literal_product(x, y, l3)
    assert (np.asarray(literal, dtype=object) == tensor_from_poly(product_polynomial(p, q, l1, l2, l3), l3)).all()


@given(
    st.sampled_from(triples(3)).flatmap(lambda t: st.tuples(st.just(t), ict(t[0]), ict(t[1]))),
    st.sampled_from(["raw", "published", "unit"]),
)
def test_full_layout_tensor_acts_like_the_definition(args, norm):
    (l1, l2, l3), p, q = args
    cpl = derive_coupling(l1, l2, l3, norm)
    full = cpl.full_rational()
    x, y = tensor_from_poly(p, l1), tensor_from_poly(q, l2)
    z = np.einsum("i,ijk,j->k", x.ravel(), full.reshape(3**l1, 3**l2, 3**l3), y.ravel())
    expected = tensor_from_poly(product_polynomial(p, q, l1, l2, l3), l3).ravel()
    assert (z == expected).all()  # full_rational() is F / C'
    if l1 + l2 + l3 <= 4:
        exact = np.array(cpl.full().tolist(), dtype=object).reshape(full.shape) if full.ndim else cpl.full()
        assert (np.vectorize(lambda v: sympy.nsimplify(v))(exact / cpl.scale) == full).all()


@given(
    st.sampled_from(triples(4)).flatmap(
        lambda t: st.tuples(st.just(t), rational_vectors(2 * t[0] + 1), rational_vectors(2 * t[1] + 1))
    )
)
def test_table_reproduces_polynomial_product(args):
    (l1, l2, l3), xc, yc = args
    b1, b2, b3 = (harmonic_basis(l) for l in (l1, l2, l3))
    z = apply_table(raw_table(l1, l2, l3), xc, yc)
    assert b3.combine(z) == product_polynomial(b1.combine(xc), b2.combine(yc), l1, l2, l3)


@pytest.mark.parametrize("t", triples(4))
def test_unit_normalisation_and_floats(t):
    cpl = derive_coupling(*t, "unit")
    f = cpl.floats()
    assert abs((f**2).sum() - 1) < 1e-14
    exact = np.array(cpl.compact().tolist(), dtype=object).astype(float)
    assert np.allclose(f, exact, rtol=1e-15, atol=0)


def test_cross_product_and_dot_product():
    assert coupling(1, 1, 1, "raw", "full") == sympy.Array(_levi_civita().tolist())
    assert coupling(1, 1, 0, "published", "full") == sympy.Array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_compact_entries_are_signed_square_roots_of_rationals():
    arr = coupling(2, 2, 2, "unit")
    for v in np.array(arr.tolist(), dtype=object).ravel():
        assert (v**2).is_Rational


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((1, 1, 3), ValueError, "triangle"),
        ((3, 0, 2), ValueError, "triangle"),
        ((-1, 1, 1), ValueError, ">= 0"),
        ((1.5, 1, 1), TypeError, "integer"),
        ((1, 1, 1, "l2"), ValueError, "normalisation"),
        ((1, 1, 1, "unit", "spherical"), ValueError, "layout"),
        ((4, 4, 6, "unit", "full"), ValueError, "l1\\+l2\\+l3 <= 12"),
    ],
)
def test_invalid_requests(args, error, match):
    with pytest.raises(error, match=match):
        coupling(*args)


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        raw_table(1, 1, 2)[0, 0, 0] = QQ(5)
