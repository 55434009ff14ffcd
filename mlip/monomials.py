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

(``J`` is the Jacobian dm/da, ``u`` the incoming cotangent.) Each op takes an optional sparse basis
``B`` (T, W) (``basis=``, see :func:`cartesian_irreps.runtime.monomials.sparse_basis`); the family is
then that of ``a -> m(a) B`` (``J`` becomes ``B^T J``), evaluated without storing ``m``:
:func:`basis_product`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cartesian_irreps.runtime import monomials as kern

from . import autodiff as ad
from .autodiff import Context, Function, Tensor

__all__ = ["basis_product", "kernel_available", "monomials"]

kernel_available = kern.kernel_available


def _rows(x: Any, width: int) -> Any:
    return x.reshape(math.prod(x.shape[:-1]), width)


def _width(table: Any, basis: Any) -> int:
    return len(table[0]) if basis is None else int(basis[3])


class Monomials(Function):
    """``m = monomials(a)`` over the last axis."""

    @staticmethod
    def forward(ctx: Context, a: Any, *, table: tuple[np.ndarray, np.ndarray], basis: Any = None) -> Any:
        ctx.table, ctx.basis = table, basis
        W = _width(table, basis)
        return kern.monomials(_rows(a, a.shape[-1]), table, basis=basis).reshape(*a.shape[:-1], W)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, a: Tensor) -> tuple[Tensor | None, ...]:
        return (MonomialsVJP.apply(g, a, table=ctx.table, basis=ctx.basis),)


class MonomialsVJP(Function):
    """``J(a)^T g``: inputs ``g`` (..., T), ``a`` (..., D); output (..., D)."""

    @staticmethod
    def forward(ctx: Context, g: Any, a: Any, *, table: tuple[np.ndarray, np.ndarray], basis: Any = None) -> Any:
        ctx.table, ctx.basis = table, basis
        D, W = a.shape[-1], _width(table, basis)
        return kern.monomials_vjp(_rows(a, D), _rows(g, W), table, basis=basis).reshape(a.shape)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, g: Tensor, a: Tensor) -> tuple[Tensor | None, ...]:
        t, b = ctx.table, ctx.basis
        dg = MonomialsJVP.apply(u, a, table=t, basis=b) if ctx.needs_input_grad[0] else None
        da = MonomialsHVP.apply(g, u, a, table=t, basis=b) if ctx.needs_input_grad[1] else None
        return dg, da


class MonomialsJVP(Function):
    """``J(a) h``: inputs ``h`` (..., D), ``a`` (..., D); output (..., T)."""

    @staticmethod
    def forward(ctx: Context, h: Any, a: Any, *, table: tuple[np.ndarray, np.ndarray], basis: Any = None) -> Any:
        ctx.table, ctx.basis = table, basis
        D, W = a.shape[-1], _width(table, basis)
        return kern.monomials_jvp(_rows(a, D), _rows(h, D), table, basis=basis).reshape(*a.shape[:-1], W)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, h: Tensor, a: Tensor) -> tuple[Tensor | None, ...]:
        t, b = ctx.table, ctx.basis
        dh = MonomialsVJP.apply(u, a, table=t, basis=b) if ctx.needs_input_grad[0] else None
        da = MonomialsHVP.apply(u, h, a, table=t, basis=b) if ctx.needs_input_grad[1] else None
        return dh, da


class MonomialsHVP(Function):
    """``sum_t g_t sum_c h_c d^2 m_t / (da da_c)``: inputs ``g`` (..., T), ``h``, ``a`` (..., D)."""

    @staticmethod
    def forward(
        ctx: Context, g: Any, h: Any, a: Any, *, table: tuple[np.ndarray, np.ndarray], basis: Any = None
    ) -> Any:
        D, W = a.shape[-1], _width(table, basis)
        return kern.monomials_hvp(_rows(a, D), _rows(g, W), _rows(h, D), table, basis=basis).reshape(a.shape)

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


def basis_product(a: Tensor, table: tuple[Any, Any], basis: tuple[Any, Any, Any, int]) -> Tensor:
    """``m(a) B`` over the last axis of ``a`` (..., D): shape (..., W), for a sparse basis ``B`` (T, W)
    given as :func:`cartesian_irreps.runtime.monomials.sparse_basis` of the dense matrix."""
    parent, last = (np.ascontiguousarray(np.asarray(x), dtype=np.int32) for x in table)
    return Monomials.apply(a if isinstance(a, Tensor) else ad.constant(a), table=(parent, last), basis=basis)
