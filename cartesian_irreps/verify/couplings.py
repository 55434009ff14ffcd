"""Checks of the couplings l1 (x) l2 -> l3: equivariance, normalisation, Wigner 3j, selection rule, mutants."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import sympy
from sympy import QQ
from sympy.polys.matrices import DomainMatrix

from ..symbolic.basis import harmonic_basis
from ..symbolic.coupling import (
    FULL_LAYOUT_MAX_TOTAL,
    Coupling,
    apply_table,
    harmonic_coordinates,
)
from ..symbolic.spherical import proportionality, real_wigner_3j_signed_squares
from .common import (
    IMPROPER,
    ROTATIONS,
    CheckResult,
    _all_zero,
    _generators,
    _representation,
    _timed,
    determinant,
)


# --------------------------------------------------------------------------- couplings
def check_coupling(cpl: Coupling, full_layout: bool = True) -> list[CheckResult]:
    """All exact checks of one coupling (its table and its normalisation)."""
    l1, l2, l3 = cpl.l1, cpl.l2, cpl.l3
    obj = f"C({l1},{l2},{l3}) {cpl.parity} {cpl.normalization}"
    sign = 1 if cpl.parity == "even" else -1
    out = [
        _timed(obj, "selection: non-zero on the triangle", lambda: not _all_zero(cpl.table)),
        _timed(obj, "so(3): C(Jx,y) + C(x,Jy) == J C(x,y)", lambda: _check_lie(cpl)),
        _timed(
            obj,
            "SO(3): exact Cayley rotations",
            lambda: _check_group(cpl, ROTATIONS, 1),
        ),
        _timed(
            obj,
            f"O(3): inversion/mirror with sign {sign:+d}",
            lambda: _check_group(cpl, IMPROPER, sign),
        ),
        _timed(
            obj,
            f"O(3): wrong sign {-sign:+d} fails",
            lambda: _check_wrong_sign(cpl, -sign),
        ),
        _timed(
            obj,
            f"normalisation '{cpl.normalization}'",
            lambda: _check_normalization(cpl),
        ),
        _timed(obj, "C == c * Wigner-3j (sympy), c exact", lambda: _check_wigner(cpl)),
    ]
    if full_layout and l1 + l2 + l3 <= FULL_LAYOUT_MAX_TOTAL:
        out.append(
            _timed(
                obj,
                "full layout: literal contraction == compact table",
                lambda: _check_full_contraction(cpl),
            )
        )
    return out


def _check_lie(cpl: Coupling) -> tuple[bool, str]:
    r = cpl.table
    for axis, (m1, m2, m3) in enumerate(zip(*(_generators(l) for l in (cpl.l1, cpl.l2, cpl.l3)))):
        lhs = np.tensordot(m1, r, axes=([0], [0])) + np.tensordot(m2, r, axes=([0], [1])).transpose(1, 0, 2)
        rhs = np.tensordot(r, m3, axes=([2], [1]))
        if not _all_zero(lhs - rhs):
            return False, f"fails for generator {'xyz'[axis]}"
    return True, ""


def _group_sides(cpl: Coupling, name: str) -> tuple[np.ndarray, np.ndarray]:
    d1, d2, d3 = (_representation(l, name) for l in (cpl.l1, cpl.l2, cpl.l3))
    r = cpl.table
    lhs = np.tensordot(np.tensordot(d1, r, axes=([0], [0])), d2, axes=([1], [0])).transpose(0, 2, 1)
    rhs = np.tensordot(r, d3, axes=([2], [1]))
    return lhs, rhs


def _check_group(cpl: Coupling, group: dict, sign: int) -> tuple[bool, str]:
    for name, g in group.items():
        det = determinant(g)
        expected = sign if det < 0 else 1
        lhs, rhs = _group_sides(cpl, name)
        if not _all_zero(lhs - expected * rhs):
            return False, f"fails for {name}"
    return True, ""


def _check_wrong_sign(cpl: Coupling, wrong: int) -> tuple[bool, str]:
    lhs, rhs = _group_sides(cpl, "inversion")
    if _all_zero(lhs - wrong * rhs):
        return False, "the opposite parity sign also holds (coupling is zero?)"
    return True, ""


UNIT_VECTORS = ((QQ(2, 7), QQ(3, 7), QQ(6, 7)), (QQ(-1, 9), QQ(4, 9), QQ(8, 9)))


def _check_normalization(cpl: Coupling) -> tuple[bool, str]:
    if cpl.normalization == "unit":
        total = sum((abs(v) for v in cpl.signed_squares().ravel()), QQ(0))
        return total == 1, f"sum C^2 = {total}"
    if cpl.normalization == "raw" or cpl.parity == "odd":
        if cpl.scale != 1:
            return False, "scale != 1"
        if cpl.parity == "even":
            return True, "C' = 1"
    scale = QQ(int(sympy.Rational(cpl.scale).p), int(sympy.Rational(cpl.scale).q))
    for n in UNIT_VECTORS:
        z = apply_table(cpl.table, harmonic_coordinates(cpl.l1, n), harmonic_coordinates(cpl.l2, n))
        z = [scale * v for v in z]
        target = [QQ(0)] * len(z) if cpl.parity == "odd" else harmonic_coordinates(cpl.l3, n)
        if z != target:
            what = "vanish on equal vectors" if cpl.parity == "odd" else f"give T_{cpl.l3}(n)"
            return False, f"T(n) x T(n) does not {what} for n = {n}"
    return True, f"C' = {cpl.scale}"


def _check_wigner(cpl: Coupling) -> tuple[bool, str]:
    c2 = proportionality(cpl.signed_squares(), real_wigner_3j_signed_squares(cpl.l1, cpl.l2, cpl.l3))
    if c2 is None:
        return False, "not proportional"
    if cpl.normalization == "unit" and abs(c2) != 1:
        return False, f"unit coupling should be +-W, got c^2 = {c2}"
    return True, f"c = {'-' if c2 < 0 else ''}sqrt({abs(c2)})"


def _check_full_contraction(cpl: Coupling) -> tuple[bool, str]:
    """Contract the full-layout basis tensors index by index (Levi-Civita when odd) and project.

    ``R[m1, m2, m3] = <h_m3, A(h_m1, h_m2)>_F / N_m3`` must equal the table, and the full coupling
    tensor applied to the basis inputs must reproduce ``sum_m3 R h_m3`` (symmetric, traceless).
    """
    l1, l2, l3 = cpl.l1, cpl.l2, cpl.l3
    b1, b2, b3 = (harmonic_basis(l) for l in (l1, l2, l3))
    k, odd = (l1 + l2 - l3) // 2, (l1 + l2 - l3) % 2 == 1
    eps = _levi_civita()
    flat3 = np.array([t.ravel() for t in b3.full_tensors], dtype=object)
    full = cpl.full_rational().reshape(3**l1, 3**l2, 3**l3) if l1 + l2 + l3 <= 8 else None
    for a, x in enumerate(b1.full_tensors):
        for b, y in enumerate(b2.full_tensors):
            if odd:  # A_{.. c ..} = eps_{cab} x_{.. K a} y_{K b ..}
                xy = (
                    np.tensordot(x, y, axes=(list(range(l1 - k - 1, l1 - 1)), list(range(k))))
                    if k
                    else np.multiply.outer(x, y)
                )
                # axes of xy: x free (l1-k-1), a, b, y free (l2-k-1)
                xy = np.moveaxis(xy, [l1 - k - 1, l1 - k], [0, 1])
                prod = np.tensordot(eps, xy, axes=([1, 2], [0, 1]))  # c, x free, y free
                prod = np.moveaxis(prod, 0, l1 - k - 1)
            else:
                prod = np.tensordot(x, y, axes=(list(range(l1 - k, l1)), list(range(k))))
            prod = np.asarray(prod, dtype=object).ravel()
            # Frobenius product over all 3^l3 entries; h_m3 is symmetric traceless, so P_l3 is implied
            coords = [flat3[c].dot(prod) / n for c, n in enumerate(b3.norms)]
            if coords != list(cpl.table[a, b]):
                return False, f"table differs at (m1, m2) = ({a - l1}, {b - l2})"
            if full is not None:
                applied = np.tensordot(
                    np.tensordot(x.ravel(), full, axes=([0], [0])),
                    y.ravel(),
                    axes=([0], [0]),
                )
                expected = sum(
                    (cpl.table[a, b, c] * flat3[c] for c in range(b3.dim)),
                    np.zeros(3**l3, dtype=object),
                )
                if not (applied == expected).all():
                    return False, "full coupling tensor differs from the table"
    return True, ""


@cache
def _levi_civita() -> np.ndarray:
    eps = np.full((3, 3, 3), QQ(0), dtype=object)
    for (i, j, k), s in zip(itertools.permutations(range(3)), (1, -1, -1, 1, 1, -1)):
        eps[i, j, k] = QQ(s)
    return eps


# --------------------------------------------------------------------------- selection rule
def check_selection_rule(l1: int, l2: int, l3: int) -> CheckResult:
    """Dimension of all so(3)-equivariant bilinear maps l1 x l2 -> l3: 1 on the triangle, else 0."""
    expected = 1 if abs(l1 - l2) <= l3 <= l1 + l2 else 0

    def run() -> tuple[bool, str]:
        g1, g2, g3 = (_generators(l) for l in (l1, l2, l3))
        n1, n2, n3 = 2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1
        rows = []
        for m1, m2, m3 in zip(g1, g2, g3):
            # linear map R -> M1^T.R + R.M2 - M3.R on the flattened unknown R[a, b, c]
            e1 = np.kron(np.kron(m1.T, np.eye(n2, dtype=int)), np.eye(n3, dtype=int))
            e2 = np.kron(np.kron(np.eye(n1, dtype=int), m2.T), np.eye(n3, dtype=int))
            e3 = np.kron(np.kron(np.eye(n1, dtype=int), np.eye(n2, dtype=int)), m3)
            rows.extend((e1 + e2 - e3).tolist())
        mat = DomainMatrix([[QQ(v) for v in row] for row in rows], (len(rows), n1 * n2 * n3), QQ)
        dim = n1 * n2 * n3 - mat.rank()
        return dim == expected, f"dimension {dim}"

    return _timed(f"({l1},{l2},{l3})", f"selection rule: {expected} invariant(s)", run)


# --------------------------------------------------------------------------- driver
def mutated(cpl: Coupling) -> Coupling:
    """A copy of ``cpl`` with its first non-zero coefficient off by one part in a thousand."""
    table = cpl.table.copy()
    idx = next(i for i, v in np.ndenumerate(table) if v)
    table[idx] = table[idx] * QQ(1001, 1000)
    return cpl.with_table(table)
