"""The compact basis: orthonormal, traceless, and the same functions as the real spherical harmonics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.symbolic.basis import compact_basis, compact_polynomials, harmonic_basis, real_solid_harmonic
from cartesian_irreps.symbolic.projector import projector


@pytest.mark.parametrize("l", range(5))
def test_compact_matrix_is_orthonormal_and_spans_the_image(l):
    u = compact_basis(l)
    assert u * u.T == sympy.eye(2 * l + 1)
    if l <= 3:
        assert u.T * u == projector(l)


def test_low_ranks_match_e3nn_formulas():
    """e3nn's convention written out: l=1 is (x, y, z); l=2 is (xz, xy, y^2-(x^2+z^2)/2, yz, (z^2-x^2)/2)."""
    x, y, z = sympy.symbols("x y z")
    assert [sympy.expand(p) for p in compact_polynomials(1)] == [x, y, z]
    e3nn_2 = [
        sympy.sqrt(15) * x * z,
        sympy.sqrt(15) * x * y,
        sympy.sqrt(5) * (y**2 - (x**2 + z**2) / 2),
        sympy.sqrt(15) * y * z,
        sympy.sqrt(15) / 2 * (z**2 - x**2),
    ]
    ratios = {sympy.simplify(a / b) for a, b in zip(compact_polynomials(2), e3nn_2)}
    assert len(ratios) == 1 and ratios.pop() > 0


def _sympy_real_harmonic(l: int, m: int, theta: float, phi: float) -> float:
    """Real spherical harmonic without Condon-Shortley phase, from sympy's complex Ynm (z polar)."""
    ylm = complex(sympy.Ynm(l, abs(m), theta, phi).expand(func=True).evalf())
    cs = (-1) ** abs(m)  # sympy's Ynm carries the Condon-Shortley phase; remove it
    if m > 0:
        return math.sqrt(2) * cs * ylm.real
    if m < 0:
        return math.sqrt(2) * cs * ylm.imag
    return ylm.real


@given(st.integers(0, 6), st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1))
def test_matches_sympy_spherical_harmonics_with_y_polar(l, a, b, c):
    """e_m . n^l is a positive multiple (one per l) of Y_lm in the frame x'=z, y'=x, z'=y."""
    n = np.array([a, b, c])
    if np.linalg.norm(n) < 0.1:
        return
    n = n / np.linalg.norm(n)
    xp, yp, zp = n[2], n[0], n[1]
    theta, phi = math.acos(max(-1.0, min(1.0, zp))), math.atan2(yp, xp)
    ours = [float(p.subs(dict(zip(sympy.symbols("x y z"), n)))) for p in compact_polynomials(l)]
    ref = [_sympy_real_harmonic(l, m, theta, phi) for m in range(-l, l + 1)]
    ours, ref = np.array(ours), np.array(ref)
    scale = ours.dot(ref) / ref.dot(ref)
    assert scale > 0
    assert np.allclose(ours, scale * ref, atol=1e-9)
    # one constant per l: sum_m e_m(n)^2 = l!/(2l-1)!! and sum_m Y_lm(n)^2 = (2l+1)/(4 pi)
    dfact = math.prod(range(2 * l - 1, 0, -2))
    assert np.isclose(scale**2, math.factorial(l) / dfact * 4 * math.pi / (2 * l + 1))


@pytest.mark.parametrize("l", range(7))
def test_rational_basis_is_orthogonal_with_positive_norms(l):
    b = harmonic_basis(l)
    assert len(b.polys) == 2 * l + 1
    assert all(n > 0 for n in b.norms)


def test_bad_order_is_rejected():
    with pytest.raises(ValueError, match="-l <= m <= l"):
        real_solid_harmonic(2, 3)
