"""Cartesian harmonics T_l(n) as exact polynomials, with their gradients.

    T_l(n) = N_l P_l(n^{(x)l}),

with two normalisations:

* ``'published'`` (the ICTP code): ``N_l = (2l-1)!!/l!``, so that contracting T_l(n) with n
  l times gives 1 for a unit vector; then ``|T_l(n)|_F^2 = (2l-1)!!/l!``. As a polynomial in a
  second vector u, ``T_l(n) . u^{(x)l} = P_l(n.u)`` (Legendre) for unit n and u.
* ``'unit'``: ``N_l = sqrt((2l-1)!!/l!)``, so that ``|T_l(n)|_F = 1`` for a unit vector.

The formulas are homogeneous polynomials of degree l in the components of n; they equal the
harmonic of the direction only on the unit sphere (the numeric runtime normalises r first).
In the compact layout ``T_l(n)_m = N_l h_{l,m}(n)/sqrt(N_{l,m})`` (see :mod:`.basis`).
"""

from __future__ import annotations

from functools import cache

import sympy

from .._validate import HARMONIC_NORMALIZATIONS, LAYOUTS, check_choice, check_rank
from .basis import compact_basis, compact_polynomials
from .projector import double_factorial

SYMBOLS = sympy.symbols("x y z")


def harmonic_normalization(l: int, normalization: str = "published") -> sympy.Expr:
    """Exact ``N_l``: ``(2l-1)!!/l!`` (published) or ``sqrt((2l-1)!!/l!)`` (unit)."""
    l = check_rank(l)
    normalization = check_choice(normalization, HARMONIC_NORMALIZATIONS, "harmonic normalisation")
    ratio = sympy.Rational(double_factorial(2 * l - 1), sympy.factorial(l))
    return ratio if normalization == "published" else sympy.sqrt(ratio)


@cache
def cartesian_harmonic(l: int, normalization: str = "published", layout: str = "compact") -> sympy.Array:
    """Exact ``T_l(n)`` as an array of polynomials in ``SYMBOLS = (x, y, z)``.

    Returns shape ``(2l+1,)`` for ``layout='compact'`` and ``(3,)*l`` for ``'full'``.
    """
    l = check_rank(l)
    layout = check_choice(layout, LAYOUTS, "layout")
    scale = harmonic_normalization(l, normalization)
    polys = [sympy.expand(scale * p) for p in compact_polynomials(l)]
    if layout == "compact":
        return sympy.Array(polys)
    u = compact_basis(l)
    flat = [sympy.expand(sum(u[m, i] * polys[m] for m in range(2 * l + 1))) for i in range(3**l)]
    return sympy.Array(flat, (3,) * l) if l else sympy.Array(flat[0])


@cache
def cartesian_harmonic_gradient(l: int, normalization: str = "published", layout: str = "compact") -> sympy.Array:
    """Exact ``d T_l(n) / d n_a`` of the polynomial, shape ``T.shape + (3,)`` (last index a).

    For the harmonic of an arbitrary vector r (n = r/|r|) the chain rule gives
    ``dT/dr = (dT/dn) (1 - n n^T) / |r|``.
    """
    g = sympy.derive_by_array(cartesian_harmonic(l, normalization, layout), SYMBOLS)  # (3,) + T.shape
    return sympy.permutedims(g, list(range(1, g.rank())) + [0])
