"""The static plan of every interaction layer, and the product basis folded onto monomials.

:func:`build_plan` turns a :class:`~mlip.model.ModelConfig` into one :class:`LayerPlan` per layer
(deterministic order): the irrep keys ``(l, s)`` in and out (rank l, parity label s = +1 natural,
-1 pseudo), the message paths ``(l1, s1) x (l2, +1) -> (l3, s3)`` with ``l3 <= L`` grouped by input
parity, and the product-basis tree ``Pi_{n+1} = Pi_n (x) A`` up to the correlation order.

The product basis is then folded (:func:`fold_product_basis`): every path of order nu is a multilinear map
of the stacked A (D,), so it equals a fixed matrix times the symmetric monomials
``a_i1 ... a_inu`` (``i1 <= ... <= inu``); ``LayerPlan.basis_matrix[key]`` is that matrix (T, P (2l+1))
for the kept monomials (``LayerPlan.mono_select``) and ``LayerPlan.sparse_basis`` its nonzeros for the
compiled kernel. Everything here is float64 NumPy built once per model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from cartesian_irreps._validate import parity_of
from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.fused import PathTable
from cartesian_irreps.runtime.monomials import sparse_basis, table_from_levels

if TYPE_CHECKING:
    from .model import ModelConfig

__all__ = ["Key", "LayerPlan", "build_plan", "fold_product_basis", "key_name"]

Key = tuple[int, int]  # (rank l, parity label s)


def key_name(key: Key) -> str:
    """The parameter-name form of an irrep key: ``(1, +1) -> "1e"``, ``(1, -1) -> "1o"``."""
    return f"{key[0]}{'e' if key[1] == 1 else 'o'}"


@dataclass(frozen=True)
class LayerPlan:
    """Static structure of one interaction layer (keys, paths, tables)."""

    index: int
    in_keys: tuple[Key, ...]
    out_keys: tuple[Key, ...]
    a_keys: tuple[Key, ...]
    # message paths grouped by input parity label s: (table, [(l1, l2, l3, out key)])
    message: tuple[tuple[int, PathTable, tuple[tuple[int, int, int, Key], ...]], ...]
    # per A key: list of (input parity label, path index in that table)
    a_sources: dict[Key, tuple[tuple[int, int], ...]] = field(hash=False)
    # product basis: nodes of the product tree and the paths feeding each output key
    nodes: tuple[tuple[int, Key, int, Key, tuple[int, int, int]], ...] = ()  # (id, key, parent id, A key, triple)
    basis: dict[Key, tuple[int, ...]] = field(default_factory=dict, hash=False)  # out key -> node ids
    # symmetric monomials of the stacked A (see fold_product_basis): for levels 2..nu the index of each
    # monomial's lower-order factor (in level nu-1) and of its last factor (in A), both (T_nu,)
    mono_select: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    # out key -> (T, P * (2l+1)) float64: every path's coupling chain folded onto the monomials
    basis_matrix: dict[Key, np.ndarray] = field(default_factory=dict, hash=False)

    @property
    def num_message_paths(self) -> int:
        return sum(len(p) for _, _, p in self.message)

    @cached_property
    def mono_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``mono_select`` as one ``(parent, last)`` monomial table over the stacked A (built once)."""
        return table_from_levels(sum(2 * k[0] + 1 for k in self.a_keys), list(self.mono_select))

    @cached_property
    def sparse_basis(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, int], dict[Key, slice]]:
        """Every out key's basis matrix side by side, as the nonzeros the compiled monomial kernel
        folds in (:func:`cartesian_irreps.runtime.monomials.sparse_basis`), and each key's columns."""
        mats = [self.basis_matrix[k] for k in self.out_keys]
        bounds = np.cumsum([0] + [m.shape[1] for m in mats])
        cols = {k: slice(int(bounds[i]), int(bounds[i + 1])) for i, k in enumerate(self.out_keys)}
        return sparse_basis(np.concatenate(mats, axis=1)), cols


def _parity_out(s1: int, s2: int, triple: tuple[int, int, int]) -> int:
    return s1 * s2 * (1 if parity_of(*triple) == "even" else -1)


def _allowed(triple: tuple[int, int, int], products: str) -> bool:
    return products == "parity_complete" or parity_of(*triple) == "even"


def build_plan(config: ModelConfig) -> tuple[LayerPlan, ...]:
    """Keys, message paths and product-basis paths of every layer (deterministic order)."""
    signs = (1, -1) if config.products == "parity_complete" else (1,)
    hidden = tuple((l, s) for l in range(config.hidden_lmax + 1) for s in signs)
    L = config.lmax
    plans = []
    in_keys: tuple[Key, ...] = ((0, 1),)
    for t in range(config.num_layers):
        last = t == config.num_layers - 1
        out_keys = ((0, 1),) if last else hidden
        # message paths: (l1, s1) x (l2, natural) -> (l3, s3), l3 <= L
        groups = []
        a_sources: dict[Key, list[tuple[int, int]]] = {}
        for s1 in sorted({s for _, s in in_keys}, reverse=True):
            l1s = sorted(l for l, s in in_keys if s == s1)
            paths = []
            for l1 in l1s:
                for l2 in range(L + 1):
                    for l3 in range(abs(l1 - l2), min(l1 + l2, L) + 1):
                        tr = (l1, l2, l3)
                        if _allowed(tr, config.products):
                            paths.append((l1, l2, l3, (l3, _parity_out(s1, 1, tr))))
            paths.sort(key=lambda p: (p[3][0], -p[3][1], p[0], p[1]))
            table = PathTable.from_couplings(
                [p[:3] for p in paths],
                [tables.dense_coupling(*p[:3]) for p in paths],
                {l: l * l for l in range(max(l1s) + 1)},
                {l: l * l for l in range(L + 1)},
            )
            for i, p in enumerate(paths):
                a_sources.setdefault(p[3], []).append((s1, i))
            groups.append((s1, table, tuple(paths)))
        a_keys = tuple(sorted(a_sources, key=lambda k: (k[0], -k[1])))
        # product basis tree
        nodes: list[tuple[int, Key, int, Key, tuple[int, int, int]]] = []
        basis: dict[Key, list[int]] = {k: [] for k in out_keys}
        level = []
        for k in a_keys:
            nodes.append((len(nodes), k, -1, k, (k[0], 0, k[0])))
            level.append(len(nodes) - 1)
        for nu in range(1, config.correlation + 1):
            for nid in level:
                if nodes[nid][1] in basis:
                    basis[nodes[nid][1]].append(nid)
            if nu == config.correlation:
                break
            final = nu + 1 == config.correlation
            nxt = []
            for nid in level:
                key = nodes[nid][1]
                for ak in a_keys:
                    for l3 in range(abs(key[0] - ak[0]), min(key[0] + ak[0], L) + 1):
                        tr = (key[0], ak[0], l3)
                        if not _allowed(tr, config.products):
                            continue
                        k3 = (l3, _parity_out(key[1], ak[1], tr))
                        if final and k3 not in basis:
                            continue
                        nodes.append((len(nodes), k3, nid, ak, tr))
                        nxt.append(len(nodes) - 1)
            level = nxt
        empty = [k for k, ids in basis.items() if not ids]
        if (0, 1) in empty:
            raise ValueError("no product-basis path reaches the scalars; increase lmax or correlation")
        out_keys = tuple(k for k in out_keys if basis[k])
        basis = {k: v for k, v in basis.items() if v}
        select, matrices = fold_product_basis(a_keys, nodes, basis, config.correlation)
        plans.append(
            LayerPlan(
                index=t,
                in_keys=in_keys,
                out_keys=out_keys,
                a_keys=a_keys,
                message=tuple(groups),
                a_sources={k: tuple(v) for k, v in a_sources.items()},
                nodes=tuple(nodes),
                basis={k: tuple(v) for k, v in basis.items()},
                mono_select=select,
                basis_matrix=matrices,
            )
        )
        in_keys = out_keys
    return tuple(plans)


def fold_product_basis(
    a_keys: tuple[Key, ...],
    nodes: list[tuple[int, Key, int, Key, tuple[int, int, int]]],
    basis: dict[Key, list[int]],
    correlation: int,
) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], dict[Key, np.ndarray]]:
    """Fold every product-basis path onto symmetric monomials of the stacked A.

    With ``a`` (D,) the A keys stacked, the order-nu monomials are ``a_i1 ... a_inu`` for sorted
    ``i1 <= ... <= inu``; level nu is ``mono_{nu-1}[..., parent] * a[..., last]`` with the index
    arrays ``select[nu-2]`` (gathers along the last axis; their gradients are sort-based scatters).
    A path of order nu is a multilinear map ``U[m, i1..inu]`` (the chain of its
    couplings); summing U over the permutations of each sorted tuple gives its coefficients on the
    monomials, so ``Pi_path[m] = sum_t M[t, path, m] mono[t]`` exactly.
    """
    offsets, off = {}, 0
    for k in a_keys:
        offsets[k] = off
        off += 2 * k[0] + 1
    D = off
    tuples = [[(i,) for i in range(D)]]
    select = []
    for _ in range(2, correlation + 1):
        prev, nxt, parent, last = tuples[-1], [], [], []
        for t_idx, t in enumerate(prev):
            for c in range(t[-1], D):
                nxt.append((*t, c))
                parent.append(t_idx)
                last.append(c)
        tuples.append(nxt)
        select.append((np.array(parent, dtype=np.intp), np.array(last, dtype=np.intp)))
    level_offset = np.cumsum([0] + [len(t) for t in tuples])
    position = [{t: i for i, t in enumerate(level)} for level in tuples]
    fold = {}  # level nu -> (D**nu,) index of the sorted tuple of every full index
    full: dict[int, np.ndarray] = {}
    for nid, _key, parent, ak, tr in nodes:
        if parent < 0:
            u = np.zeros((2 * ak[0] + 1, D))
            u[np.arange(2 * ak[0] + 1), offsets[ak] + np.arange(2 * ak[0] + 1)] = 1.0
        else:
            c = tables.dense_coupling(*tr)  # (parent m, A-key m, out m)
            up = full[parent]  # (m_p, D, ..., D)
            u = np.zeros((c.shape[2], *up.shape[1:], D))
            block = np.einsum("abk,a...->k...b", c, up)
            u[..., offsets[ak] : offsets[ak] + c.shape[1]] = block
        full[nid] = u
    matrices = {}
    for key, ids in basis.items():
        m = 2 * key[0] + 1
        mat = np.zeros((int(level_offset[-1]), len(ids), m))
        for p, nid in enumerate(ids):
            u = full[nid]
            nu = u.ndim - 1
            if nu not in fold:
                grid = np.indices((D,) * nu).reshape(nu, -1).T
                fold[nu] = np.array([position[nu - 1][tuple(sorted(g))] for g in grid], dtype=np.intp)
            flat = u.reshape(m, -1)
            for k in range(m):
                mat[level_offset[nu - 1] : level_offset[nu], p, k] = np.bincount(
                    fold[nu], weights=flat[k], minlength=len(tuples[nu - 1])
                )
        matrices[key] = mat.reshape(mat.shape[0], -1)
    return _prune_monomials(D, select, matrices)


def _prune_monomials(
    dim: int, select: list[tuple[np.ndarray, np.ndarray]], matrices: dict[Key, np.ndarray]
) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], dict[Key, np.ndarray]]:
    """Keep only the monomials some output uses (and their lower-degree factors).

    Invariance makes the folded matrices sparse: for 9 stacked A entries (l = 0, 1, 2) and ν = 3 the
    scalars use 35 of the 219 monomials. Entries below ``1e-12 max|M|`` are the rounding residue of
    exact cancellations in the coupling chains and are set to zero first. Degree 1 (``A`` itself) is
    always kept; level ``nu`` keeps its used monomials plus the parents of the kept level ``nu + 1``;
    parent indices are renumbered, and the matrices keep the rows of the kept monomials.
    """
    for mat in matrices.values():
        scale = float(np.abs(mat).max()) if mat.size else 0.0
        mat[np.abs(mat) < 1e-12 * scale] = 0.0
    used = np.logical_or.reduce([(mat != 0).any(axis=1) for mat in matrices.values()])
    sizes = [dim] + [len(p) for p, _ in select]
    offsets = np.cumsum([0] + sizes)
    keep = [used[offsets[i] : offsets[i + 1]].copy() for i in range(len(sizes))]
    keep[0][:] = True
    for lvl in range(len(select), 0, -1):  # select[lvl - 1] builds level lvl from level lvl - 1
        keep[lvl - 1][select[lvl - 1][0][keep[lvl]]] = True
    new_select = []
    for lvl, (parent, last) in enumerate(select, start=1):
        renumber = np.cumsum(keep[lvl - 1]) - 1
        new_select.append((renumber[parent[keep[lvl]]].astype(np.intp), last[keep[lvl]].astype(np.intp)))
    rows = np.concatenate(keep)
    return tuple(new_select), {key: np.ascontiguousarray(mat[rows]) for key, mat in matrices.items()}
