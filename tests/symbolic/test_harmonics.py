"""Cartesian harmonics T_l(n): normalisations, the Legendre addition theorem, gradients."""

from __future__ import annotations

import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.symbolic.harmonics import (
    SYMBOLS,
    cartesian_harmonic,
    cartesian_harmonic_gradient,
    harmonic_normalization,
)
from tests.conftest import rational_unit_vectors


def _at(expr, n):
    return expr.subs(dict(zip(SYMBOLS, [sympy.Rational(int(c.numerator), int(c.denominator)) for c in n])))


@given(st.integers(0, 5), rational_unit_vectors(), rational_unit_vectors())
def test_addition_theorem_against_sympy_legendre(l, n, u):
    """``T_l(n) . u^l = P_l(n . u)`` for unit vectors (published normalisation); sympy.legendre is the reference."""
    t = cartesian_harmonic(l, "published", "compact")
    e = cartesian_harmonic(l, "published", "compact")  # e_m(u) = T_m(u) / N_l
    nl = harmonic_normalization(l)
    lhs = sum(_at(t[m], n) * _at(e[m], u) for m in range(2 * l + 1)) / nl
    cos = sum(_at(s, n) * _at(s, u) for s in SYMBOLS)
    assert sympy.nsimplify(lhs - sympy.legendre(l, cos)) == 0


@given(st.integers(1, 4), rational_unit_vectors())
def test_full_layout_contraction_gives_one(l, n):
    """Contracting the full-layout T_l(n) with n, l times, gives exactly 1; unit norm option has |T| = 1."""
    full = cartesian_harmonic(l, "published", "full")
    vec = [sympy.Rational(int(c.numerator), int(c.denominator)) for c in n]
    t = full.subs(dict(zip(SYMBOLS, vec)))
    for _ in range(l):
        t = sympy.tensorcontraction(sympy.tensorproduct(t, sympy.Array(vec)), (0, t.rank()))
    assert sympy.simplify(t) == 1
    unit = cartesian_harmonic(l, "unit", "compact")
    assert sympy.simplify(sum(_at(c, n) ** 2 for c in unit)) == 1


@given(st.integers(0, 4), rational_unit_vectors())
def test_norms_match_the_paper(l, n):
    """|T_l(n)|_F^2 = (2l-1)!!/l! (1, 1, 3/2, 5/2, 35/8 for l = 0..4)."""
    t = cartesian_harmonic(l, "published", "compact")
    assert (
        sympy.simplify(sum(_at(c, n) ** 2 for c in t))
        == [1, 1, sympy.Rational(3, 2), sympy.Rational(5, 2), sympy.Rational(35, 8)][l]
    )


def test_rank_two_and_three_match_the_paper():
    x, y, z = SYMBOLS
    n = sympy.Matrix([x, y, z])
    t2 = sympy.Array(cartesian_harmonic(2, "published", "full")).tomatrix()
    assert sympy.expand(t2 - sympy.Rational(3, 2) * (n * n.T - sympy.eye(3) * (x**2 + y**2 + z**2) / 3)) == sympy.zeros(
        3
    )
    t3 = cartesian_harmonic(3, "published", "full")
    d = sympy.eye(3)
    r2 = x**2 + y**2 + z**2
    for i, j, k in [(0, 0, 0), (0, 1, 2), (1, 1, 0), (2, 2, 2)]:
        expected = sympy.Rational(5, 2) * (
            n[i] * n[j] * n[k] - r2 * (n[i] * d[j, k] + n[j] * d[i, k] + n[k] * d[i, j]) / 5
        )
        assert sympy.expand(t3[i, j, k] - expected) == 0


@given(st.integers(0, 4), st.sampled_from(["published", "unit"]), st.floats(-2, 2), st.floats(-2, 2), st.floats(-2, 2))
def test_gradient_matches_finite_differences(l, norm, a, b, c):
    t = cartesian_harmonic(l, norm, "compact")
    g = cartesian_harmonic_gradient(l, norm, "compact")
    f = sympy.lambdify(SYMBOLS, list(t))
    gf = sympy.lambdify(SYMBOLS, [[g[m, i] for i in range(3)] for m in range(2 * l + 1)])
    h = 1e-6
    point = [a, b, c]
    for i in range(3):
        plus = list(point)
        minus = list(point)
        plus[i] += h
        minus[i] -= h
        fd = [(p - q) / (2 * h) for p, q in zip(f(*plus), f(*minus))]
        exact = [row[i] for row in gf(*point)]
        assert all(abs(u - v) <= 1e-6 * (1 + abs(v)) for u, v in zip(fd, exact))


def test_invalid_requests():
    with pytest.raises(ValueError, match="normalisation"):
        cartesian_harmonic(2, "l2")
    with pytest.raises(ValueError, match="layout"):
        cartesian_harmonic(2, "published", "spherical")
    with pytest.raises(ValueError, match=">= 0"):
        cartesian_harmonic(-2)
