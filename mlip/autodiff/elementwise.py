"""Elementwise arithmetic and functions, and how constants are lifted to Tensors.

Binary ops broadcast like NumPy; their VJPs un-broadcast the cotangent with :func:`sum_to`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .reductions import sum_to
from .tensor import Array, Context, Function, Tensor, array_module, constant


def _lift(x: Any, like: Tensor | None) -> Tensor:
    """``x`` as a Tensor; a Python/NumPy scalar takes the float dtype (and array module) of ``like``."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, np.number)) and like.dtype.kind == "f":
        return Tensor(array_module(like.data).asarray(x, dtype=like.dtype))
    return constant(x)


def _pair(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return _lift(a, like), _lift(b, like)


def _need(ctx: Context, i: int) -> bool:
    return ctx.needs_input_grad[i]


class Add(Function):
    """``y = a + b``;  ``ā = sum_to(g, a.shape)``, ``b̄ = sum_to(g, b.shape)``."""

    @staticmethod
    def forward(ctx: Context, a: Array, b: Array) -> Array:
        return a + b

    @staticmethod
    def vjp(ctx: Context, g: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor | None, ...]:
        return (sum_to(g, a.shape) if _need(ctx, 0) else None, sum_to(g, b.shape) if _need(ctx, 1) else None)


class Sub(Function):
    """``y = a - b``;  ``ā = sum_to(g)``, ``b̄ = -sum_to(g)``."""

    @staticmethod
    def forward(ctx: Context, a: Array, b: Array) -> Array:
        return a - b

    @staticmethod
    def vjp(ctx: Context, g: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor | None, ...]:
        return (sum_to(g, a.shape) if _need(ctx, 0) else None, neg(sum_to(g, b.shape)) if _need(ctx, 1) else None)


class Mul(Function):
    """``y = a * b``;  ``ā = sum_to(g * b)``, ``b̄ = sum_to(g * a)``."""

    @staticmethod
    def forward(ctx: Context, a: Array, b: Array) -> Array:
        return a * b

    @staticmethod
    def vjp(ctx: Context, g: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor | None, ...]:
        return (
            sum_to(mul(g, b), a.shape) if _need(ctx, 0) else None,
            sum_to(mul(g, a), b.shape) if _need(ctx, 1) else None,
        )


class Div(Function):
    """``y = a / b``;  with ``t = g / b``: ``ā = sum_to(t)``, ``b̄ = -sum_to(t * y)``."""

    @staticmethod
    def forward(ctx: Context, a: Array, b: Array) -> Array:
        return a / b

    @staticmethod
    def vjp(ctx: Context, g: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor | None, ...]:
        t = div(g, b)
        return (
            sum_to(t, a.shape) if _need(ctx, 0) else None,
            neg(sum_to(mul(t, ctx.output), b.shape)) if _need(ctx, 1) else None,
        )


class Neg(Function):
    """``y = -x``;  ``x̄ = -g``."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        return -x

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (neg(g),)


class Pow(Function):
    """``y = x ** p`` (constant scalar ``p``);  ``x̄ = g * p * x ** (p - 1)``."""

    @staticmethod
    def forward(ctx: Context, x: Array, *, p: float) -> Array:
        ctx.p = p
        return x**p

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (mul(g, mul(power(x, ctx.p - 1), ctx.p)),)


class Exp(Function):
    """``y = exp(x)``;  ``x̄ = g * y``."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        return array_module(x).exp(x)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (mul(g, ctx.output),)


class Log(Function):
    """``y = log(x)``;  ``x̄ = g / x``."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        return array_module(x).log(x)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (div(g, x),)


class Sqrt(Function):
    """``y = sqrt(x)``;  ``x̄ = g / (2 y)`` (infinite at ``x = 0``)."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        return array_module(x).sqrt(x)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (mul(div(g, ctx.output), 0.5),)


class Sin(Function):
    """``y = sin(x)``;  ``x̄ = g cos(x)``."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        return array_module(x).sin(x)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (mul(g, cos(x)),)


class Cos(Function):
    """``y = cos(x)``;  ``x̄ = -g sin(x)``."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        return array_module(x).cos(x)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (neg(mul(g, sin(x))),)


class Tanh(Function):
    """``y = tanh(x)``;  ``x̄ = g (1 - y²)``."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        return array_module(x).tanh(x)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        y = ctx.output
        return (mul(g, sub(1.0, mul(y, y))),)


class Sigmoid(Function):
    """``y = 1 / (1 + exp(-x)) = (1 + tanh(x / 2)) / 2`` (the latter: no overflow);  ``x̄ = g y (1 - y)``."""

    @staticmethod
    def forward(ctx: Context, x: Array) -> Array:
        xp = array_module(x)
        y = xp.multiply(x, 0.5, out=xp.empty(x.shape, x.dtype if x.dtype.kind == "f" else np.float64))
        # one fresh array, then in place
        xp.tanh(y, out=y)
        y *= 0.5
        y += 0.5
        return y

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        y = ctx.output
        return (mul(mul(g, y), sub(1.0, y)),)


def add(a: Any, b: Any) -> Tensor:
    """``a + b`` with NumPy broadcasting."""
    return Add.apply(*_pair(a, b))


def sub(a: Any, b: Any) -> Tensor:
    """``a - b`` with NumPy broadcasting."""
    return Sub.apply(*_pair(a, b))


def mul(a: Any, b: Any) -> Tensor:
    """``a * b`` with NumPy broadcasting (masking: multiply by a constant 0/1 array)."""
    return Mul.apply(*_pair(a, b))


def div(a: Any, b: Any) -> Tensor:
    """``a / b`` with NumPy broadcasting."""
    return Div.apply(*_pair(a, b))


def neg(x: Tensor) -> Tensor:
    """``-x``."""
    return Neg.apply(x)


def power(x: Tensor, p: float) -> Tensor:
    """``x ** p`` for a constant real scalar ``p`` (``p = 0`` gives constant ones, ``p = 1`` gives ``x``)."""
    if not isinstance(p, (int, float, np.integer, np.floating)) or isinstance(p, bool):
        raise TypeError(f"power: the exponent must be a constant real scalar, got {type(p).__name__}")
    p = int(p) if float(p).is_integer() else float(p)  # a Python scalar keeps float32 float32
    if p == 0:
        return Tensor(array_module(x.data).ones_like(x.data))
    if p == 1:
        return x
    return Pow.apply(x, p=p)


def exp(x: Tensor) -> Tensor:
    """``exp(x)`` elementwise."""
    return Exp.apply(x)


def log(x: Tensor) -> Tensor:
    """``log(x)`` elementwise."""
    return Log.apply(x)


def sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` elementwise."""
    return Sqrt.apply(x)


def sin(x: Tensor) -> Tensor:
    """``sin(x)`` elementwise."""
    return Sin.apply(x)


def cos(x: Tensor) -> Tensor:
    """``cos(x)`` elementwise."""
    return Cos.apply(x)


def tanh(x: Tensor) -> Tensor:
    """``tanh(x)`` elementwise."""
    return Tanh.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    """``σ(x) = 1 / (1 + exp(-x))`` elementwise."""
    return Sigmoid.apply(x)
