"""The blocks of the potential's forward pass, composed by :meth:`mlip.model.Potential.site_energies`.

Shapes: N atoms, E edges, K channels, features ``h[key]`` (N, K, 2l+1) per irrep key ``(l, s)``.
Every block is a function of autodiff Tensors (NumPy or CuPy) and the layer's :class:`LayerPlan`;
weights come from ``weight(name)`` (a Tensor per parameter name, see :func:`mlip.model.param_shapes`),
each multiplied by ``fan_in^(-1/2)`` here so that initial activations are O(1).

1. :func:`embedding`: ``h^(0)_i = W_emb[Z_i]`` (the scalars);
2. :func:`radial_embedding`: ``Bessel(|r_ij|) f(|r_ij| / r_c)`` (E', num_bessel), once per edge pair;
3. :func:`self_interaction`: ``h~ = W_up h`` and the residual ``sc_i = W_sc[Z_i] h_i``;
4. :func:`radial_weights`: the radial MLP, one (E, K, P_g) weight per message path group;
5. :func:`interaction`: messages ``A_i`` summed over the neighbours, then mixed per key;
6. :func:`product_basis`: ``B_i[key] = sum_paths w[Z_i, k, path] Pi_path``, then ``W_lin B + sc``;
7. :func:`readout`: the site energy contribution of the layer's scalars (eV, before scaling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cartesian_irreps.runtime.backend import is_cupy
from cartesian_irreps.runtime.fused import GraphIndex

from . import autodiff as ad
from .autodiff import Tensor
from .data import EdgePairs
from .equivariant import graph_message_product
from .layer_plan import Key, LayerPlan, key_name
from .model_ops import pair_gather, take_last
from .monomials import basis_product
from .monomials import kernel_available as monomial_kernel_available
from .radial import SILU_SCALE, bessel_basis

__all__ = [
    "embedding",
    "interaction",
    "product_basis",
    "radial_embedding",
    "radial_weights",
    "readout",
    "self_interaction",
]

#: parameter name -> Tensor
Weights = Callable[[str], Tensor]
#: (members (R, 2), group (E,), pairs with a second edge or None) of the reverse-edge pairs on the device,
#: or None when every edge is its own pair
Pairs = tuple[Any, Any, Any] | None


def embedding(embed: Tensor, species: Any, channels: int) -> dict[Key, Tensor]:
    """``{(0, +1): W_emb[Z_i]}`` as (N, K, 1) for ``embed`` (S, K) and ``species`` (N,)."""
    return {(0, 1): ad.reshape(ad.index_select(embed, species), (int(species.shape[0]), channels, 1))}


def radial_embedding(
    vectors: Tensor, pairs: EdgePairs, cutoff: float, num_bessel: int, envelope_p: int
) -> tuple[Tensor, Pairs]:
    """Bessel basis times the envelope of the edge lengths (Å): (R, num_bessel) over one edge per pair.

    The radial part depends on ``|r|`` only, so it is computed once per {edge, reverse edge} pair;
    the returned device ``(members, group, second_rows)`` map pairs back to edges (``None`` if nothing is shared).
    """
    xp = vectors.xp
    if pairs.halves:
        members, group = pairs.on(xp)
        vec_rep = ad.index_select(vectors, members[:, 0])
        shared: Pairs = (members, group, pairs.second_rows(xp))
    else:
        vec_rep, shared = vectors, None
    lengths = ad.sqrt(ad.sum(vec_rep * vec_rep, axis=1))
    return bessel_basis(lengths, cutoff, num_bessel, envelope_p), shared


def self_interaction(
    h: dict[Key, Tensor], lp: LayerPlan, weight: Weights, prefix: str, species: Any
) -> tuple[dict[Key, Tensor], dict[Key, Tensor]]:
    """``up[key] = h W_up / sqrt(K)`` for every input key and the species-dependent residual
    ``sc[key] = h W_sc[Z] / sqrt(K)`` for the keys the layer also outputs; both (N, K, 2l+1)."""
    up: dict[Key, Tensor] = {}
    sc: dict[Key, Tensor] = {}
    for k in lp.in_keys:
        x = h[k]
        inv_k = 1.0 / math.sqrt(x.shape[1])
        up[k] = ad.einsum("nkm,kq->nqm", x, weight(f"{prefix}.up.{key_name(k)}")) * inv_k
        if k in lp.out_keys:
            wsc = ad.index_select(weight(f"{prefix}.sc.{key_name(k)}"), species)
            sc[k] = ad.einsum("nkm,nkq->nqm", x, wsc) * inv_k
    return up, sc


def radial_weights(
    radial: Tensor, lp: LayerPlan, weight: Weights, prefix: str, num_hidden: int, channels: int, pairs: Pairs
) -> list[Tensor]:
    """The radial MLP ``R_ij`` (SiLU hidden layers): one (E, K, P_g) weight per message group g.

    Constant scales are folded into the small weight matrices, not the (E, width) activations; the last
    layer is one matrix product per parity group (so each group's weights come out contiguous), then
    mapped from pairs back to edges.
    """
    x = radial
    for i in range(num_hidden):
        w = weight(f"{prefix}.radial.{i}")
        scale = (SILU_SCALE if i > 0 else 1.0) / math.sqrt(w.shape[0])
        x = ad.silu(ad.matmul(x, w * scale))
    K = channels
    w_last = weight(f"{prefix}.radial.{num_hidden}")
    w_last = ad.reshape(w_last * (SILU_SCALE / math.sqrt(w_last.shape[0])), (-1, K, lp.num_message_paths))
    out = []
    offset = 0
    for _, _, paths in lp.message:
        n_g = len(paths)
        w_g = w_last if len(lp.message) == 1 else w_last[:, :, offset : offset + n_g]
        offset += n_g
        x_g = ad.matmul(x, ad.reshape(w_g, (-1, K * n_g)))
        if pairs is not None:
            members, group, second = pairs
            x_g = pair_gather(x_g, group, members, second)
        out.append(ad.reshape(x_g, (-1, K, n_g)))
    return out


def interaction(
    up: dict[Key, Tensor],
    harmonics: Tensor,
    graph: GraphIndex,
    group_weights: list[Tensor],
    lp: LayerPlan,
    weight: Weights,
    prefix: str,
    avg_num_neighbors: float,
) -> dict[Key, Tensor]:
    """``A[key]`` (N, K, 2l+1): messages ``(1/avg) sum_j R_ij,p (h~_j (x) T(r_ij))_p`` per path p
    (compiled graph kernel, per input parity group), then ``W_mix[key]`` over the paths into each key,
    scaled by ``(K P_key)^(-1/2)``."""
    any_up = next(iter(up.values()))
    xp, (n_atoms, K) = any_up.xp, any_up.shape[:2]
    blocks: dict[Key, list[Tensor]] = {k: [] for k in lp.a_keys}
    for (s1, table, paths), w_g in zip(lp.message, group_weights):
        lmax_in = max(l for l, s in lp.in_keys if s == s1)
        parts = [
            up[(l, s1)] if (l, s1) in up else ad.constant(xp.zeros((n_atoms, K, 2 * l + 1), any_up.dtype))
            for l in range(lmax_in + 1)
        ]
        stacked = parts[0] if len(parts) == 1 else ad.concatenate(parts, axis=2)
        agg = graph_message_product(table, graph, stacked, harmonics, w_g) * (1.0 / avg_num_neighbors)
        for i, path in enumerate(paths):
            blocks[path[3]].append(agg[:, :, table.z_slices[i]])
    A: dict[Key, Tensor] = {}
    for k in lp.a_keys:
        parts = blocks[k]
        stacked = ad.stack(parts, axis=2)  # (N, K, P_k, 2l+1)
        wmix = weight(f"{prefix}.mix.{key_name(k)}")
        A[k] = ad.einsum("nkpm,kpq->nqm", stacked, wmix) * (1.0 / math.sqrt(K * len(parts)))
    return A


def _folded_paths(a_st: Tensor, lp: LayerPlan) -> Callable[[Key], Tensor]:
    """Every product-basis path of each out key, ``key -> (N * K, P_key (2l+1))`` or (N, K, ...), from the
    stacked A (N, K, D): the symmetric monomials times the key's folded coupling matrix.

    With a compiled kernel (the C kernel on NumPy arrays, the generated CUDA kernel on CuPy arrays) one
    pass gives all keys' columns without storing the monomials; otherwise (NumPy without the C kernel)
    the monomials are built level by level with gathers and multiplied by each key's dense matrix.
    """
    if is_cupy(a_st.data) or monomial_kernel_available():
        basis, columns = lp.sparse_basis
        fused = basis_product(a_st, lp.mono_table, basis)
        return lambda k: fused if len(lp.out_keys) == 1 else fused[:, :, columns[k]]
    xp = a_st.xp
    monos, cur = [a_st], a_st
    for parent, last in lp.mono_select:
        cur = take_last(cur, xp.asarray(parent)) * take_last(a_st, xp.asarray(last))
        monos.append(cur)
    mono = monos[0] if len(monos) == 1 else ad.concatenate(monos, axis=2)
    rows = a_st.shape[0] * a_st.shape[1]
    return lambda k: ad.matmul(
        ad.reshape(mono, (rows, -1)), ad.constant(_device_matrix(lp.basis_matrix[k], a_st.dtype, xp))
    )


def product_basis(
    A: dict[Key, Tensor], sc: dict[Key, Tensor], lp: LayerPlan, weight: Weights, prefix: str, species: Any
) -> dict[Key, Tensor]:
    """The layer's new features ``h[key] = W_lin B[key] / sqrt(K) + sc[key]`` (N, K, 2l+1), with
    ``B_i[key] = sum_paths w[Z_i, k, path] Pi_path`` over the product-basis paths into ``key``."""
    a_st = A[lp.a_keys[0]] if len(lp.a_keys) == 1 else ad.concatenate([A[k] for k in lp.a_keys], axis=2)
    n_atoms, K = a_st.shape[:2]
    inv_k = 1.0 / math.sqrt(K)
    paths = _folded_paths(a_st, lp)
    h: dict[Key, Tensor] = {}
    for k in lp.out_keys:
        paths_out = ad.reshape(paths(k), (n_atoms, K, len(lp.basis[k]), 2 * k[0] + 1))
        wprod = ad.index_select(weight(f"{prefix}.product.{key_name(k)}"), species)  # (N, K, n)
        b = ad.einsum("nkpm,nkp->nkm", paths_out, wprod)
        out = ad.einsum("nkm,kq->nqm", b, weight(f"{prefix}.linear.{key_name(k)}")) * inv_k
        h[k] = out + sc[k] if k in sc else out
    return h


def readout(scalars: Tensor, weight: Weights, prefix: str, last: bool) -> Tensor:
    """Energy contribution (N,) of the scalars (N, K): linear ``w . h / sqrt(K)`` for inner layers,
    the MLP ``K -> hidden -> 1`` with a scaled SiLU for the last layer."""
    inv_k = 1.0 / math.sqrt(scalars.shape[1])
    if not last:
        return ad.einsum("nk,k->n", scalars, weight(f"{prefix}.readout")) * inv_k
    hid = ad.silu(ad.matmul(scalars, weight(f"{prefix}.readout.0") * inv_k))
    w1 = weight(f"{prefix}.readout.1")
    return ad.einsum("nj,j->n", hid, w1 * (SILU_SCALE / math.sqrt(w1.shape[0])))


_DEVICE_MATRICES: dict[tuple[int, str, str], Any] = {}


def _device_matrix(mat: np.ndarray, dtype: Any, xp: Any) -> Any:
    """``mat`` cast to ``dtype`` on the device of ``xp``, cached per (array, dtype, module)."""
    key = (id(mat), np.dtype(dtype).str, xp.__name__)
    if key not in _DEVICE_MATRICES:
        _DEVICE_MATRICES[key] = (mat, xp.asarray(np.ascontiguousarray(mat, dtype=dtype)))
    return _DEVICE_MATRICES[key][1]
