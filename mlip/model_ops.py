"""Autodiff ops specific to the model, built on :mod:`mlip.autodiff`'s public API.

* :func:`pair_gather` (VJP :class:`PairSum`): rows ``x[group]`` when each row is read by an edge and its
  reverse (:func:`mlip.data.reverse_edge_pairs`): the radial MLP runs once per pair, and its gradient is
  two gathers instead of a scatter-add;
* :func:`take_last` (VJP :class:`PutLast`): a gather along the last axis, used to build the product
  basis's monomials level by level where the compiled monomial kernel is not used (CuPy, or no kernel).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .autodiff import Context, Function, Tensor
from .autodiff.indexing import index_array
from .autodiff.tensor import Array, array_module, is_cupy

__all__ = ["pair_gather", "take_last"]


def _pair_sum(g: Array, members: Array, has_second: Array | None) -> Array:
    xp = array_module(g)
    out = xp.take(g, members[:, 0], axis=0)
    if has_second is None:
        out += xp.take(g, members[:, 1], axis=0)
    elif len(has_second):
        out[has_second] += xp.take(g, members[has_second, 1], axis=0)
    return out


class PairGather(Function):
    """``y[e] = x[group[e]]`` where every row of ``x`` is used by one or two rows of ``y``.

    ``members`` (R, 2): the rows of ``y`` that read row ``k`` of ``x`` (second entry -1 when only
    one does). The VJP, ``x̄[k] = ȳ[members[k, 0]] + ȳ[members[k, 1]]``, is :class:`PairSum`, two
    gathers instead of a general scatter-add.
    """

    @staticmethod
    def forward(ctx: Context, x: Array, *, group: Array, members: Array, has_second: Array | None) -> Array:
        ctx.group, ctx.members, ctx.has_second = group, members, has_second
        return array_module(x).take(x, group, axis=0)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (PairSum.apply(g, group=ctx.group, members=ctx.members, has_second=ctx.has_second),)


class PairSum(Function):
    """``y[k] = x[members[k, 0]] + x[members[k, 1]]`` (the adjoint of :class:`PairGather`)."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, group: Array, members: Array, has_second: Array | None) -> Array:
        ctx.group, ctx.members, ctx.has_second = group, members, has_second
        return _pair_sum(x, members, has_second)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (PairGather.apply(g, group=ctx.group, members=ctx.members, has_second=ctx.has_second),)


def pair_gather(x: Tensor, group: Any, members: Any, has_second: Any = "find") -> Tensor:
    """Rows ``x[group]`` (axis 0) when each row of ``x`` is read once or twice, e.g. by an edge and its
    reverse: ``group`` (E,) ints in ``[0, R)``, ``members`` (R, 2) the rows reading each ``x`` row (-1:
    none), consistent with ``group``; see :func:`mlip.data.reverse_edge_pairs`. ``has_second``: the
    rows with a second reader (``None``: all), as :meth:`mlip.data.EdgePairs.second_rows` gives it
    without a device read; found from ``members`` when not given."""
    group = index_array(group, x.data, "pair_gather")
    members = array_module(x.data).asarray(members.data if isinstance(members, Tensor) else members)
    if members.dtype.kind not in "iu" or members.ndim != 2 or members.shape[1] != 2 or members.shape[0] != x.shape[0]:
        raise ValueError(f"pair_gather: members must have shape ({x.shape[0]}, 2), got {tuple(members.shape)}")
    if isinstance(has_second, str):
        second = members[:, 1] >= 0
        has_second = None if bool(second.all()) else array_module(x.data).flatnonzero(second)
    return PairGather.apply(x, group=group, members=members, has_second=has_second)


class TakeLast(Function):
    """Gather along the last axis: ``y[..., t] = x[..., idx[t]]`` (indices may repeat);
    ``x̄ = put_last(g, idx, x.shape[-1])``, the scatter-add along the last axis."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, idx: Array, plan: tuple) -> Array:
        ctx.idx, ctx.plan = idx, plan
        return array_module(x).take(x, idx, axis=-1)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (PutLast.apply(g, idx=ctx.idx, plan=ctx.plan, size=x.shape[-1]),)


class PutLast(Function):
    """Scatter-add along the last axis: ``y = zeros(..., size); y[..., idx[t]] += x[..., t]``;
    ``x̄ = take_last(g, idx)``. On the CPU: one stable reordering, then ``add.reduceat`` over runs."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, idx: Array, plan: tuple, size: int) -> Array:
        ctx.idx, ctx.plan = idx, plan
        xp = array_module(x)
        out = xp.zeros((*x.shape[:-1], size), dtype=x.dtype)
        if x.shape[-1] == 0:
            return out
        order, starts, targets = plan
        if is_cupy(x):
            xp.add.at(out, (..., idx), x)  # pragma: no cover - GPU only
            return out
        xs = x if order is None else np.take(x, order, axis=-1)
        out[..., targets] = np.add.reduceat(xs, starts, axis=-1)
        return out

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (TakeLast.apply(g, idx=ctx.idx, plan=ctx.plan),)


def _last_axis_plan(idx: np.ndarray) -> tuple:
    """(order or None, run starts, target columns) for the sort-based scatter-add of :class:`PutLast`."""
    host = np.asarray(idx.get() if hasattr(idx, "get") else idx)
    order = None if host.size < 2 or bool((host[1:] >= host[:-1]).all()) else np.argsort(host, kind="stable")
    sorted_idx = host if order is None else host[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1]))) if host.size else host
    return order, starts, sorted_idx[starts] if host.size else host


def take_last(x: Tensor, idx: Any) -> Tensor:
    """``x[..., idx]`` for a constant 1-D integer array (repeats allowed; their gradients add up)."""
    idx = index_array(idx, x.data, "take_last")
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= x.shape[-1]):
        raise IndexError(f"take_last: indices must lie in [0, {x.shape[-1]})")
    return TakeLast.apply(x, idx=idx, plan=_last_axis_plan(idx))
