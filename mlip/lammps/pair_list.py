"""The potential as a function of a pair list: per-atom energies and per-pair forces ``f_ij = dE/dr_ij``.

This is the contract of LAMMPS's ML-IAP unified interface and of the ``pair_style mlip`` plugin: the
engine gives, for the ``n_local`` atoms it owns plus ``n_ghost`` ghost atoms (copies of atoms owned by
other MPI ranks, or periodic images),

* ``r_ij = x_j - x_i`` (E, 3) in Å for every pair with ``|r_ij| < r_c``, ``i = pair_i`` local and
  ``j = pair_j`` local or ghost (a full neighbour list: both ``i <- j`` and ``j <- i`` when both are local);
* the species of every atom;

and takes back the local site energies ``E_i`` (eV) and ``f_ij = dE/dr_ij`` (eV/Å), where
``E = sum_{i local, all ranks} E_i``. The engine then adds ``F_i += f_ij``, ``F_j -= f_ij`` and the virial
``W = -sum_ij r_ij (x) f_ij``.

Message passing (``T = num_layers`` layers) makes ``E_i`` depend on atoms up to ``T r_c`` away. Here the
graph holds the local atoms and their neighbours only, and ghost atoms' node features are *exchanged*
between layers (:class:`Halo`, :func:`local_site_energies`): each layer computes ``h^(t)`` of the local
atoms, then the ghost nodes' rows are appended, copied from the atoms they copy (forward communication);
in the backward pass the cotangents of the ghost rows are summed onto their owners (reverse
communication). Each rank therefore computes the edges of its own atoms only: no ghost shell wider than
``r_c``, no duplicated edge work; per ghost node only ``W_up h`` is computed, and ``K * sum_l (2l+1)``
numbers are exchanged per ghost atom and hidden layer, twice (forward and backward).

Ghosts that are periodic images of a local atom are folded onto that atom (same node, by atom ID), so a
single rank has no ghost nodes at all and evaluates exactly the graph of the ASE calculator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from cartesian_irreps.runtime.backend import module_of, to_host
from cartesian_irreps.runtime.fused import GraphIndex

from .. import autodiff as ad
from .. import blocks
from ..autodiff import Context, Function, Tensor
from ..data import EdgePairs
from ..equivariant import edge_harmonics
from ..layer_plan import Key
from ..model import Potential

__all__ = ["Halo", "PairGraph", "PairResult", "compact_graph", "evaluate_pairs", "species_of_elements"]


@dataclass(frozen=True, eq=False)
class PairGraph:
    """A graph on ``n_nodes = n_local + n_remote`` nodes, the interface :meth:`Potential.site_energies` reads.

    Attributes:
        species: (n_nodes,) int64 species indices.
        senders: (E,) int64 node of ``j`` for each pair.
        receivers: (E,) int64 node of ``i`` (always ``< n_local``).
        unit_shifts: (E, 3) int64 lattice image of ``j`` relative to its node (only used to pair each edge
            with its reverse, :func:`mlip.data.reverse_edge_pairs`).
        n_local: number of local atoms (nodes ``0 .. n_local-1`` are the engine's local atoms in order).
    """

    species: np.ndarray
    senders: np.ndarray
    receivers: np.ndarray
    unit_shifts: np.ndarray
    n_local: int

    @property
    def num_nodes(self) -> int:
        return int(self.species.shape[0])

    @cached_property
    def _index(self) -> GraphIndex:
        return GraphIndex.build(self.senders, self.receivers, self.num_nodes)

    @cached_property
    def _pairs(self) -> EdgePairs:
        return EdgePairs.of(self.senders, self.receivers, self.unit_shifts)

    def graph_index(self) -> GraphIndex:
        """The graph kernels' orderings of the pairs (built once per graph, as :meth:`mlip.data.Batch.graph_index`)."""
        return self._index

    def edge_pairs(self) -> EdgePairs:
        """Each pair grouped with its reverse, when both are local (as :meth:`mlip.data.Batch.edge_pairs`)."""
        return self._pairs


@dataclass(frozen=True)
class Halo:
    """How ghost nodes get their features: rows of a per-atom buffer exchanged by the engine.

    Attributes:
        n_all: local + ghost atoms of the engine (rows of the exchange buffers).
        remote_rows: (n_nodes - n_local,) the engine row (a ghost atom) holding each remote node.
        forward: ``forward(buf)`` with ``buf`` (n_all, W) float64 C-contiguous: copy every owned row to its
            ghost copies, in place (LAMMPS forward communication).
        reverse: ``reverse(buf)``: add every ghost row onto the row of its owner, in place (reverse
            communication).
    """

    n_all: int
    remote_rows: np.ndarray
    forward: Callable[[np.ndarray], None]
    reverse: Callable[[np.ndarray], None]


@dataclass(frozen=True)
class PairResult:
    """``energies`` (n_local,) E_i in eV and ``pair_forces`` (E, 3) f_ij = dE/dr_ij in eV/Å, float64 NumPy."""

    energies: np.ndarray
    pair_forces: np.ndarray


def species_of_elements(potential: Potential, elements: Sequence[str]) -> np.ndarray:
    """Species index of each engine type, given the element symbol of each type (type 1 first).

    Raises:
        ValueError: an element the model does not have, naming the type and the model's elements.
    """
    known = list(potential.config.elements)
    out = []
    for t, el in enumerate(elements, start=1):
        if el not in known:
            raise ValueError(
                f"atom type {t} is mapped to element {el!r}, which the model does not have "
                f"(model elements: {', '.join(known)})"
            )
        out.append(known.index(el))
    return np.asarray(out, dtype=np.int64)


def cell_from_h(h: np.ndarray) -> np.ndarray:
    """LAMMPS's shape matrix ``h = (xprd, yprd, zprd, yz, xz, xy)`` as lattice vectors in rows (3, 3)."""
    return np.array([[h[0], 0.0, 0.0], [h[5], h[1], 0.0], [h[4], h[3], h[2]]])


def compact_graph(
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    species: np.ndarray,
    tags: np.ndarray,
    positions: np.ndarray,
    h: np.ndarray,
    n_local: int,
) -> tuple[PairGraph, np.ndarray]:
    """Fold the engine's atoms onto graph nodes: local atoms, then one node per remote atom.

    A ghost whose atom ID belongs to a local atom (a periodic image) becomes that local atom's node; the
    ghosts of one remote atom become one node (the lowest ghost row with that ID). ``unit_shifts`` records
    the lattice image of each folded ``j`` (``round((x_j - x_node) h^-1)``).

    Args:
        pair_i, pair_j: (E,) engine rows (local, and local or ghost).
        species: (n_all,) species of every engine row.
        tags: (n_all,) atom IDs.
        positions: (n_all, 3) Å.
        h: LAMMPS shape matrix (6,) ``(xprd, yprd, zprd, yz, xz, xy)``.
        n_local: number of local atoms (rows ``0 .. n_local-1``).

    Returns:
        The :class:`PairGraph` and ``remote_rows`` (the engine row of every remote node).
    """
    _, first, inverse = np.unique(tags, return_index=True, return_inverse=True)
    rep = first[inverse.reshape(-1)]  # lowest row with the same ID: the owner when it is local
    rep_j = rep[pair_j]
    remote_rows = np.unique(rep_j[rep_j >= n_local])
    node_of_row = np.full(len(tags), -1, dtype=np.int64)
    node_of_row[:n_local] = np.arange(n_local)
    node_of_row[remote_rows] = n_local + np.arange(len(remote_rows))
    senders = node_of_row[rep_j]
    shifts = np.zeros((len(pair_j), 3), dtype=np.int64)
    moved = pair_j != rep_j
    if moved.any():
        d = positions[pair_j[moved]] - positions[rep_j[moved]]
        shifts[moved] = np.rint(d @ np.linalg.inv(cell_from_h(h))).astype(np.int64)
    nodes = np.concatenate([np.arange(n_local), remote_rows])
    graph = PairGraph(
        species=np.asarray(species, dtype=np.int64)[nodes],
        senders=senders,
        receivers=np.asarray(pair_i, dtype=np.int64),
        unit_shifts=shifts,
        n_local=n_local,
    )
    return graph, remote_rows


class _Extend(Function):
    """``(n_local, W) -> (n_nodes, W)``: the local rows, then each ghost node's row copied from its owner
    (forward communication). Adjoint: :class:`_Collect`."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, halo: Halo, n_nodes: int) -> Any:  # type: ignore[override]
        ctx.halo, ctx.n_nodes = halo, n_nodes
        n_local = x.shape[0]
        host = to_host(x, np.float64)
        buf = np.zeros((halo.n_all, host.shape[1]), dtype=np.float64)
        buf[:n_local] = host
        halo.forward(buf)
        out = np.concatenate([host, buf[halo.remote_rows]]) if n_nodes > n_local else host
        return module_of(x).asarray(out.astype(x.dtype, copy=False))

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None]:
        return (_Collect.apply(g, halo=ctx.halo, n_local=x.shape[0]),)


class _Collect(Function):
    """``(n_nodes, W) -> (n_local, W)``: each local row plus the rows of all its ghost copies, on every rank
    (reverse communication). Adjoint: :class:`_Extend`."""

    @staticmethod
    def forward(ctx: Context, g: Any, *, halo: Halo, n_local: int) -> Any:  # type: ignore[override]
        ctx.halo, ctx.n_nodes = halo, g.shape[0]
        host = to_host(g, np.float64)
        buf = np.zeros((halo.n_all, host.shape[1]), dtype=np.float64)
        buf[halo.remote_rows] = host[n_local:]
        halo.reverse(buf)
        out = host[:n_local] + buf[:n_local]
        return module_of(g).asarray(out.astype(g.dtype, copy=False))

    @staticmethod
    def vjp(ctx: Context, g: Tensor, x: Tensor) -> tuple[Tensor | None]:
        return (_Extend.apply(g, halo=ctx.halo, n_nodes=ctx.n_nodes),)


def feature_width(potential: Potential) -> int:
    """Numbers per atom exchanged between layers: ``K * sum over hidden keys of (2l + 1)`` (0 for one layer)."""
    plan = potential.plan
    if len(plan) < 2:
        return 0
    return max(potential.config.channels * sum(2 * l + 1 for l, _ in lp.out_keys) for lp in plan[:-1])


def _extend(h: dict[Key, Tensor], halo: Halo, n_nodes: int) -> dict[Key, Tensor]:
    """The local features ``h`` (n_local rows) with the ghost nodes' rows appended: all keys in one buffer,
    one exchange."""
    keys = list(h)
    n = h[keys[0]].shape[0]
    widths = [h[k].shape[1] * h[k].shape[2] for k in keys]
    flat = [ad.reshape(h[k], (n, w)) for k, w in zip(keys, widths)]
    joined = flat[0] if len(flat) == 1 else ad.concatenate(flat, axis=1)
    out = _Extend.apply(joined, halo=halo, n_nodes=n_nodes)
    result, offset = {}, 0
    for k, w in zip(keys, widths):
        result[k] = ad.reshape(out[:, offset : offset + w], (n_nodes, *h[k].shape[1:]))
        offset += w
    return result


def local_site_energies(potential: Potential, graph: PairGraph, vectors: Tensor, halo: Halo | None) -> Tensor:
    """``E_i`` (n_local,) in eV: :meth:`Potential.site_energies` composed from the same blocks, with every
    per-node block after the messages (product basis, readout) on the local rows only, and the ghost rows
    of the next layer's input filled by the halo exchange (:func:`_extend`).

    The messages into local atoms read ``h~_j = W_up h_j`` of ghost nodes ``j``; nothing else is computed
    for ghost nodes. With no ghost nodes this is exactly :meth:`Potential.site_energies`.
    """
    cfg = potential.config
    params = potential.params

    def weight(name: str) -> Tensor:
        v = params[name]
        return v if isinstance(v, Tensor) else ad.constant(v)

    xp = vectors.xp
    n_local, n_nodes = graph.n_local, graph.num_nodes
    ghosts = n_nodes > n_local
    species = xp.asarray(graph.species)
    local_species = species[:n_local] if ghosts else species
    index = graph.graph_index()
    radial, pairs = blocks.radial_embedding(vectors, graph.edge_pairs(), cfg.cutoff, cfg.num_bessel, cfg.envelope_p)
    harm = edge_harmonics(vectors, cfg.lmax)
    h = blocks.embedding(weight("embed"), species, cfg.channels)  # every node (the ghosts' own species)
    energy = None
    for lp in potential.plan:
        pre = f"layers.{lp.index}"
        last = lp.index == cfg.num_layers - 1
        if ghosts:
            up, _ = blocks.self_interaction(h, lp, weight, pre, species)
            _, sc = blocks.self_interaction({k: v[:n_local] for k, v in h.items()}, lp, weight, pre, local_species)
        else:
            up, sc = blocks.self_interaction(h, lp, weight, pre, species)
        radial_w = blocks.radial_weights(radial, lp, weight, pre, len(cfg.radial_hidden), cfg.channels, pairs)
        A = blocks.interaction(up, harm, index, radial_w, lp, weight, pre, cfg.avg_num_neighbors)
        if ghosts:
            A = {k: v[:n_local] for k, v in A.items()}  # ghost nodes receive no messages here
        h_local = blocks.product_basis(A, sc, lp, weight, pre, local_species)
        e = blocks.readout(h_local[(0, 1)][:, :, 0], weight, pre, last=last)
        energy = e if energy is None else energy + e
        if not last:
            h = _extend(h_local, halo, n_nodes) if halo is not None else h_local
    shift = xp.asarray(np.array(cfg.atomic_energies, dtype=vectors.dtype))[local_species]
    return energy * cfg.energy_scale + ad.constant(shift)


def evaluate_pairs(
    potential: Potential, graph: PairGraph, vectors: Any, halo: Halo | None = None, xp: Any = np
) -> PairResult:
    """Local site energies and ``f_ij = dE/dr_ij`` of the pairs of ``graph``.

    Args:
        potential: the model (parameters on the device of ``xp``, in the dtype evaluated).
        graph: nodes and pairs (:func:`compact_graph`, or a hand-made one with ``n_local == num_nodes``).
        vectors: (E, 3) ``r_ij = x_j - x_i`` in Å (any float array; cast to the model's dtype on ``xp``).
        halo: the exchange of ghost-node features between layers; required when the graph has remote
            nodes and the model more than one layer.
        xp: ``numpy`` or ``cupy``.

    Returns:
        :class:`PairResult`: ``E = sum(energies)`` over all ranks; ``pair_forces`` for every pair.
    """
    n_remote = graph.num_nodes - graph.n_local
    if n_remote and halo is None and potential.config.num_layers > 1:
        raise ValueError(
            f"the graph has {n_remote} ghost nodes but no halo exchange was given; a {potential.config.num_layers}"
            "-layer model needs the ghosts' features from their owners"
        )
    dtype = np.dtype(potential.config.dtype)
    if xp is not np:  # the graph's index arrays on the device of the parameters
        graph = replace(
            graph, **{f: xp.asarray(getattr(graph, f)) for f in ("species", "senders", "receivers", "unit_shifts")}
        )
    vec = ad.tensor(xp.asarray(vectors, dtype=dtype).reshape(-1, 3), requires_grad=True)
    counted = None
    if halo is not None and potential.config.num_layers > 1:
        counted = _CountingHalo(halo)
        halo = counted.halo
    local = local_site_energies(potential, graph, vec, halo)
    (g,) = ad.grad(ad.sum(local), [vec], allow_unused=True)
    if counted is not None:
        counted.balance()
    forces = np.zeros((graph.receivers.shape[0], 3)) if g is None else to_host(g.data, np.float64)
    return PairResult(to_host(local.data, np.float64), forces)


class _CountingHalo:
    """Counts forward and reverse exchanges so every rank makes the same communication calls.

    The reverse exchange runs inside the backward pass only where the cotangent reaches it (a rank with
    no ghost neighbours, or no atoms, may skip it); :meth:`balance` then makes the missing reverse calls
    with zero rows, in the order the other ranks make them, so no rank waits forever.
    """

    def __init__(self, halo: Halo) -> None:
        self.widths: list[int] = []
        self.reversed = 0

        def forward(buf: np.ndarray) -> None:
            self.widths.append(buf.shape[1])
            halo.forward(buf)

        def reverse(buf: np.ndarray) -> None:
            self.reversed += 1
            halo.reverse(buf)

        self.halo = Halo(halo.n_all, halo.remote_rows, forward, reverse)
        self._reverse = halo.reverse

    def balance(self) -> None:
        for width in reversed(self.widths[: len(self.widths) - self.reversed]):
            self._reverse(np.zeros((self.halo.n_all, width)))
