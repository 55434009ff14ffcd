"""Reductions (sum, mean), broadcasting and reshaping, and :func:`stop_gradient`.

``sum_to`` is the adjoint of ``broadcast_to``: it sums a cotangent back to an input's shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .tensor import Array, Context, Function, Tensor, array_module

Axis = int | tuple[int, ...] | None


def _axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(out)


class Sum(Function):
    """``y = Σ_axes x``;  ``x̄ = broadcast_to(g with the summed axes kept as 1, x.shape)``."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, axes: tuple[int, ...], keepdims: bool) -> Array:
        ctx.axes, ctx.keepdims = axes, keepdims
        return array_module(x).sum(x, axis=axes, keepdims=keepdims)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        if not ctx.keepdims:
            g = reshape(g, tuple(1 if i in ctx.axes else n for i, n in enumerate(x.shape)))
        return (broadcast_to(g, x.shape),)


class BroadcastTo(Function):
    """``y = broadcast_to(x, shape)`` (a view);  ``x̄ = sum_to(g, x.shape)``."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, shape: tuple[int, ...]) -> Array:
        return array_module(x).broadcast_to(x, shape)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (sum_to(g, x.shape),)


class Reshape(Function):
    """``y = reshape(x, shape)``;  ``x̄ = reshape(g, x.shape)``."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, shape: tuple[int, ...]) -> Array:
        return x.reshape(shape)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (reshape(g, x.shape),)


def sum(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """``Σ x`` over ``axis`` (None: all axes; int or tuple; negative allowed)."""
    return Sum.apply(x, axes=_axes(axis, x.ndim), keepdims=bool(keepdims))


def mean(x: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """``sum(x, axis, keepdims) / n`` with ``n`` the number of averaged entries."""
    axes = _axes(axis, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes]))
    return sum(x, axes, keepdims) * (1.0 / n)


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """``x`` viewed with a new shape (one entry may be -1)."""
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """``x`` broadcast to ``shape`` (NumPy rules)."""
    shape = tuple(int(n) for n in shape)
    if shape == x.shape:
        return x
    return BroadcastTo.apply(x, shape=shape)


def sum_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Un-broadcast: sum ``x`` over the axes that broadcasting ``shape`` to ``x.shape`` created.

    ``sum_to(broadcast_to(a, s), a.shape)`` is the adjoint of ``broadcast_to``: leading axes are summed
    away, axes of size 1 in ``shape`` are summed with ``keepdims``.
    """
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead < 0:
        raise ValueError(f"sum_to: cannot reduce shape {x.shape} to {shape}")
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    return reshape(sum(x, axes, keepdims=True), shape)


def stop_gradient(x: Tensor) -> Tensor:
    """The same data as a constant: gradients do not flow through (``x.detach()``)."""
    return Tensor(x.data)
