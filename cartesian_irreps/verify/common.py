"""Shared pieces of the checks: the result row, exact rotations and reflections, representations."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from sympy import QQ
from sympy.polys.matrices import DomainMatrix

from ..symbolic.basis import harmonic_basis

#: Largest rank whose 3^l x 3^l projector is checked entry by entry in the full layout.
FULL_PROJECTOR_CHECK_L = 4
#: Largest rank for which the dimension of all equivariant bilinear maps is computed (selection rule).
SELECTION_RULE_L = 3


@dataclass
class CheckResult:
    """One row of the verification table."""

    obj: str
    check: str
    ok: bool
    seconds: float
    detail: str = ""


def _timed(obj: str, check: str, fn: Callable[[], tuple[bool, str] | bool]) -> CheckResult:
    start = time.perf_counter()
    try:
        out = fn()
        ok, detail = out if isinstance(out, tuple) else (bool(out), "")
    except Exception as exc:  # a check that crashes has failed, and says why
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return CheckResult(obj, check, bool(ok), time.perf_counter() - start, detail)


# --------------------------------------------------------------------------- rotations
def cayley(a: QQ, b: QQ, c: QQ) -> list[list]:
    """Exact rational rotation ``(1 - A)(1 + A)^{-1}`` for the antisymmetric A of (a, b, c)."""
    amat = DomainMatrix(
        [[QQ(0), -QQ(c), QQ(b)], [QQ(c), QQ(0), -QQ(a)], [-QQ(b), QQ(a), QQ(0)]],
        (3, 3),
        QQ,
    )
    eye = DomainMatrix.eye(3, QQ)
    return ((eye - amat) * (eye + amat).inv()).to_list()


def determinant(g: list[list]) -> QQ:
    return DomainMatrix([[QQ(v) for v in row] for row in g], (3, 3), QQ).det()


ROTATIONS = {
    "cayley(1/2,-1/3,2)": cayley(QQ(1, 2), QQ(-1, 3), QQ(2)),
    "cayley(-3,1/5,1/7)": cayley(QQ(-3), QQ(1, 5), QQ(1, 7)),
}
IMPROPER = {
    "inversion": [[-1, 0, 0], [0, -1, 0], [0, 0, -1]],
    "mirror y": [[1, 0, 0], [0, -1, 0], [0, 0, 1]],
    "rotoreflection": [[-v for v in row] for row in cayley(QQ(2, 3), QQ(1), QQ(-1, 4))],
}


@cache
def _representation(l: int, name: str) -> np.ndarray:
    g = {**ROTATIONS, **IMPROPER}[name]
    return np.array(harmonic_basis(l).representation(g), dtype=object)


@cache
def _generators(l: int) -> tuple[np.ndarray, ...]:
    return tuple(np.array(harmonic_basis(l).generator(a), dtype=object) for a in range(3))


def _all_zero(a) -> bool:
    return not any(v for v in np.asarray(a, dtype=object).ravel())
