"""``einsum`` (the central primitive, via opt_einsum), ``transpose`` and ``matmul`` (a BLAS Gemm for 2-D)."""

from __future__ import annotations

import builtins
import functools
import string
from collections.abc import Sequence
from typing import Any

from opt_einsum import contract_expression

from .elementwise import _lift, _pair
from .reductions import _axes
from .tensor import Array, Context, Function, Tensor, array_module, is_cupy

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
