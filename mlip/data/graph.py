"""Edge geometry and the edge topology computed once per batch.

Edge ``e`` goes from the sender ``j = senders[e]`` to the receiver ``i = receivers[e]`` with ::

    vector_e = positions[j] - positions[i] + unit_shifts[e] @ cell[edge_batch[e]]      (Å)

:func:`edge_vectors` is the one place this formula is written (the model differentiates through it
with its autodiff gather). :class:`EdgeTopology` holds what depends on ``senders``, ``receivers`` and
``unit_shifts`` only (the :class:`~cartesian_irreps.runtime.fused.GraphIndex` orderings of the graph
kernels and the reverse-edge pairs of :func:`reverse_edge_pairs`), so that a batch builds it once and
every evaluation on the same edges (MD steps, training epochs) reuses it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cartesian_irreps.runtime.backend import array_module, to_host

if TYPE_CHECKING:
    from .batch import Batch

__all__ = ["EdgePairs", "edge_offsets", "edge_vectors", "reverse_edge_pairs"]

#: An ``numpy.ndarray`` or a ``cupy.ndarray``.
Array = Any


def edge_offsets(cell: Array, batch: Batch) -> Array:
    """Periodic offsets ``unit_shifts[e] @ cell[edge_batch[e]]`` (E, 3) in Å, in the dtype of ``cell``.

    Args:
        cell: (S, 3, 3) cells (Å), lattice vectors as rows (NumPy or CuPy).
        batch: the :class:`~mlip.data.Batch` giving the edges.
    """
    xp = array_module(cell)
    shifts = xp.asarray(batch.unit_shifts).astype(cell.dtype)
    return xp.einsum("ea,eab->eb", shifts, cell[xp.asarray(batch.edge_batch)])


def edge_vectors(positions: Any, cell: Array, batch: Batch, take: Callable[[Any, Any], Any] | None = None) -> Any:
    """Edge vectors ``positions[senders] - positions[receivers] + unit_shifts @ cell[edge_batch]``.

    Plain array arithmetic (NumPy or CuPy, whichever ``positions`` is), linear in ``positions`` and
    ``cell``, so a caller can differentiate through both: pass strained ``positions @ (1 + ε)`` and
    ``cell @ (1 + ε)`` per structure to get the virial. Its adjoint: ``dL/dpositions`` gets
    ``+g`` at the sender and ``-g`` at the receiver, ``dL/dcell[s]`` gets ``unit_shifts[e]ᵀ g[e]``
    summed over the edges of structure ``s``, for an upstream gradient ``g`` (E, 3).

    Args:
        positions: (N, 3) positions (Å): an array, or anything ``take`` gathers rows of.
        cell: (S, 3, 3) cells (Å), lattice vectors as rows (an array).
        batch: the :class:`Batch` giving the edges.
        take: ``take(positions, idx)`` gathers rows (default ``positions[idx]``); the model passes
            :func:`mlip.autodiff.index_select` to differentiate with respect to positions.

    Returns:
        (E, 3) vectors (Å) in the dtype of ``positions``.
    """
    xp = array_module(cell)
    senders, receivers = xp.asarray(batch.senders), xp.asarray(batch.receivers)
    if take is None:
        return positions[senders] - positions[receivers] + edge_offsets(cell, batch)
    return take(positions, senders) - take(positions, receivers) + edge_offsets(cell, batch)


def reverse_edge_pairs(senders: Any, receivers: Any, unit_shifts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Group each edge with its reverse: ``(members (R, 2), group (E,))``, int64 NumPy.

    Edge ``(j -> i, S)`` and edge ``(i -> j, -S)`` have opposite vectors, hence the same length, so
    anything that depends on the length alone (radial basis, radial MLP) needs computing once per
    pair: ``f(r) == f(r[members[:, 0]])[group]``, with ``R ~ E / 2`` for a full neighbour list.
    ``members[k]`` are the two edges of pair ``k`` (the first one first; ``members[:, 0]`` is sorted),
    ``members[k, 1] == -1`` when an edge has no reverse (a hand-made graph): it is its own group, so
    the grouping is exact for any edge list.
    """
    s, r, sh = (np.asarray(to_host(a), dtype=np.int64) for a in (senders, receivers, unit_shifts))
    sh = sh.reshape(len(s), 3)
    # canonical key of the unordered pair: (lo, hi, shift seen from lo); for i == j the shift up to sign
    flip = (s == r) & ((sh[:, 0] < 0) | ((sh[:, 0] == 0) & ((sh[:, 1] < 0) | ((sh[:, 1] == 0) & (sh[:, 2] < 0)))))
    swap = (s > r) | flip
    lo, hi = np.where(swap, r, s), np.where(swap, s, r)
    ksh = np.where(swap[:, None], -sh, sh)
    n = int(max(lo.max(initial=0), hi.max(initial=0))) + 1
    base = 2 * int(np.abs(ksh).max(initial=0)) + 1
    if float(n) * n * base**3 < 2.0**62:  # one int64 key per edge (fast 1-D unique)
        code = (ksh[:, 0] * base + ksh[:, 1]) * base + ksh[:, 2] + (base**3 - 1) // 2
        keys = (lo * n + hi) * base**3 + code
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        keys = np.stack([lo, hi, ksh[:, 0], ksh[:, 1], ksh[:, 2]], axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse.reshape(-1)].astype(np.int64)
    members = np.full((len(order), 2), -1, dtype=np.int64)
    members[:, 0] = first[order]
    rest = np.ones(len(s), dtype=bool)
    rest[members[:, 0]] = False
    others = np.flatnonzero(rest)
    members[group[others], 1] = others
    return members, group


@dataclass(frozen=True, eq=False)
class EdgePairs:
    """Every edge grouped with its reverse (see :func:`reverse_edge_pairs`), with device copies cached.

    Attributes:
        members: (R, 2) int64, the edges of each pair (second -1 when an edge has no reverse).
        group: (E,) int64, the pair of each edge.
    """

    members: np.ndarray
    group: np.ndarray
    _device: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, senders: Any, receivers: Any, unit_shifts: Any) -> EdgePairs:
        """The pairs of an edge list (NumPy or CuPy indices; the result is on the host)."""
        return cls(*reverse_edge_pairs(senders, receivers, unit_shifts))

    @property
    def halves(self) -> bool:
        """Whether there are fewer pairs than edges (so computing per pair saves work)."""
        return len(self.members) < len(self.group)

    def on(self, xp: Any) -> tuple[Array, Array]:
        """``(members, group)`` as arrays of the module ``xp`` (copied to a device once)."""
        if xp is np:
            return self.members, self.group
        key = xp.__name__
        if key not in self._device:
            self._device[key] = (xp.asarray(self.members), xp.asarray(self.group))
        return self._device[key]

    def second_rows(self, xp: Any) -> Array | None:
        """The pairs with a second edge (``members[:, 1] >= 0``) as indices of module ``xp``, or ``None``
        when every pair has two; found on the host and copied to a device once (no device read per call)."""
        key = ("second", xp.__name__)
        if key not in self._device:
            second = self.members[:, 1] >= 0
            self._device[key] = None if bool(second.all()) else xp.asarray(np.flatnonzero(second))
        return self._device[key]

    @classmethod
    def concatenate(cls, parts: Sequence[EdgePairs]) -> EdgePairs:
        """The pairs of graphs concatenated in this order (edges of part ``k`` offset by the edges before
        it). Equal to :func:`reverse_edge_pairs` of the concatenated edge list: no pair spans two parts,
        and pairs keep the order of their first edge."""
        edge_off = np.cumsum([0] + [len(p.group) for p in parts])
        pair_off = np.cumsum([0] + [len(p.members) for p in parts])
        members = [np.where(p.members >= 0, p.members + e, -1) for p, e in zip(parts, edge_off)]
        groups = [p.group + o for p, o in zip(parts, pair_off)]
        empty2 = np.zeros((0, 2), dtype=np.int64)
        return cls(
            np.concatenate(members).astype(np.int64) if members else empty2,
            np.concatenate(groups).astype(np.int64) if groups else np.zeros(0, dtype=np.int64),
        )
