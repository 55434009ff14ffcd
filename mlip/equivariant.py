"""Differentiable equivariant operations: the cartesian_irreps kernels as autodiff ops.

* :func:`edge_harmonics`: Cartesian harmonics of edge vectors, written with autodiff primitives
  (monomials of the vector times the generated coefficients, divided by ``|r|^l``), so derivatives of
  every order are exact.
* :class:`GraphMessageProduct`: the fused message-passing product, with the gather of the sender
  features and the sum over each receiver's edges fused into the kernel: its four modes are the
  partial gradients of the 4-linear form ``PhiG(h, y, w, g) = Phi(h[senders], y, w, g[receivers])``,
  ``Phi(x, y, w, g) = sum w C_p x y g`` (see :func:`cartesian_irreps.runtime.fused.phi_grad_graph`),
  so no ``(E, C, D)`` array is formed; the VJP of any mode is another mode with the cotangent put in
  place of the argument it replaced, so forces and force training (second derivatives) reuse the
  same compiled kernel.  On ``GraphIndex.identity(E)`` it is the per-edge product.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.fused import GraphIndex, PathTable, phi_grad_graph

from . import autodiff as ad
from . import harmonic_ops
from .autodiff import Context, Function, Tensor


def _contiguous(a: Any) -> Any:
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


class _SameValues(Function):
    """The identity, whose forward returns ``values``: an array equal to the input (a contiguous copy
    made earlier), so that it is not copied again; the VJP passes the cotangent through."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, values: Any) -> Any:
        return values

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None, ...]:
        return (g,)


_GRAPH_ARGS = ("h", "y", "w", "g")
#: the argument each graph mode replaces, and the mode whose output is shaped like each argument
_GRAPH_REPLACED = {"z": "g", "x": "h", "y": "y", "w": "w"}
_GRAPH_MODE_OF = {arg: mode for mode, arg in _GRAPH_REPLACED.items()}


class GraphMessageProduct(Function):
    """``mode`` in ``z, x, y, w``: one partial gradient of the graph form ``PhiG`` given the other three arguments.

    ``PhiG(h, y, w, g) = sum_e sum_{c,p,i,j,k} w[e,c,p] C_p[i,j,k] h[s(e),c,ox_p+i] y[e,oy_p+j] g[r(e),c,oz_p+k]``
    with node arrays ``h (N, C, DX)``, ``g (N, C, DZ)``, edge arrays ``y (E, DY)``, ``w (E, C, P)``
    and ``s, r`` the senders and receivers of ``graph``.  Mode ``z`` (replaces ``g``) gives the
    aggregated messages ``(N, C, DZ)``, ``x`` (replaces ``h``) ``dPhiG/dh (N, C, DX)``, ``y`` and
    ``w`` the edge gradients ``(E, DY)`` and ``(E, C, P)``.

    Inputs are the three arguments other than the one ``mode`` replaces, in the order h, y, w, g;
    params ``mode``, ``table`` (:class:`PathTable`) and ``graph`` (:class:`GraphIndex`).  The VJP of
    mode ``m`` with respect to argument ``b``, with cotangent ``v``, is the mode shaped like ``b``
    with ``v`` in place of the argument ``m`` replaced (``PhiG`` is multilinear), so derivatives of
    every order run on the same kernel.  Use :func:`graph_message_product` for the forward product.
    """

    @staticmethod
    def forward(ctx: Context, *arrays: Any, mode: str, table: PathTable, graph: GraphIndex) -> Any:
        names = tuple(a for a in _GRAPH_ARGS if a != _GRAPH_REPLACED[mode])
        ctx.names, ctx.mode, ctx.table, ctx.graph = names, mode, table, graph
        dense = [_contiguous(a) for a in arrays]
        # C-contiguous copies of strided inputs (einsum outputs often are), reused by the VJP's modes
        ctx.copies = {n: c for n, a, c in zip(names, arrays, dense) if c is not a}
        return phi_grad_graph(mode, table, graph, **dict(zip(names, dense)))

    @staticmethod
    def vjp(ctx: Context, v: Tensor, *inputs: Tensor) -> tuple[Tensor | None, ...]:
        named = {
            n: _SameValues.apply(t, values=ctx.copies[n]) if n in ctx.copies else t for n, t in zip(ctx.names, inputs)
        }
        named[_GRAPH_REPLACED[ctx.mode]] = v
        grads: list[Tensor | None] = []
        for k, name in enumerate(ctx.names):
            if not ctx.needs_input_grad[k]:
                grads.append(None)
                continue
            others = [named[a] for a in _GRAPH_ARGS if a != name]
            grads.append(
                GraphMessageProduct.apply(*others, mode=_GRAPH_MODE_OF[name], table=ctx.table, graph=ctx.graph)
            )
        return tuple(grads)


def graph_message_product(table: PathTable, graph: GraphIndex, h: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Aggregated messages ``A (N, C, DZ)``: ``A[n, c, oz_p + k] = sum_{e: r(e) = n} w[e, c, p] sum_ij C_p[i, j, k]
    h[s(e), c, ox_p + i] y[e, oy_p + j]``.

    Equal to ``segment_sum(graph_message_product(table, GraphIndex.identity(E), index_select(h, s), y, w),
    r, N)`` with ``s, r, N`` the senders, receivers and node count of ``graph``, without forming the
    ``(E, C, DX)`` gather or the ``(E, C, DZ)`` messages.  ``h (N, C, DX)``, ``y (E, DY)``, ``w (E, C, P)``.
    """
    return GraphMessageProduct.apply(h, y, w, mode="z", table=table, graph=graph)


# --------------------------------------------------------------------------- harmonics
@cache
def _harmonic_tables(lmax: int, normalization: str, scale_component: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per l: (monomial exponents (n_mono, 3), coefficients (n_mono, 2l+1)) in float64."""
    out = []
    for l in range(lmax + 1):
        coeff = tables.harmonic_basis_floats(l).T * tables.harmonic_scale(l, normalization)
        if scale_component:
            coeff = coeff * np.sqrt(2 * l + 1)
        out.append((tables.monomial_exponents(l), coeff))
    return out


def edge_harmonics(vectors: Tensor, lmax: int, normalization: str = "unit", component: bool = True) -> Tensor:
    """``[T_0(n), ..., T_lmax(n)]`` stacked on the last axis, ``(E, (lmax+1)^2)``, n = r/|r|.

    With ``component=True`` rank l is multiplied by ``sqrt(2l+1)`` so that, for the unit
    normalisation, each component has unit mean square over directions (e3nn's 'component').
    Built from autodiff primitives: ``T_l(r/|r|) = sum_a c_a r^a / |r|^l`` (T_l is homogeneous); on
    CuPy input (and on NumPy under ``use_backend("cuda-twin")``) by one generated CUDA kernel per
    derivative order instead (:mod:`mlip.harmonic_ops`).
    """
    tables.check_harmonics_lmax(lmax)
    if harmonic_ops.use_kernels(vectors.data):
        return harmonic_ops.harmonics(vectors, lmax, normalization, component)
    dtype = vectors.dtype
    xp = vectors.xp
    comps = [vectors[:, a] for a in range(3)]
    r2 = comps[0] * comps[0] + comps[1] * comps[1] + comps[2] * comps[2]
    inv_r = ad.power(r2, -0.5)
    powers: list[list[Tensor]] = [[] for _ in range(3)]
    for a in range(3):
        powers[a].append(None)  # x^0 handled below
        if lmax >= 1:
            powers[a].append(comps[a])
        for k in range(2, lmax + 1):
            powers[a].append(powers[a][k - 1] * comps[a])
    blocks = []
    inv_rl = None
    for l, (expo, coeff) in enumerate(_harmonic_tables(lmax, normalization, component)):
        if l == 0:
            blocks.append(ad.constant(xp.full((vectors.shape[0], 1), coeff[0, 0], dtype=dtype)))
            continue
        inv_rl = inv_r if l == 1 else inv_rl * inv_r
        monos = []
        for e in expo.tolist():
            term = None
            for a in range(3):
                if e[a]:
                    term = powers[a][e[a]] if term is None else term * powers[a][e[a]]
            monos.append(term)
        stacked = ad.stack(monos, axis=1)  # (E, n_mono)
        c = ad.constant(xp.asarray(coeff.astype(dtype)))
        blocks.append(ad.einsum("em,mk->ek", stacked, c) * ad.reshape(inv_rl, (-1, 1)))
    return ad.concatenate(blocks, axis=1)
