"""Checks of the projectors P_l and of the compact harmonic basis (exact)."""

from __future__ import annotations

import itertools

import numpy as np
from sympy import QQ
from sympy.polys.matrices import DomainMatrix

from .._validate import check_rank
from ..symbolic.basis import HarmonicBasis, harmonic_basis
from ..symbolic.polynomials import (
    coordinates,
    frobenius,
    full_indices,
    laplacian,
    monomial_poly,
    monomials,
    multinomial,
)
from ..symbolic.projector import (
    detrace_by_placements,
    projector_symmetric,
    symmetric_to_full,
    trace_map,
)
from .common import (
    FULL_PROJECTOR_CHECK_L,
    CheckResult,
    _all_zero,
    _generators,
    _timed,
)


# --------------------------------------------------------------------------- projector
def check_projector(l: int) -> list[CheckResult]:
    """P_l: both constructions agree; self-adjoint; idempotent; rank 2l+1; image symmetric traceless."""
    l = check_rank(l)
    obj = f"P_{l}"
    closed = projector_symmetric(l, "closed_form")
    g = DomainMatrix.diag([QQ(1, multinomial(m)) for m in monomials(l)], QQ)
    out = [
        _timed(
            obj,
            "closed form == null-space construction",
            lambda: closed == projector_symmetric(l, "nullspace"),
        ),
        _timed(
            obj,
            "self-adjoint (Frobenius)",
            lambda: g * closed == (g * closed).transpose(),
        ),
        _timed(obj, "idempotent", lambda: closed * closed == closed),
        _timed(obj, "rank == 2l+1", lambda: (closed.rank() == 2 * l + 1, f"rank {closed.rank()}")),
        _timed(
            obj,
            "image traceless",
            lambda: _all_zero(np.array((trace_map(l) * closed).to_list() or [[0]], dtype=object)),
        ),
    ]
    if l <= FULL_PROJECTOR_CHECK_L:
        out.append(
            _timed(
                obj,
                "full layout: symmetric, idempotent, image symmetric",
                lambda: _check_full_projector(l),
            )
        )
        out.append(
            _timed(
                obj,
                "full layout == literal placement formula",
                lambda: _check_placements(l),
            )
        )
    return out


def _full_projector(l: int) -> np.ndarray:
    return np.array(symmetric_to_full(projector_symmetric(l), l).to_list(), dtype=object).reshape(3**l, 3**l)


def _check_full_projector(l: int) -> tuple[bool, str]:
    p = _full_projector(l)
    if not (p == p.T).all():
        return False, "P_full is not symmetric"
    if not (p.dot(p) == p).all():
        return False, "P_full is not idempotent"
    cols = p.T.reshape((3**l,) + (3,) * l)
    for col in cols:
        for perm in itertools.permutations(range(l)):
            if not (np.transpose(col, perm) == col).all():
                return False, "image not symmetric"
        if l >= 2 and not _all_zero(np.trace(col, axis1=0, axis2=1)):
            return False, "image not traceless"
    return True, ""


def _check_placements(l: int) -> tuple[bool, str]:
    p = _full_projector(l)
    for j, idx in enumerate(full_indices(l)):
        unit = np.full((3,) * l, QQ(0), dtype=object)
        unit[idx] = QQ(1)
        if not (detrace_by_placements(unit).ravel() == p[:, j]).all():
            return False, f"column {idx} differs"
    return True, ""


# --------------------------------------------------------------------------- basis
def check_basis(l: int) -> list[CheckResult]:
    """Compact basis: harmonic, orthonormal, spans the image of P_l; so(3) generators consistent."""
    l = check_rank(l)
    basis = harmonic_basis(l)
    obj = f"basis_{l}"
    return [
        _timed(
            obj,
            "harmonic (traceless)",
            lambda: all(not laplacian(h) for h in basis.polys),
        ),
        _timed(obj, "orthonormal after 1/sqrt(N)", lambda: _check_orthogonal(basis)),
        _timed(obj, "U^T U == P_l", lambda: _check_spans(basis)),
        _timed(obj, "so(3): antisymmetric, [J_x, J_y] = J_z", lambda: _check_generators(l)),
    ]


def _check_orthogonal(basis: HarmonicBasis) -> bool:
    n = basis.dim
    return all(
        frobenius(basis.polys[a], basis.polys[b]) == (basis.norms[a] if a == b else 0)
        for a in range(n)
        for b in range(n)
    ) and all(v > 0 for v in basis.norms)


def _check_spans(basis: HarmonicBasis) -> bool:
    q = projector_symmetric(basis.l).to_list()
    for j, m in enumerate(monomials(basis.l)):
        u = monomial_poly(m)
        image = basis.combine(basis.coordinates(u))  # sum_m <e_m, u> e_m
        if coordinates(image, basis.l) != [row[j] for row in q]:
            return False
    return True


def _check_generators(l: int) -> tuple[bool, str]:
    norms = harmonic_basis(l).norms
    gens = _generators(l)
    for gm in gens:
        # antisymmetric in the orthonormal basis: A = S M S^{-1} with S = diag(sqrt N)
        for a, b in itertools.product(range(2 * l + 1), repeat=2):
            if gm[a, b] * norms[a] != -gm[b, a] * norms[b]:
                return False, "generator not antisymmetric in the orthonormal basis"
    jx, jy, jz = gens
    if not ((jx.dot(jy) - jy.dot(jx)) == jz).all():
        return False, "[J_x, J_y] != J_z"
    return True, ""
