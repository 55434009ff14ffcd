"""Gathers and scatters along axis 0 (``index_select``, ``segment_sum``), general indexing (``getitem``,
``index_add``), and joining (``concatenate``, ``stack``).

Each gather's VJP is the matching scatter-add and vice versa, so every order of derivative stays within
the family. Index arrays are constants (1-D integer arrays of the data's array module).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .elementwise import _lift
from .reductions import _axes, reshape
from .tensor import Array, Context, Function, Tensor, array_module, is_cupy


def index_array(idx: Any, like: Array, name: str) -> Array:
    """``idx`` as a 1-D integer array of the array module of ``like`` (a TypeError naming ``name`` otherwise)."""
    if isinstance(idx, Tensor):
        idx = idx.data
    if is_cupy(idx) != is_cupy(like):
        raise TypeError(f"{name}: index array and data mix NumPy and CuPy arrays")
    idx = array_module(like).asarray(idx)
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise TypeError(f"{name}: index must be a 1-D integer array, got dtype {idx.dtype} and shape {idx.shape}")
    return idx


def _scatter_add(out: Array, key: Any, x: Array) -> None:
    """``out[key] += x`` with repeated indices accumulated (NumPy ``add.at`` / CuPy ``scatter_add``)."""
    if is_cupy(out):
        import cupyx

        if hasattr(cupyx, "scatter_add"):
            cupyx.scatter_add(out, key, x)
        else:  # newer CuPy: ufunc.at
            array_module(out).add.at(out, key, x)
    else:
        np.add.at(out, key, x)


def _segment_sum_numpy(x: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Scatter-add on the CPU by sorting: ``add.reduceat`` over runs of equal indices.

    Rows are visited in index order (a stable ``argsort`` unless ``idx`` is already non-decreasing,
    as the receivers of a neighbour list are), and each run is summed with one ``reduceat``; this is
    several times faster than ``add.at``.
    """
    rows, width = x.shape[0], int(np.prod(x.shape[1:]))
    out = np.zeros((n, width), dtype=x.dtype)
    if rows == 0:
        return out.reshape((n, *x.shape[1:]))
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise IndexError(f"segment_sum: indices must lie in [0, {n}), got [{int(idx.min())}, {int(idx.max())}]")
    x2, ids = x.reshape(rows, width), idx.astype(np.intp, copy=False)
    if rows > 1 and not bool((ids[1:] >= ids[:-1]).all()):
        order = np.argsort(ids, kind="stable")
        ids, x2 = ids[order], x2[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    out[ids[starts]] = np.add.reduceat(x2, starts, axis=0)
    return out.reshape((n, *x.shape[1:]))


class IndexSelect(Function):
    """Gather ``y[e] = x[idx[e]]`` (axis 0);  ``x̄ = segment_sum(g, idx, len(x))``."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, idx: Array) -> Array:
        ctx.idx = idx
        return array_module(x).take(x, idx, axis=0)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (segment_sum(g, ctx.idx, x.shape[0]),)


class SegmentSum(Function):
    """Scatter-add ``y[s] = Σ_{e: idx[e] = s} x[e]`` (axis 0);  ``x̄ = index_select(g, idx)``."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, idx: Array, num_segments: int) -> Array:
        ctx.idx = idx
        if is_cupy(x):
            out = array_module(x).zeros((num_segments, *x.shape[1:]), dtype=x.dtype)
            _scatter_add(out, idx, x)
            return out
        return _segment_sum_numpy(x, idx, num_segments)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (index_select(g, ctx.idx),)


def index_select(x: Tensor, idx: Any) -> Tensor:
    """Rows ``x[idx]`` along axis 0: shape ``(len(idx), *x.shape[1:])`` (``idx`` constant 1-D ints)."""
    return IndexSelect.apply(x, idx=index_array(idx, x.data, "index_select"))


def segment_sum(x: Tensor, idx: Any, num_segments: int) -> Tensor:
    """Sum rows of ``x`` into segments: shape ``(num_segments, *x.shape[1:])``.

    ``idx`` (1-D ints, ``len(idx) == len(x)``, values in ``[0, num_segments)``) names the segment of
    each row; empty segments are zero.
    """
    idx = index_array(idx, x.data, "segment_sum")
    if x.ndim == 0 or len(idx) != x.shape[0]:
        raise ValueError(f"segment_sum: index length {len(idx)} does not match x.shape {x.shape}")
    return SegmentSum.apply(x, idx=idx, num_segments=int(num_segments))


def _key(key: Any, like: Array) -> tuple[tuple[Any, ...], bool]:
    """Normalised indexing key and whether it is basic (ints, slices, None, Ellipsis only)."""
    key = key if isinstance(key, tuple) else (key,)
    out, basic = [], True
    for k in key:
        if isinstance(k, Tensor):
            raise TypeError("indexing with a Tensor: pass its constant integer array (t.data) instead")
        if isinstance(k, (slice, type(None), type(Ellipsis), int, np.integer)) and not isinstance(k, bool):
            out.append(k)
        else:
            if is_cupy(k) != is_cupy(like) and not isinstance(k, list):
                raise TypeError("indexing: index array and data mix NumPy and CuPy arrays")
            k = array_module(like).asarray(k)
            if k.dtype.kind not in "iub":
                raise TypeError(f"indexing: index arrays must be integer or boolean, got {k.dtype}")
            out.append(k)
            basic = False
    return tuple(out), basic


class GetItem(Function):
    """``y = x[key]`` (basic or advanced);  ``x̄ = index_add(g, key, x.shape)`` (zeros, then scatter-add)."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, key: tuple[Any, ...], basic: bool) -> Array:
        ctx.key, ctx.basic = key, basic
        return x[key]

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (IndexAdd.apply(g, key=ctx.key, basic=ctx.basic, shape=x.shape),)


class IndexAdd(Function):
    """``y = zeros(shape); y[key] += x`` (repeats accumulate);  ``x̄ = g[key]``. Adjoint of :class:`GetItem`."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, key: tuple[Any, ...], basic: bool, shape: tuple[int, ...]) -> Array:
        ctx.key, ctx.basic = key, basic
        out = array_module(x).zeros(shape, dtype=x.dtype)
        if basic:  # a basic key selects each entry at most once
            out[key] = x
        else:
            _scatter_add(out, key, x)
        return out

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (GetItem.apply(g, key=ctx.key, basic=ctx.basic),)


def getitem(x: Tensor, key: Any) -> Tensor:
    """``x[key]``: ints, slices, ``None``, ``...`` and constant integer/boolean index arrays."""
    key, basic = _key(key, x.data)
    return GetItem.apply(x, key=key, basic=basic)


def index_add(x: Tensor, key: Any, shape: Sequence[int]) -> Tensor:
    """``zeros(shape)`` with ``x`` added at ``[key]`` (the adjoint of ``getitem``)."""
    key, basic = _key(key, x.data)
    return IndexAdd.apply(x, key=key, basic=basic, shape=tuple(shape))


class Concatenate(Function):
    """``y = concatenate(xs, axis)``;  ``x̄_i = g[..., o_i : o_i + n_i, ...]`` (slices along ``axis``)."""

    @staticmethod
    def forward(ctx: Context, *arrays: Array, axis: int) -> Array:
        ctx.axis = axis
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, *inputs: Tensor) -> tuple[Tensor | None, ...]:
        grads, start, pre = [], 0, (slice(None),) * ctx.axis
        for k, x in enumerate(inputs):
            stop = start + x.shape[ctx.axis]
            grads.append(getitem(g, (*pre, slice(start, stop))) if ctx.needs_input_grad[k] else None)
            start = stop
        return tuple(grads)


def concatenate(xs: Sequence[Any], axis: int = 0) -> Tensor:
    """Join Tensors along an existing ``axis``."""
    like = next((x for x in xs if isinstance(x, Tensor)), None)
    ts = [_lift(x, like) for x in xs]
    if not ts:
        raise ValueError("concatenate: need at least one tensor")
    return Concatenate.apply(*ts, axis=_axes(axis, ts[0].ndim)[0])


def stack(xs: Sequence[Any], axis: int = 0) -> Tensor:
    """Join Tensors along a new ``axis`` (composite: reshape, then concatenate)."""
    like = next((x for x in xs if isinstance(x, Tensor)), None)
    ts = [_lift(x, like) for x in xs]
    if not ts:
        raise ValueError("stack: need at least one tensor")
    ax = _axes(axis, ts[0].ndim + 1)[0]
    return concatenate([reshape(t, (*t.shape[:ax], 1, *t.shape[ax:])) for t in ts], ax)
