"""Primitive ops and their vector-Jacobian products (VJPs), each VJP written with the same ops.

Notation: ``g`` is the cotangent of the output ``y`` (shape of ``y``); each VJP returns ``g · ∂y/∂x``
for every input ``x`` (shape of ``x``). Binary elementwise ops broadcast like NumPy and their VJPs
un-broadcast with :func:`sum_to`. Because every VJP is itself made of recorded ops, differentiating
it again (``create_graph=True``) gives exact higher derivatives.
"""

from __future__ import annotations

import builtins
import functools
import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from opt_einsum import contract_expression

from cartesian_irreps.runtime.backend import default_threads, run_parallel

from .tensor import Array, Context, Function, Tensor, array_module, constant, is_cupy

Axis = int | tuple[int, ...] | None

__all__ = [
    "add",
    "broadcast_to",
    "concatenate",
    "cos",
    "div",
    "einsum",
    "exp",
    "getitem",
    "index_add",
    "index_select",
    "log",
    "matmul",
    "mean",
    "mul",
    "neg",
    "pair_gather",
    "power",
    "reshape",
    "segment_sum",
    "sigmoid",
    "silu",
    "sin",
    "sqrt",
    "stack",
    "stop_gradient",
    "sub",
    "sum",
    "sum_to",
    "tanh",
    "transpose",
]


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


# --------------------------------------------------------------------------------------------- #
# elementwise arithmetic                                                                          #
# --------------------------------------------------------------------------------------------- #
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


_BLOCK = 1 << 15  # elements per block: every pass of the formula stays in cache


def _silu_formula(x: Array, order: int, g: Array | None, out: Array, out1: Array | None = None) -> None:
    """``out = [g *] silu^(order)(x)`` on one block, with σ(x) = 1 / (1 + exp(-x)); for order 0 also
    ``out1 = silu'(x)`` when given (σ computed once for both).

    exp(-x) overflows to inf for x < -709 (float64), which gives the correct σ = 0; the warning is
    silenced locally.
    """
    xp = array_module(x)
    s = xp.negative(x, out=xp.empty(x.shape, x.dtype))
    with np.errstate(over="ignore"):
        xp.exp(s, out=s)
    s += 1
    xp.reciprocal(s, out=s)
    if order == 0:
        xp.multiply(x, s, out=out)
        if out1 is not None:  # s (1 + x (1 - s)) = s + out (1 - s)
            xp.subtract(1, s, out=out1)
            out1 *= out
            out1 += s
    else:
        xp.subtract(1, s, out=out)  # 1 - s
        if order == 1:  # s (1 + x (1 - s))
            out *= x
            out += 1
            out *= s
        else:
            q = xp.multiply(s, out, out=xp.empty(x.shape, x.dtype))  # s (1 - s)
            if order == 2:  # q (2 + x (1 - 2s))
                out -= s
                out *= x
                out += 2
            else:  # q (3 (1 - 2s) + x (1 - 6s + 6s^2))
                t = xp.multiply(s, s, out=xp.empty(x.shape, x.dtype))
                t -= s
                t *= 6
                t += 1
                t *= x
                out -= s
                out *= 3
                out += t
            out *= q
    if g is not None:
        out *= g


def _silu_apply(x: Array, order: int, g: Array | None, out1: Array | None = None) -> Array:
    """The formula over the whole array: in cache-sized blocks, on two threads for large NumPy arrays
    (``out1``: see :func:`_silu_formula`)."""
    xp = array_module(x)
    out = xp.empty(x.shape, x.dtype)
    if is_cupy(x) or x.size <= 4 * _BLOCK:
        _silu_formula(x, order, g, out, out1)
        return out
    xf, of = np.ascontiguousarray(x).reshape(-1), out.reshape(-1)
    o1 = None if out1 is None else out1.reshape(-1)
    gf = None if g is None else np.ascontiguousarray(np.broadcast_to(g, x.shape)).reshape(-1)
    starts = range(0, xf.size, _BLOCK)

    def run(part: range) -> None:
        for s in part:
            e = min(s + _BLOCK, xf.size)
            _silu_formula(xf[s:e], order, None if gf is None else gf[s:e], of[s:e], None if o1 is None else o1[s:e])

    n = min(default_threads(), 8)
    run_parallel(run, [(starts[i::n],) for i in range(n)])
    return out


class SiluDerivative(Function):
    """``y = silu^(n)(x)``, the n-th derivative of ``silu(x) = x σ(x)`` (n = 0..3), in one fused op.

    With ``s = σ(x)``: first derivative ``s (1 + x (1 - s))``, second ``s (1 - s) (2 + x (1 - 2s))``,
    third ``s (1 - s) (3 (1 - 2s) + x (1 - 6s + 6s^2))``;  ``x̄ = silu_grad(g, x, n + 1)``.
    Large arrays are processed in cache-sized blocks on two threads (NumPy releases the GIL).

    ``keep=True`` (order 0, set by :func:`silu` when ``x`` requires gradients) also keeps
    ``silu'(x)`` from the same σ, and the VJP is then ``g ⊙ silu'(x)`` with that array entering as a
    recorded order-1 op (``given=``), so it is differentiable again like the fused SiluGrad.
    """

    MAX_ORDER = 3

    @staticmethod
    def forward(ctx: Context, x: Array, *, order: int, keep: bool = False, given: Array | None = None) -> Array:
        ctx.order = order
        if given is not None:  # the value was computed with a lower order's forward
            return given
        if order == 0 and keep:
            ctx.derivative = array_module(x).empty(x.shape, x.dtype)
            return _silu_apply(x, 0, None, ctx.derivative)
        return _silu_apply(x, order, None)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.order >= SiluDerivative.MAX_ORDER:
            raise NotImplementedError(f"silu derivatives beyond order {SiluDerivative.MAX_ORDER} are not implemented")
        if getattr(ctx, "derivative", None) is not None:
            return (mul(g, SiluDerivative.apply(x, order=1, given=ctx.derivative)),)
        return (SiluGrad.apply(g, x, order=ctx.order + 1),)


class SiluGrad(Function):
    """``y = g ⊙ silu^(n)(x)`` in one pass (n = 1..3): the VJP of silu and of its derivatives.

    ``ḡ = silu_grad(h, x, n)`` and ``x̄ = silu_grad(h ⊙ g, x, n + 1)``, so the family is closed.
    """

    @staticmethod
    def forward(ctx: Context, g: Array, x: Array, *, order: int) -> Array:
        ctx.order = order
        return _silu_apply(x, order, g)

    @staticmethod
    def vjp(ctx: Context, h: Tensor, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        gg = SiluGrad.apply(h, x, order=ctx.order) if ctx.needs_input_grad[0] else None
        gx = None
        if ctx.needs_input_grad[1]:
            if ctx.order >= SiluDerivative.MAX_ORDER:
                raise NotImplementedError(f"silu derivatives beyond order {SiluDerivative.MAX_ORDER} are not available")
            gx = SiluGrad.apply(mul(h, g), x, order=ctx.order + 1)
        return (gg, gx)


def silu(x: Tensor) -> Tensor:
    """``silu(x) = x σ(x)``; it and its first three derivatives are single fused ops."""
    x = _lift(x, None)
    return SiluDerivative.apply(x, order=0, keep=x.requires_grad)


# --------------------------------------------------------------------------------------------- #
# shapes and reductions                                                                           #
# --------------------------------------------------------------------------------------------- #
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
    return mul(sum(x, axes, keepdims), 1.0 / n)


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


# --------------------------------------------------------------------------------------------- #
# einsum: the central primitive                                                                   #
# --------------------------------------------------------------------------------------------- #
_LETTERS = string.ascii_letters


@functools.lru_cache(maxsize=2048)
def _parse(eq: str, ndims: tuple[int, ...]) -> tuple[tuple[str, ...], str]:
    """Explicit subscripts of an einsum equation: ``...`` expanded to letters, implicit output made explicit."""
    eq = eq.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(ndims):
        raise ValueError(f"einsum {eq!r}: the equation has {len(subs)} operands but {len(ndims)} were given")
    for s in [*subs, out]:
        if not builtins.all(c in _LETTERS for c in s.replace("...", "")) or s.count("...") > 1:
            raise ValueError(f"einsum {eq!r}: invalid subscripts {s!r} (letters and one '...' only)")
    free = [c for c in _LETTERS if c not in eq]
    n_ell = max([nd - len(s) + 3 for s, nd in zip(subs, ndims) if "..." in s], default=0)
    if n_ell > len(free):
        raise ValueError(f"einsum {eq!r}: too many dimensions under '...'")
    ell = "".join(free[:n_ell])
    expanded = []
    for i, (s, nd) in enumerate(zip(subs, ndims)):
        if "..." in s:
            k = nd - len(s) + 3
            if k < 0:
                raise ValueError(f"einsum {eq!r}: operand {i} has {nd} dimensions, fewer than subscripts {s!r}")
            s = s.replace("...", ell[n_ell - k :])
        if len(s) != nd:
            raise ValueError(f"einsum {eq!r}: operand {i} has {nd} dimensions but subscripts {s!r} name {len(s)}")
        expanded.append(s)
    letters = "".join(expanded)
    if arrow:
        out = out.replace("...", ell)
        if len(set(out)) != len(out) or builtins.any(c not in letters for c in out):
            raise ValueError(f"einsum {eq!r}: output subscripts must be distinct and appear in an input")
    else:
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    return tuple(expanded), out


@functools.lru_cache(maxsize=4096)
def _expression(eq: str, shapes: tuple[tuple[int, ...], ...]) -> Any:
    """opt_einsum's compiled contraction for one equation and operand shapes (the path is found once)."""
    return contract_expression(eq, *shapes, optimize="auto")


class Einsum(Function):
    """``y = einsum(eq, x_1, …, x_n)`` via ``opt_einsum.contract``.

    VJP for operand ``k`` with subscripts ``s_k``: another einsum of the other operands and ``g``,
    ``x̄_k = einsum("s_1,…(no s_k)…,s_n,s_out->s_k", …, g)``. Two adjustments keep it a valid einsum:
    an index repeated in ``s_k`` (a trace or diagonal) gets a fresh letter tied to it by an identity
    matrix ``δ``, and an index of ``s_k`` found nowhere else is supplied by a vector of ones.
    """

    @staticmethod
    def forward(ctx: Context, *arrays: Array, eq: str) -> Array:
        subs, out = _parse(eq, tuple(a.ndim for a in arrays))
        sizes: dict[str, int] = {}
        for i, (s, a) in enumerate(zip(subs, arrays)):
            for c, n in zip(s, a.shape):
                if sizes.setdefault(c, n) != n:
                    shapes = [tuple(b.shape) for b in arrays]
                    raise ValueError(
                        f"einsum {eq!r}: index {c!r} has size {sizes[c]} and {n} (operand {i}); shapes {shapes}"
                    )
        ctx.subs, ctx.out, ctx.sizes = subs, out, sizes
        backend = "cupy" if is_cupy(arrays[0]) else "numpy"
        expr = _expression(",".join(subs) + "->" + out, tuple(a.shape for a in arrays))
        return expr(*arrays, backend=backend)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, *inputs: Tensor) -> tuple[Tensor | None, ...]:
        subs, out, sizes = ctx.subs, ctx.out, ctx.sizes
        xp = array_module(g.data)
        used = set("".join(subs) + out)
        grads: list[Tensor | None] = []
        for k, sk in enumerate(subs):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            others = [j for j in range(len(subs)) if j != k]
            present = set(out).union(*(subs[j] for j in others))
            fresh = (c for c in _LETTERS if c not in used)
            target, extra_subs, extra = [], [], []
            for c in sk:
                if c in target:  # repeated index: y depends on the diagonal only
                    f = next(fresh, None)
                    if f is None:
                        raise ValueError("einsum VJP: ran out of index letters")
                    target.append(f)
                    extra_subs.append(c + f)
                    extra.append(Tensor(xp.eye(sizes[c], dtype=g.dtype)))
                else:
                    target.append(c)
                    if c not in present and sk.count(c) == 1:  # summed away inside operand k only
                        extra_subs.append(c)
                        extra.append(Tensor(xp.ones(sizes[c], dtype=g.dtype)))
            geq = ",".join([subs[j] for j in others] + [out] + extra_subs) + "->" + "".join(target)
            grads.append(einsum(geq, *[inputs[j] for j in others], g, *extra))
        return tuple(grads)


def einsum(eq: str, *operands: Any) -> Tensor:
    """Einstein summation ``eq`` (NumPy syntax, ``...`` allowed) over Tensor operands.

    Every index must have one size across operands (no size-1 broadcasting); a mismatch raises
    ``ValueError`` naming the index and the shapes. Repeated operands and repeated indices (traces,
    diagonals) are supported.
    """
    if not operands:
        raise ValueError("einsum: need at least one operand")
    like = next((o for o in operands if isinstance(o, Tensor)), None)
    return Einsum.apply(*(_lift(o, like) for o in operands), eq=eq)


def transpose(x: Tensor, axes: Sequence[int] | None = None) -> Tensor:
    """Permute axes (reverse them by default), as an einsum."""
    axes = tuple(reversed(range(x.ndim))) if axes is None else _axes(tuple(axes), x.ndim)
    if len(axes) != x.ndim:
        raise ValueError(f"transpose: axes {axes} do not match {x.ndim} dimensions")
    s = _LETTERS[: x.ndim]
    return einsum(s + "->" + "".join(s[a] for a in axes), x)


class Gemm(Function):
    """``y = op(a) @ op(b)`` for matrices, ``op`` the transpose where ``ta`` / ``tb`` say so.

    One BLAS call with a C-contiguous result. VJP (``y = a b``): ``ā = g bᵀ``, ``b̄ = aᵀ g``, i.e.
    other Gemm calls with transpose flags (no transposed copies are made).
    """

    @staticmethod
    def forward(ctx: Context, a: Array, b: Array, *, ta: bool, tb: bool) -> Array:
        ctx.ta, ctx.tb = ta, tb
        return array_module(a).matmul(a.T if ta else a, b.T if tb else b)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor | None, ...]:
        ta, tb = ctx.ta, ctx.tb
        da = db = None
        if ctx.needs_input_grad[0]:
            da = Gemm.apply(b, g, ta=tb, tb=True) if ta else Gemm.apply(g, b, ta=False, tb=not tb)
        if ctx.needs_input_grad[1]:
            db = Gemm.apply(g, a, ta=True, tb=ta) if tb else Gemm.apply(a, g, ta=not ta, tb=False)
        return da, db


def matmul(a: Any, b: Any) -> Tensor:
    """``a @ b``: one BLAS call for two matrices, else an einsum (batch axes must match exactly; 1-D
    operands as in NumPy)."""
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: operands must have at least one dimension")
    if a.ndim == 2 and b.ndim == 2:
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
        return Gemm.apply(a, b, ta=False, tb=False)
    lhs, rhs = ("j", "...ij")[a.ndim > 1], ("j", "...jk")[b.ndim > 1]
    out = {(False, False): "", (False, True): "...k", (True, False): "...i", (True, True): "...ik"}
    return einsum(f"{lhs},{rhs}->{out[a.ndim > 1, b.ndim > 1]}", a, b)


# --------------------------------------------------------------------------------------------- #
# gather / scatter along axis 0, indexing, concatenation                                          #
# --------------------------------------------------------------------------------------------- #
def _index_array(idx: Any, like: Array, name: str) -> Array:
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
    return IndexSelect.apply(x, idx=_index_array(idx, x.data, "index_select"))


def segment_sum(x: Tensor, idx: Any, num_segments: int) -> Tensor:
    """Sum rows of ``x`` into segments: shape ``(num_segments, *x.shape[1:])``.

    ``idx`` (1-D ints, ``len(idx) == len(x)``, values in ``[0, num_segments)``) names the segment of
    each row; empty segments are zero.
    """
    idx = _index_array(idx, x.data, "segment_sum")
    if x.ndim == 0 or len(idx) != x.shape[0]:
        raise ValueError(f"segment_sum: index length {len(idx)} does not match x.shape {x.shape}")
    return SegmentSum.apply(x, idx=idx, num_segments=int(num_segments))


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


def pair_gather(x: Tensor, group: Any, members: Any) -> Tensor:
    """Rows ``x[group]`` (axis 0) when each row of ``x`` is read once or twice, e.g. by an edge and its
    reverse: ``group`` (E,) ints in ``[0, R)``, ``members`` (R, 2) the rows reading each ``x`` row (-1:
    none), consistent with ``group``; see :func:`mlip.data.reverse_edge_pairs`."""
    group = _index_array(group, x.data, "pair_gather")
    members = array_module(x.data).asarray(members.data if isinstance(members, Tensor) else members)
    if members.dtype.kind not in "iu" or members.ndim != 2 or members.shape[1] != 2 or members.shape[0] != x.shape[0]:
        raise ValueError(f"pair_gather: members must have shape ({x.shape[0]}, 2), got {tuple(members.shape)}")
    second = members[:, 1] >= 0
    has_second = None if bool(second.all()) else array_module(x.data).flatnonzero(second)
    return PairGather.apply(x, group=group, members=members, has_second=has_second)


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
    idx = _index_array(idx, x.data, "take_last")
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= x.shape[-1]):
        raise IndexError(f"take_last: indices must lie in [0, {x.shape[-1]})")
    return TakeLast.apply(x, idx=idx, plan=_last_axis_plan(idx))


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
