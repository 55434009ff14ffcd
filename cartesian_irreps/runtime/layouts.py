"""Converters between the full 3^l layout and the compact (2l+1) layout.

``compact = U x_full`` and ``full = U^T x_compact`` with the orthonormal basis matrix U of
:mod:`cartesian_irreps.symbolic.basis` (rows ``e_{l,m}``). For an ICT (symmetric, traceless) the round
trip is exact; for any other tensor ``to_full(to_compact(t))`` is its projection ``P_l t``.
"""

from __future__ import annotations

from typing import Any

from .._validate import check_rank
from . import tables
from .backend import array_module, as_float_array, check_trailing


def to_compact(t: Any, l: int) -> Any:
    """Full layout ``(..., 3, ..., 3)`` (l trailing axes) -> compact ``(..., 2l+1)``."""
    l = check_rank(l)
    tables.check_harmonics_lmax(l)
    xp = array_module(t)
    as_float_array(t, "t", xp)
    check_trailing(t, "t", (3,) * l, f"rank {l} in the full layout")
    lead = t.shape[: t.ndim - l]
    return t.reshape(lead + (3**l,)) @ tables.to_compact_matrix(l, t.dtype, xp)


def to_full(t: Any, l: int) -> Any:
    """Compact ``(..., 2l+1)`` -> full layout ``(..., 3, ..., 3)`` (l trailing axes)."""
    l = check_rank(l)
    tables.check_harmonics_lmax(l)
    xp = array_module(t)
    as_float_array(t, "t", xp)
    check_trailing(t, "t", (2 * l + 1,), f"rank {l} in the compact layout")
    return (t @ tables.to_full_matrix(l, t.dtype, xp)).reshape(t.shape[:-1] + (3,) * l)
