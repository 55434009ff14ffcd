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

(``J`` is the Jacobian dm/da, ``u`` the incoming cotangent; the four classes are built by
:func:`mlip.derivative_family.derivative_family`.) Each op takes an optional sparse basis
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
from .autodiff import Tensor
from .derivative_family import derivative_family

__all__ = ["basis_product", "kernel_available", "monomials"]

kernel_available = kern.kernel_available


def _rows(x: Any, width: int) -> Any:
    return x.reshape(math.prod(x.shape[:-1]), width)


def _kernel(op: str, a: Any, g: Any, h: Any, spec: tuple[Any, Any]) -> Any:
    """One op of ``a -> m(a) B`` over the last axis (``spec = (table, basis)``; ``basis`` None: ``B = 1``)."""
    table, basis = spec
    D = a.shape[-1]
    W = len(table[0]) if basis is None else int(basis[3])
    lead = a.shape[:-1]
    if op == "forward":
        return kern.monomials(_rows(a, D), table, basis=basis).reshape(*lead, W)
    if op == "vjp":
        return kern.monomials_vjp(_rows(a, D), _rows(g, W), table, basis=basis).reshape(a.shape)
    if op == "jvp":
        return kern.monomials_jvp(_rows(a, D), _rows(h, D), table, basis=basis).reshape(*lead, W)
    return kern.monomials_hvp(_rows(a, D), _rows(g, W), _rows(h, D), table, basis=basis).reshape(a.shape)


MONOMIALS = derivative_family("Monomials", _kernel, "energy, forces and force training need at most second derivatives")


def _int32_table(table: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
    parent, last = (np.ascontiguousarray(np.asarray(x), dtype=np.int32) for x in table)
    return parent, last


def monomials(a: Tensor, table: tuple[Any, Any]) -> Tensor:
    """Every monomial of ``table`` of the last axis of ``a`` (..., D): shape (..., T)."""
    return MONOMIALS(a if isinstance(a, Tensor) else ad.constant(a), (_int32_table(table), None))


def basis_product(a: Tensor, table: tuple[Any, Any], basis: tuple[Any, Any, Any, int]) -> Tensor:
    """``m(a) B`` over the last axis of ``a`` (..., D): shape (..., W), for a sparse basis ``B`` (T, W)
    given as :func:`cartesian_irreps.runtime.monomials.sparse_basis` of the dense matrix."""
    return MONOMIALS(a if isinstance(a, Tensor) else ad.constant(a), (_int32_table(table), basis))
