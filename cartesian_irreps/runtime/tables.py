"""Constant arrays built from the generated modules, cast once per dtype and device, then cached.

Nothing here imports SymPy: the exact values were turned into float64 literals by the generator
(``cartesian-irreps generate``) and live in :mod:`cartesian_irreps.generated`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from math import factorial
from types import ModuleType

import numpy as np

from .._validate import check_choice, check_rank, check_triple
from ..generated import couplings as _couplings
from ..generated import harmonics as _harmonics

PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
COUPLING_NORMALIZATIONS = ("unit", "published", "raw")


def generated_lmax() -> int:
    """Largest rank for which couplings were generated."""
    return _couplings.LMAX


def _check_generated(l: int) -> None:
    if l > _couplings.LMAX:
        raise ValueError(
            f"rank {l} is above the generated lmax {_couplings.LMAX}; "
            f"run `cartesian-irreps generate --lmax {l}` to generate it"
        )


@dataclass(frozen=True)
class CouplingArrays:
    """One coupling tensor C[a, b, out] (possibly with permuted slots) in every form the kernels use.

    Shapes: ``dense`` (A, B, K); ``ab_k`` (A*B, K); ``b_ak`` (B, A*K); ``sp_a``, ``sp_b`` (nnz,)
    integer indices and ``sp_sel`` (nnz, K) holding the value of each non-zero in its output column.
    """

    key: tuple
    dims: tuple[int, int, int]
    dense: object
    ab_k: object
    b_ak: object
    sp_a: object
    sp_b: object
    sp_sel: object
    #: (slot of size 1, alpha) when C is alpha times an identity between the other two slots (a rank-0
    #: slot: scaling or a dot product), else None
    diagonal: tuple[int, float] | None = None

    @property
    def nnz(self) -> int:
        return int(self.sp_a.shape[0])


@cache
def coupling_coo(l1: int, l2: int, l3: int, normalization: str = "unit") -> tuple[np.ndarray, ...]:
    """``(i, j, k, values)`` of the compact coupling of ``l1 x l2 -> l3`` in float64 (NumPy)."""
    l1, l2, l3 = check_triple(l1, l2, l3)
    check_choice(normalization, COUPLING_NORMALIZATIONS, "normalisation")
    for l in (l1, l2, l3):
        _check_generated(l)
    i, j, k, v = _couplings.COUPLINGS[(l1, l2, l3)]
    scale = relative_scale((l1, l2, l3), normalization)
    out = (np.array(i, np.intp), np.array(j, np.intp), np.array(k, np.intp), np.array(v, np.float64) * scale)
    for a in out:
        a.flags.writeable = False
    return out


def relative_scale(triple: tuple[int, int, int], normalization: str) -> float:
    """``C'_normalization / C'_unit`` (1 for 'unit'), rounded from the exact ratio."""
    check_choice(normalization, COUPLING_NORMALIZATIONS, "normalisation")
    return 1.0 if normalization == "unit" else _couplings.SCALES[tuple(triple)][normalization]


def dense_coupling(l1: int, l2: int, l3: int, normalization: str = "unit") -> np.ndarray:
    """Dense float64 compact coupling, shape ``(2l1+1, 2l2+1, 2l3+1)``."""
    i, j, k, v = coupling_coo(l1, l2, l3, normalization)
    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    out[i, j, k] = v
    return out


@cache
def _coupling_arrays(
    l1: int, l2: int, l3: int, normalization: str, perm: tuple[int, int, int], dtype: str, xp: ModuleType
) -> CouplingArrays:
    idx = coupling_coo(l1, l2, l3, normalization)
    dims0 = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    a_idx, b_idx, k_idx = (idx[p] for p in perm)
    dims = tuple(dims0[p] for p in perm)
    vals = idx[3]
    dense = np.zeros(dims)
    dense[a_idx, b_idx, k_idx] = vals
    na, nb, nk = dims
    sel = np.zeros((len(vals), nk))
    sel[np.arange(len(vals)), k_idx] = vals
    cast = np.dtype(dtype)

    def dev(a: np.ndarray) -> object:
        a = np.ascontiguousarray(a.astype(cast) if a.dtype.kind == "f" else a)
        return xp.asarray(a)

    diagonal = None
    for slot in range(3):
        others = [d for i, d in enumerate(dims) if i != slot]
        if dims[slot] == 1 and others[0] == others[1]:
            eye = np.eye(others[0]) * float(vals[0])
            if np.allclose(np.moveaxis(dense, slot, 0)[0], eye, rtol=0, atol=1e-15):
                diagonal = (slot, float(vals[0]))
                break
    return CouplingArrays(
        diagonal=diagonal,
        key=(l1, l2, l3, normalization, perm),
        dims=dims,
        dense=dev(dense),
        ab_k=dev(dense.reshape(na * nb, nk)),
        b_ak=dev(dense.transpose(1, 0, 2).reshape(nb, na * nk)),
        sp_a=dev(a_idx),
        sp_b=dev(b_idx),
        sp_sel=dev(sel),
    )


def coupling_arrays(
    l1: int, l2: int, l3: int, normalization: str, perm: tuple[int, int, int], dtype: np.dtype, xp: ModuleType
) -> CouplingArrays:
    """Cached :class:`CouplingArrays` for the coupling with slots permuted by ``perm``.

    ``perm`` lists which original slot (0: l1, 1: l2, 2: l3) plays the roles (a, b, out).
    """
    return _coupling_arrays(l1, l2, l3, normalization, tuple(perm), np.dtype(dtype).str, xp)


# --------------------------------------------------------------------------- harmonics and layouts
@cache
def monomial_exponents(l: int) -> np.ndarray:
    """Exponents (n_mono, 3) of the degree-l monomials in the generated order."""
    return np.array(_harmonics.MONOMIALS[l], dtype=np.intp).reshape(-1, 3)


def check_harmonics_lmax(l: int) -> None:
    """Raise a clear error when rank l was not generated."""
    if l > _harmonics.LMAX:
        raise ValueError(
            f"rank {l} is above the generated lmax {_harmonics.LMAX}; run `cartesian-irreps generate --lmax {l}`"
        )


@cache
def harmonic_basis_floats(l: int) -> np.ndarray:
    """``B[m, a] = h_{l,m}[a] / sqrt(N_{l,m})``: compact basis as polynomial coefficients (float64)."""
    l = check_rank(l)
    check_harmonics_lmax(l)
    out = np.array(_harmonics.BASIS[l], dtype=np.float64).reshape(2 * l + 1, -1)
    out.flags.writeable = False
    return out


def harmonic_scale(l: int, normalization: str) -> float:
    """``N_l``: (2l-1)!!/l! (published) or sqrt((2l-1)!!/l!) (unit), rounded from the exact value."""
    table = _harmonics.PUBLISHED_NORM if normalization == "published" else _harmonics.UNIT_NORM
    return table[l]


@cache
def _to_compact_matrix(l: int) -> np.ndarray:
    """``U`` (2l+1, 3^l): ``U[m, I] = B[m, a(I)] / multinomial(a(I))``."""
    b = harmonic_basis_floats(l)
    mono = {tuple(e): n for n, e in enumerate(monomial_exponents(l).tolist())}
    idx = np.indices((3,) * l).reshape(l, -1).T if l else np.zeros((1, 0), dtype=np.intp)
    cols = []
    for multi in idx:
        e = (int((multi == 0).sum()), int((multi == 1).sum()), int((multi == 2).sum()))
        mult = factorial(l) // (factorial(e[0]) * factorial(e[1]) * factorial(e[2]))
        cols.append(b[:, mono[e]] / mult)
    out = np.stack(cols, axis=1)
    out.flags.writeable = False
    return out


@cache
def _layout_matrix(l: int, dtype: str, xp: ModuleType, transpose: bool) -> object:
    u = _to_compact_matrix(l)
    return xp.asarray(np.ascontiguousarray((u.T if transpose else u).astype(np.dtype(dtype))))


def to_compact_matrix(l: int, dtype: np.dtype, xp: ModuleType) -> object:
    """``U^T`` (3^l, 2l+1) on the device: ``compact = full_flat @ U^T``."""
    return _layout_matrix(l, np.dtype(dtype).str, xp, True)


def to_full_matrix(l: int, dtype: np.dtype, xp: ModuleType) -> object:
    """``U`` (2l+1, 3^l) on the device: ``full_flat = compact @ U``."""
    return _layout_matrix(l, np.dtype(dtype).str, xp, False)


@cache
def _projector(l: int, dtype: str, xp: ModuleType) -> object:
    u = _to_compact_matrix(l)
    return xp.asarray(np.ascontiguousarray((u.T @ u).astype(np.dtype(dtype))))


def projector_matrix(l: int, dtype: np.dtype, xp: ModuleType) -> object:
    """``P_l = U^T U`` (3^l, 3^l) as floats (symmetric, so it acts from either side)."""
    return _projector(l, np.dtype(dtype).str, xp)
