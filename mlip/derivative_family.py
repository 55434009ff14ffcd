"""Four autodiff ops for a smooth map whose kernel gives its derivatives up to second order.

For ``f: x -> y`` applied row by row, with Jacobian ``J(x) = dy/dx``, a kernel that evaluates
``f``, ``J^T g``, ``J h`` and the Hessian-vector product gives every derivative that energies, forces
and force training need (``u`` is the incoming cotangent; the Hessian of each output is symmetric, so
one HVP serves both second-order rules)::

    Value(x)        -> f(x)                      VJP: VJP(g, x)
    VJP(g, x)       -> J(x)^T g                  VJP: (JVP(u, x), HVP(g, u, x))
    JVP(h, x)       -> J(x) h                    VJP: (VJP(u, x), HVP(u, h, x))
    HVP(g, h, x)    -> sum_t g_t D_h(grad f_t)   third derivatives: not implemented

:func:`derivative_family` builds the four :class:`~mlip.autodiff.Function` classes from the kernel;
the product-basis monomials (:mod:`mlip.monomials`) and the edge harmonics on the generated CUDA
kernels (:mod:`mlip.harmonic_ops`) are two such families.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .autodiff import Context, Function, Tensor

__all__ = ["DerivativeFamily", "Kernel", "derivative_family"]

#: ``kernel(op, x, g, h, spec) -> array`` for op in forward, vjp, jvp, hvp (``g``/``h`` None where unused)
Kernel = Callable[[str, Any, Any, Any, Any], Any]


@dataclass(frozen=True)
class DerivativeFamily:
    """The four ops of one map (see the module docstring); call it as ``family(x, spec)``."""

    value: type[Function]
    vjp: type[Function]
    jvp: type[Function]
    hvp: type[Function]

    def __call__(self, x: Tensor, spec: Any) -> Tensor:
        """``f(x)``; ``spec`` (any object) is passed to every kernel call of the graph it records."""
        return self.value.apply(x, spec=spec)


def derivative_family(name: str, kernel: Kernel, third_order_hint: str = "") -> DerivativeFamily:
    """The ops ``name``, ``nameVJP``, ``nameJVP``, ``nameHVP`` of the map that ``kernel`` evaluates.

    ``third_order_hint`` ends the error raised when a third derivative is asked for."""

    class Value(Function):
        @staticmethod
        def forward(ctx: Context, x: Any, *, spec: Any) -> Any:
            ctx.spec = spec
            return kernel("forward", x, None, None, spec)

        @staticmethod
        def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
            return (VJP.apply(g, x, spec=ctx.spec),)

    class VJP(Function):
        @staticmethod
        def forward(ctx: Context, g: Any, x: Any, *, spec: Any) -> Any:
            ctx.spec = spec
            return kernel("vjp", x, g, None, spec)

        @staticmethod
        def vjp(ctx: Context, u: Tensor, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
            dg = JVP.apply(u, x, spec=ctx.spec) if ctx.needs_input_grad[0] else None
            dx = HVP.apply(g, u, x, spec=ctx.spec) if ctx.needs_input_grad[1] else None
            return dg, dx

    class JVP(Function):
        @staticmethod
        def forward(ctx: Context, h: Any, x: Any, *, spec: Any) -> Any:
            ctx.spec = spec
            return kernel("jvp", x, None, h, spec)

        @staticmethod
        def vjp(ctx: Context, u: Tensor, h: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
            dh = VJP.apply(u, x, spec=ctx.spec) if ctx.needs_input_grad[0] else None
            dx = HVP.apply(u, h, x, spec=ctx.spec) if ctx.needs_input_grad[1] else None
            return dh, dx

    class HVP(Function):
        @staticmethod
        def forward(ctx: Context, g: Any, h: Any, x: Any, *, spec: Any) -> Any:
            return kernel("hvp", x, g, h, spec)

        @staticmethod
        def vjp(ctx: Context, u: Tensor, *inputs: Tensor) -> tuple[Tensor | None, ...]:
            hint = f" ({third_order_hint})" if third_order_hint else ""
            raise NotImplementedError(f"{name}: third derivatives are not implemented{hint}")

    for cls, suffix in ((Value, ""), (VJP, "VJP"), (JVP, "JVP"), (HVP, "HVP")):
        cls.__name__ = cls.__qualname__ = f"{name}{suffix}"
    return DerivativeFamily(Value, VJP, JVP, HVP)
