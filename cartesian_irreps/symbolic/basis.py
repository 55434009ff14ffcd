"""The compact (2l+1)-dimensional layout of symmetric traceless tensors.

Convention (the one e3nn uses, "y is the polar axis"). Put ``x' = z, y' = x, z' = y`` and, for
``m = -l..l``, take the real solid harmonics *without* the Condon-Shortley phase,

    h_{l,m}(n) = r^{l-|m|} P_l^{(|m|)}(z'/r) * Re (x' + i y')^{m}      (m > 0)
    h_{l,0}(n) = r^l P_l(z'/r)
    h_{l,m}(n) = r^{l-|m|} P_l^{(|m|)}(z'/r) * Im (x' + i y')^{|m|}    (m < 0)

with ``P_l^{(k)}`` the k-th derivative of the Legendre polynomial. Each ``h_{l,m}`` is a harmonic
polynomial with rational coefficients; read as a symmetric traceless tensor (see
:mod:`.polynomials`) it has Frobenius norm^2 ``N_{l,m}`` (rational). The compact basis is

    e_{l,m} = h_{l,m} / sqrt(N_{l,m}),

orthonormal for the full Frobenius product over all 3^l entries. Compact coordinates of a
tensor X are ``x_m = <e_m, X>``; the maps are ``U`` (2l+1 x 3^l, rows e_m) from full to compact
and ``U^T`` back, with ``U U^T = 1`` and ``U^T U = P_l``. For l = 1 the compact coordinates are
``(x, y, z)`` themselves; ``e_{l,m} . n^{(x)l}`` is a positive multiple of e3nn's
``spherical_harmonics(l, n)[m + l]``.

Exact work is done in the *rational* basis ``h`` (no square roots); the orthonormal basis only
rescales it by ``1/sqrt(N)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from math import comb

import numpy as np
import sympy
from sympy import QQ
from sympy.polys.rings import PolyElement

from .._validate import check_rank
from .polynomials import (
    RING,
    VARS,
    X,
    Y,
    Z,
    frobenius,
    full_indices,
    substitute_linear,
    tensor_from_poly,
)


def legendre_derivative_coefficients(l: int, k: int) -> dict[int, QQ]:
    """Coefficients ``{power: c}`` of ``d^k/dt^k P_l(t)`` (exact)."""
    coeffs = {}
    for j in range(l // 2 + 1):
        power = l - 2 * j
        c = QQ((-1) ** j * comb(l, j) * comb(2 * l - 2 * j, l), 2**l)
        if power < k:
            continue
        fall = 1
        for i in range(k):
            fall *= power - i
        coeffs[power - k] = c * fall
    return coeffs


def real_solid_harmonic(l: int, m: int) -> PolyElement:
    """The rational harmonic polynomial ``h_{l,m}`` of the module docstring (y polar, no CS phase)."""
    l = check_rank(l)
    if not -l <= m <= l:
        raise ValueError(f"m must satisfy -l <= m <= l, got l={l}, m={m}")
    xp, yp, zp = Z, X, Y  # x' = z, y' = x, z' = y
    k = abs(m)
    rr = X**2 + Y**2 + Z**2
    radial = RING.zero
    for power, c in legendre_derivative_coefficients(l, k).items():
        radial += c * zp**power * rr ** ((l - k - power) // 2)
    angular = RING.zero
    for j in range(k + 1):
        term = comb(k, j) * xp ** (k - j) * yp**j  # (x' + i y')^k, i^j factored out
        if m >= 0 and j % 2 == 0:
            angular += (-1) ** (j // 2) * term
        elif m < 0 and j % 2 == 1:
            angular += (-1) ** (j // 2) * term
    return radial * angular


@dataclass(frozen=True)
class HarmonicBasis:
    """The rational harmonic basis ``h_{l,m}`` (m = -l..l) and its Frobenius norms ``N_{l,m}``."""

    l: int
    polys: tuple[PolyElement, ...]
    norms: tuple[QQ, ...]

    @property
    def dim(self) -> int:
        return 2 * self.l + 1

    def coordinates(self, p: PolyElement) -> list:
        """h-basis coordinates ``<h_m, p> / N_m`` of a harmonic degree-l polynomial (exact)."""
        return [frobenius(h, p) / n for h, n in zip(self.polys, self.norms)]

    def combine(self, coords) -> PolyElement:
        """``sum_m coords[m] h_m``."""
        return sum((QQ(c) * h for c, h in zip(coords, self.polys) if c), RING.zero)

    def generator(self, axis: int) -> list[list]:
        """Rational matrix ``M[m', m]`` of the so(3) generator about ``axis`` in the h basis.

        ``J_a p = -(n x grad p)_a`` is the derivative at t=0 of ``p -> p(exp(-t L_a) n)`` with
        ``(L_a)_bc = -eps_abc`` (rotation about axis a); ``J_a h_m = sum_m' M[m', m] h_m'``.
        """
        cols = [self.coordinates(_angular_momentum(h, axis)) for h in self.polys]
        return [list(r) for r in zip(*cols)]

    def representation(self, g) -> list[list]:
        """Rational matrix ``D[m', m]`` of a rational 3x3 matrix g acting as ``p -> p(g^T n)``."""
        cols = [self.coordinates(substitute_linear(h, g)) for h in self.polys]
        return [list(r) for r in zip(*cols)]

    @cached_property
    def full_tensors(self) -> tuple[np.ndarray, ...]:
        """Each ``h_m`` as a full-layout rational tensor of shape (3,)*l."""
        return tuple(tensor_from_poly(h, self.l) for h in self.polys)


@cache
def harmonic_basis(l: int) -> HarmonicBasis:
    """The cached rational basis for rank l."""
    l = check_rank(l)
    polys = tuple(real_solid_harmonic(l, m) for m in range(-l, l + 1))
    return HarmonicBasis(l, polys, tuple(frobenius(h, h) for h in polys))


def _angular_momentum(p: PolyElement, axis: int) -> PolyElement:
    """``-(n x grad p)_axis``."""
    b, c = (axis + 1) % 3, (axis + 2) % 3
    return VARS[c] * p.diff(VARS[b]) - VARS[b] * p.diff(VARS[c])


def to_sympy(q) -> sympy.Rational:
    """Exact rational (gmpy2 ``mpq`` or int) as a SymPy ``Rational``."""
    return QQ.to_sympy(QQ(q))


def compact_basis(l: int) -> sympy.Matrix:
    """Exact ``U``: (2l+1) x 3^l, row m is the orthonormal tensor ``e_{l,m}`` flattened in C order.

    ``to_compact = U`` maps full-layout tensors to compact coordinates, ``U.T`` maps back.
    """
    basis = harmonic_basis(l)
    rows = []
    for t, n in zip(basis.full_tensors, basis.norms):
        scale = 1 / sympy.sqrt(to_sympy(n))
        rows.append([to_sympy(t[idx]) * scale for idx in full_indices(l)])
    return sympy.Matrix(rows)


def compact_polynomials(l: int) -> list[sympy.Expr]:
    """``e_{l,m} . n^{(x)l}`` as SymPy expressions in the symbols ``x, y, z``."""
    basis = harmonic_basis(l)
    return [h.as_expr() / sympy.sqrt(to_sympy(n)) for h, n in zip(basis.polys, basis.norms)]
