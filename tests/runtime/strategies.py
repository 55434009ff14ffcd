"""Hypothesis strategies and reference helpers shared by the runtime tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from cartesian_irreps._validate import triples
from cartesian_irreps.runtime.layouts import to_compact, to_full

#: float32 tolerances used throughout: about 1e3 ulp relative to the size of the result
RTOL = {np.float64: 1e-12, np.float32: 2e-5}
DTYPES = st.sampled_from([np.float64, np.float32])
TRIPLES = st.sampled_from(triples(4))
SHARED = st.sampled_from([None, "x", "y"])


def orthogonal(seed: int, improper: bool) -> np.ndarray:
    """A random rotation (det +1) or rotoreflection (det -1) in float64."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if improper else q


def rotate_compact(a: np.ndarray, l: int, g: np.ndarray) -> np.ndarray:
    """Apply g to every index of the rank-l tensors stored compactly in the last axis of a (float64)."""
    full = to_full(a.astype(np.float64), l)
    for axis in range(l):
        full = np.moveaxis(np.tensordot(full, g, axes=([full.ndim - l + axis], [1])), -1, full.ndim - l + axis)
    return to_compact(full, l)


def operand_shapes(triple, shared, batch, channels):
    l1, l2, l3 = triple
    xs = batch + ((channels,) if shared != "x" else ()) + (2 * l1 + 1,)
    ys = batch + ((channels,) if shared != "y" else ()) + (2 * l2 + 1,)
    zs = batch + (channels, 2 * l3 + 1)
    return xs, ys, zs


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))
