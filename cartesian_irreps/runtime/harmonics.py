"""Cartesian harmonics ``T_l(r/|r|)`` and their gradients for batches of vectors (NumPy or CuPy).

``T_l(n) = N_l P_l(n^{(x)l})`` evaluated in the compact layout as the generated polynomial
coefficients times monomials of the unit vector n = r/|r|:

    T_l(n)_m = N_l sum_a B_l[m, a] n_x^{a_x} n_y^{a_y} n_z^{a_z},

with ``N_l = (2l-1)!!/l!`` (``'published'``: T_l(n) contracted l times with n is 1) or
``sqrt((2l-1)!!/l!)`` (``'unit'``: |T_l(n)| = 1). The gradient with respect to r (not n) is

    dT/dr = (dT/dn) (1 - n n^T) / |r|.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType
from typing import Any

import numpy as np

from .._validate import HARMONIC_NORMALIZATIONS, LAYOUTS, check_choice, check_rank
from . import tables
from .backend import array_module, as_float_array, check_finite, check_trailing


@cache
def _derivative_coefficients(l: int) -> np.ndarray:
    """``D[axis, m, a']``: coefficients of dB_l/dn_axis over the degree-(l-1) monomials."""
    b = tables.harmonic_basis_floats(l)
    mono = tables.monomial_exponents(l)
    lower = {tuple(e): n for n, e in enumerate(tables.monomial_exponents(l - 1).tolist())} if l else {}
    out = np.zeros((3, 2 * l + 1, len(lower)))
    for n, e in enumerate(mono.tolist()):
        for axis in range(3):
            if e[axis]:
                d = list(e)
                d[axis] -= 1
                out[axis, :, lower[tuple(d)]] += e[axis] * b[:, n]
    return out


@cache
def _device_tables(l: int, dtype: str, xp: ModuleType, normalization: str) -> tuple[Any, Any]:
    scale = tables.harmonic_scale(l, normalization)
    coeff = xp.asarray(np.ascontiguousarray((tables.harmonic_basis_floats(l) * scale).T.astype(dtype)))
    deriv = xp.asarray(np.ascontiguousarray((_derivative_coefficients(l) * scale).transpose(0, 2, 1).astype(dtype)))
    return coeff, deriv  # (n_mono, 2l+1), (3, n_mono(l-1), 2l+1)


def _monomials(l: int, powers: list[Any]) -> Any:
    """(N, n_mono(l)) values of the degree-l monomials of the unit vectors n (N, 3)."""
    e = tables.monomial_exponents(l)
    return powers[0][:, e[:, 0]] * powers[1][:, e[:, 1]] * powers[2][:, e[:, 2]]


def cartesian_harmonics(
    vectors: Any,
    lmax: int,
    *,
    normalization: str = "published",
    layout: str = "compact",
    gradient: bool = False,
    check_nan: bool = False,
) -> list[Any] | tuple[list[Any], list[Any]]:
    """``[T_0(n), ..., T_lmax(n)]`` for n = r/|r| of every vector r in ``vectors`` (..., 3).

    Returns a list of arrays of shape ``(..., 2l+1)`` (compact) or ``(..., 3, ..., 3)`` (full, l axes);
    with ``gradient=True`` also the list of ``dT_l/dr`` with a trailing axis of 3 (derivative with
    respect to the components of r). Zero-length vectors have no direction and raise ``ValueError``.
    """
    lmax = check_rank(lmax, "lmax")
    tables.check_harmonics_lmax(lmax)
    check_choice(normalization, HARMONIC_NORMALIZATIONS, "harmonic normalisation")
    check_choice(layout, LAYOUTS, "layout")
    xp = array_module(vectors)
    as_float_array(vectors, "vectors", xp)
    check_trailing(vectors, "vectors", (3,), "Cartesian components")
    if check_nan:
        check_finite(xp, {"vectors": vectors})
    lead = vectors.shape[:-1]
    r = vectors.reshape(-1, 3)
    length = xp.sqrt((r * r).sum(axis=1))
    if r.shape[0] and bool((length == 0).any()):
        raise ValueError("vectors contain a zero-length vector: its direction (and harmonic) is undefined")
    n = r / length[:, None]
    dtype = np.dtype(vectors.dtype).str
    powers = [xp.ones((r.shape[0], lmax + 1), dtype=vectors.dtype) for _ in range(3)]
    for axis in range(3):
        for a in range(1, lmax + 1):
            powers[axis][:, a] = powers[axis][:, a - 1] * n[:, axis]
    values, grads = [], []
    for l in range(lmax + 1):
        coeff, deriv = _device_tables(l, dtype, xp, normalization)
        t = _monomials(l, powers) @ coeff
        values.append(t)
        if gradient:
            if l == 0:
                grads.append(xp.zeros((r.shape[0], 1, 3), dtype=vectors.dtype))
                continue
            mono = _monomials(l - 1, powers)
            dn = xp.stack([mono @ deriv[a] for a in range(3)], axis=-1)  # (N, 2l+1, 3): dT/dn
            radial = (dn * n[:, None, :]).sum(axis=-1, keepdims=True)  # (dT/dn) . n
            grads.append((dn - radial * n[:, None, :]) / length[:, None, None])
    values = [_shape(v, l, lead, layout, xp, False) for l, v in enumerate(values)]
    if not gradient:
        return values
    return values, [_shape(g, l, lead, layout, xp, True) for l, g in enumerate(grads)]


def _shape(a: Any, l: int, lead: tuple[int, ...], layout: str, xp: ModuleType, has_grad: bool) -> Any:
    if layout == "compact":
        return a.reshape(lead + (2 * l + 1,) + ((3,) if has_grad else ()))
    u = tables.to_full_matrix(l, a.dtype, xp)
    if has_grad:
        full = xp.einsum("nmd,mi->nid", a, u)
        return full.reshape(lead + (3,) * l + (3,))
    return (a @ u).reshape(lead + (3,) * l)
