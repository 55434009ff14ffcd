"""The product basis's monomials as autodiff ops, backed by :mod:`cartesian_irreps.runtime.monomials`.

``monomials(a, table)`` maps ``a`` (..., D) to every monomial of its last axis listed by ``table``
(..., T) (see :func:`cartesian_irreps.runtime.monomials.symmetric_monomial_table`). Derivatives up
to second order are single compiled passes, so energies, forces and force training (a gradient of
forces with respect to parameters) never form the per-degree gathers and scatter-adds of a
composition of ``take_last`` and products::

    Monomials(a)          -> m                   VJP: MonomialsVJP(g, a)
    MonomialsVJP(g, a)    -> J(a)^T g            VJP: (MonomialsJVP(u, a), MonomialsHVP(g, u, a))
    MonomialsJVP(h, a)    -> J(a) h              VJP: (MonomialsVJP(u, a), MonomialsHVP(u, h, a))
    MonomialsHVP(g, h, a) -> d/da (J^T g) . h    third derivatives: not implemented

(``J`` is the Jacobian dm/da, ``u`` the incoming cotangent.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cartesian_irreps.runtime import monomials as kern

from . import autodiff as ad
from .autodiff import Context, Function, Tensor

__all__ = ["kernel_available", "monomials"]

kernel_available = kern.kernel_available


def _rows(x: Any, width: int) -> Any:
    return x.reshape(-1, width)


class Monomials(Function):
    """``m = monomials(a)`` over the last axis."""

    @staticmethod
    def forward(ctx: Context, a: Any, *, table: tuple[np.ndarray, np.ndarray]) -> Any:
        ctx.table = table
        T = len(table[0])
        return kern.monomials(_rows(a, a.shape[-1]), table).reshape(*a.shape[:-1], T)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, a: Tensor) -> tuple[Tensor | None, ...]:
        return (MonomialsVJP.apply(g, a, table=ctx.table),)


class MonomialsVJP(Function):
    """``J(a)^T g``: inputs ``g`` (..., T), ``a`` (..., D); output (..., D)."""

    @staticmethod
    def forward(ctx: Context, g: Any, a: Any, *, table: tuple[np.ndarray, np.ndarray]) -> Any:
        ctx.table = table
        D, T = a.shape[-1], len(table[0])
        return kern.monomials_vjp(_rows(a, D), _rows(g, T), table).reshape(a.shape)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, g: Tensor, a: Tensor) -> tuple[Tensor | None, ...]:
        t = ctx.table
        dg = MonomialsJVP.apply(u, a, table=t) if ctx.needs_input_grad[0] else None
        da = MonomialsHVP.apply(g, u, a, table=t) if ctx.needs_input_grad[1] else None
        return dg, da


class MonomialsJVP(Function):
    """``J(a) h``: inputs ``h`` (..., D), ``a`` (..., D); output (..., T)."""

    @staticmethod
    def forward(ctx: Context, h: Any, a: Any, *, table: tuple[np.ndarray, np.ndarray]) -> Any:
        ctx.table = table
        D, T = a.shape[-1], len(table[0])
        return kern.monomials_jvp(_rows(a, D), _rows(h, D), table).reshape(*a.shape[:-1], T)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, h: Tensor, a: Tensor) -> tuple[Tensor | None, ...]:
        t = ctx.table
        dh = MonomialsVJP.apply(u, a, table=t) if ctx.needs_input_grad[0] else None
        da = MonomialsHVP.apply(u, h, a, table=t) if ctx.needs_input_grad[1] else None
        return dh, da


class MonomialsHVP(Function):
    """``sum_t g_t sum_c h_c d^2 m_t / (da da_c)``: inputs ``g`` (..., T), ``h``, ``a`` (..., D)."""

    @staticmethod
    def forward(ctx: Context, g: Any, h: Any, a: Any, *, table: tuple[np.ndarray, np.ndarray]) -> Any:
        D, T = a.shape[-1], len(table[0])
        return kern.monomials_hvp(_rows(a, D), _rows(g, T), _rows(h, D), table).reshape(a.shape)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, *inputs: Tensor) -> tuple[Tensor | None, ...]:
        raise NotImplementedError(
            "monomials: third derivatives are not implemented (energy, forces and "
            "force training need at most second derivatives)"
        )


def monomials(a: Tensor, table: tuple[Any, Any]) -> Tensor:
    """Every monomial of ``table`` of the last axis of ``a`` (..., D): shape (..., T)."""
    parent, last = (np.ascontiguousarray(np.asarray(x), dtype=np.int32) for x in table)
    return Monomials.apply(a if isinstance(a, Tensor) else ad.constant(a), table=(parent, last))
