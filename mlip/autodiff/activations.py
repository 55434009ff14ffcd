"""The SiLU activation ``silu(x) = x σ(x)`` and its first three derivatives as fused ops.

Large NumPy arrays are processed in cache-sized blocks (``_BLOCK`` elements) on up to eight threads
(:func:`cartesian_irreps.runtime.backend.run_parallel`; NumPy releases the GIL).
"""

from __future__ import annotations

import numpy as np

from cartesian_irreps.runtime.backend import default_threads, run_parallel

from .elementwise import _lift, mul
from .tensor import Array, Context, Function, Tensor, array_module, is_cupy

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
