"""Checks of the Cartesian harmonics T_l(n): normalisation, gradient, addition theorem (exact)."""

from __future__ import annotations

import sympy
from sympy import QQ
from sympy.polys.rings import ring

from .._validate import check_rank
from ..symbolic.basis import harmonic_basis
from ..symbolic.harmonics import (
    SYMBOLS,
    cartesian_harmonic,
    cartesian_harmonic_gradient,
    harmonic_normalization,
)
from .common import (
    CheckResult,
    _timed,
)


# --------------------------------------------------------------------------- harmonics
def check_harmonic(l: int) -> list[CheckResult]:
    """T_l(n): equals N_l P_l(n^l) (addition theorem), contraction with n^l gives |n|^{2l}, gradient."""
    l = check_rank(l)
    obj = f"T_{l}"
    return [
        _timed(
            obj,
            "compact T_l(n) == N_l P_l(n^l) (closed form)",
            lambda: _check_addition_theorem(l),
        ),
        _timed(
            obj,
            "published: T_l(n) . n^l == |n|^2l",
            lambda: _check_harmonic_norm(l, "published"),
        ),
        _timed(obj, "unit: |T_l(n)|^2 == |n|^2l", lambda: _check_harmonic_norm(l, "unit")),
        _timed(
            obj,
            "gradient == exact difference quotient",
            lambda: _check_harmonic_gradient(l),
        ),
    ]


_RING6, *_V6 = ring("x,y,z,u,v,w", QQ)


def _check_addition_theorem(l: int) -> bool:
    """``sum_m h_m(n) h_m(u)/N_m == harm_u((n.u)^l)`` in QQ[n, u] (scaled by N_l on both sides)."""
    basis = harmonic_basis(l)
    n, u = _V6[:3], _V6[3:]

    def lift(p, vars3):
        return _RING6({_place(m, vars3 is u): c for m, c in p.items()})

    left = sum(
        (lift(h, n) * lift(h, u) * (1 / nm) for h, nm in zip(basis.polys, basis.norms)),
        _RING6.zero,
    )
    # closed-form detracer in u applied to (n.u)^l
    p = (n[0] * u[0] + n[1] * u[1] + n[2] * u[2]) ** l
    right, term = p, p
    ru = u[0] ** 2 + u[1] ** 2 + u[2] ** 2
    for m in range(1, l // 2 + 1):
        term = sum((term.diff(x).diff(x) for x in u), _RING6.zero)
        coeff = QQ((-1) ** m * _dfact(2 * l - 2 * m - 1), _dfact(2 * l - 1) * 2**m * _fact(m))
        right += coeff * term * ru**m
    return left == right


def _place(m: tuple[int, int, int], second: bool) -> tuple[int, ...]:
    return (0, 0, 0) + tuple(m) if second else tuple(m) + (0, 0, 0)


def _dfact(n: int) -> int:
    return 1 if n <= 1 else n * _dfact(n - 2)


def _fact(n: int) -> int:
    return 1 if n <= 1 else n * _fact(n - 1)


def _check_harmonic_norm(l: int, normalization: str) -> bool:
    t = cartesian_harmonic(l, normalization, "compact")
    x, y, z = SYMBOLS
    r2l = (x**2 + y**2 + z**2) ** l
    if normalization == "published":
        en = cartesian_harmonic(l, "published", "compact")  # e_m(n) = T_m / N_l
        total = sum(t[m] * en[m] for m in range(2 * l + 1)) / harmonic_normalization(l, "published")
    else:
        total = sum(t[m] ** 2 for m in range(2 * l + 1))
    return sympy.expand(total - r2l) == 0


def _check_harmonic_gradient(l: int) -> bool:
    t = cartesian_harmonic(l, "published", "compact")
    grad = cartesian_harmonic_gradient(l, "published", "compact")
    eps = sympy.Symbol("eps")
    for a in range(3):
        shift = {s: s + (eps if i == a else 0) for i, s in enumerate(SYMBOLS)}
        for m in range(2 * l + 1):
            diff = sympy.expand(t[m].subs(shift, simultaneous=True) - t[m])
            if sympy.expand(diff.coeff(eps, 1) - grad[m, a]) != 0:
                return False
    return True
