"""The static plan of every interaction layer, and the product basis folded onto monomials.

:func:`build_plan` turns a :class:`~mlip.model.ModelConfig` into one :class:`LayerPlan` per layer
(deterministic order): the irrep keys ``(l, s)`` in and out (rank l, parity label s = +1 natural,
-1 pseudo), the message paths ``(l1, s1) x (l2, +1) -> (l3, s3)`` with ``l3 <= L`` grouped by input
parity, and the product-basis tree ``Pi_{n+1} = Pi_n (x) A`` up to the correlation order.

The product basis comes folded from the generated exact tables
(:func:`cartesian_irreps.runtime.product_basis.product_tables`, derived in SymPy by
:mod:`cartesian_irreps.symbolic.product_basis`): every path of order nu is a multilinear map
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

from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.fused import PathTable
from cartesian_irreps.runtime.monomials import sparse_basis, table_from_levels
from cartesian_irreps.runtime.product_basis import allowed_path, parity_out, product_tables, product_tree

if TYPE_CHECKING:
    from .model import ModelConfig

__all__ = ["Key", "LayerPlan", "build_plan", "key_name"]

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
    # symmetric monomials of the stacked A (see product_tables): for levels 2..nu the index of each
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
                        if allowed_path(tr, config.products):
                            paths.append((l1, l2, l3, (l3, parity_out(s1, 1, tr))))
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
        # product basis tree (the one the generated exact tables were derived for)
        nodes, basis = product_tree(a_keys, out_keys, L, config.correlation, config.products)
        if (0, 1) not in basis:
            raise ValueError("no product-basis path reaches the scalars; increase lmax or correlation")
        out_keys = tuple(k for k in out_keys if k in basis)
        try:
            select, matrices = product_tables(a_keys, nodes, basis, config.correlation)
        except KeyError as err:  # a configuration whose exact tables were not generated
            raise ValueError(f"model configuration not supported: {err.args[0]}") from None
        plans.append(
            LayerPlan(
                index=t,
                in_keys=in_keys,
                out_keys=out_keys,
                a_keys=a_keys,
                message=tuple(groups),
                a_sources={k: tuple(v) for k, v in a_sources.items()},
                nodes=nodes,
                basis=basis,
                mono_select=select,
                basis_matrix=matrices,
            )
        )
        in_keys = out_keys
    return tuple(plans)
