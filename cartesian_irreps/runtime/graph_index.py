"""Senders and receivers of a graph, with the orderings and thread splits the graph kernels walk.

Edge ``e`` carries the features of node ``s(e)`` (its sender) to node ``r(e)`` (its receiver).  The
fused product (:mod:`.fused`) gathers by sender and sums by receiver inside the kernel; it needs the
edges grouped by receiver (CSR row pointers and a sorting permutation), likewise by sender, and a split
of the output rows between threads at row boundaries.  :class:`GraphIndex` computes these once per
graph and caches the thread splits.  A per-edge product is the graph form on
:meth:`GraphIndex.identity` (one edge per node pair: ``s(e) = r(e) = e``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

from .backend import to_host

__all__ = ["MIN_EDGES_PER_THREAD", "GraphIndex"]

#: fewer edges than this per thread are not worth a thread hand-off
MIN_EDGES_PER_THREAD = 512


def _index_vector(a: Any, name: str) -> np.ndarray:
    """A 1-D integer index array (NumPy or CuPy; copied to the host) as read-only int64."""
    a = to_host(a)
    if a.ndim != 1 or (a.dtype.kind not in "iu" and a.size):
        raise ValueError(f"{name} must be a 1-D integer array, got dtype {a.dtype} and shape {a.shape}")
    a = np.array(a, dtype=np.int64)  # a private copy: the graph is immutable
    a.setflags(write=False)
    return a


def _edge_chunks(E: int, threads: int) -> list[tuple[int, int]]:
    """Split ``[0, E)`` into at most ``threads`` near-equal chunks of at least MIN_EDGES_PER_THREAD edges."""
    n = max(1, min(threads, E // MIN_EDGES_PER_THREAD))
    bounds = [E * t // n for t in range(n + 1)]
    return [(bounds[t], bounds[t + 1]) for t in range(n)]


def _row_pointers(key: np.ndarray, num_nodes: int) -> np.ndarray:
    """``ptr (N+1,)``: node ``n`` owns positions ``ptr[n]:ptr[n+1]`` of the edges sorted by ``key``."""
    ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=num_nodes), out=ptr[1:])
    ptr.setflags(write=False)
    return ptr


def _sort_order(key: np.ndarray) -> np.ndarray | None:
    """``None`` when ``key`` is non-decreasing, else the stable permutation that sorts it."""
    if key.size < 2 or bool((key[1:] >= key[:-1]).all()):
        return None
    order = np.argsort(key, kind="stable").astype(np.int64, copy=False)
    order.setflags(write=False)
    return order


def _row_chunks(ptr: np.ndarray, threads: int) -> tuple[tuple[int, int], ...]:
    """Split the rows ``[0, N)`` at row boundaries into at most ``threads`` chunks of near-equal edge counts.

    Every chunk holds at least about MIN_EDGES_PER_THREAD edges; empty chunks are dropped (but
    there is always one chunk, ``(0, N)`` when a single thread does the work).
    """
    N, E = len(ptr) - 1, int(ptr[-1])
    n = max(1, min(threads, E // MIN_EDGES_PER_THREAD))
    if n == 1:
        return ((0, N),)
    cuts = np.searchsorted(ptr, [E * t // n for t in range(1, n)], side="left").tolist()
    bounds = sorted({0, N, *(min(max(int(c), 0), N) for c in cuts)})
    return tuple((a, b) for a, b in itertools.pairwise(bounds))


@dataclass(frozen=True, eq=False)
class GraphIndex:
    """Senders and receivers of a graph, with the orderings the graph kernels walk.

    Build it once per graph with :meth:`build` (it copies and validates the indices).  Attributes:

    * ``senders``, ``receivers``: int64 ``(E,)`` (read-only); edge ``e`` carries ``h[senders[e]]``
      to node ``receivers[e]``;
    * ``num_nodes``: ``N``; every index lies in ``[0, N)``;
    * ``receiver_order``: ``None`` when ``receivers`` is non-decreasing (as in mlip's neighbour
      lists), else the stable permutation that sorts it;
      ``receiver_ptr``: int64 ``(N+1,)``, the edges received by node ``n`` are
      ``receiver_order[receiver_ptr[n]:receiver_ptr[n+1]]`` (CSR row pointers);
    * ``sender_order`` / ``sender_ptr``: the same for the senders (mode ``"x"`` scatters by sender);
    * ``is_identity``: ``senders == receivers == arange(E)`` with ``N = E`` (see :meth:`identity`).

    Thread partitions (per mode kind and thread count) and device copies of the indices (for CuPy
    inputs) are cached on the object.
    """

    senders: np.ndarray
    receivers: np.ndarray
    num_nodes: int
    receiver_order: np.ndarray | None
    receiver_ptr: np.ndarray
    sender_order: np.ndarray | None
    sender_ptr: np.ndarray
    is_identity: bool = False
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_edges(self) -> int:
        """Number of edges ``E``."""
        return int(self.senders.shape[0])

    @classmethod
    def build(cls, senders: Any, receivers: Any, num_nodes: int) -> GraphIndex:
        """Validate ``senders``, ``receivers`` (1-D integer arrays of one length ``E``, NumPy or CuPy)
        against ``num_nodes`` and compute the receiver and sender orderings (``O(E log E)`` at worst,
        ``O(E + N)`` when both are sorted)."""
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)) or num_nodes < 0:
            raise ValueError(f"num_nodes must be a non-negative integer, got {num_nodes!r}")
        N = int(num_nodes)
        s = _index_vector(senders, "senders")
        r = _index_vector(receivers, "receivers")
        if s.shape != r.shape:
            raise ValueError(f"senders and receivers differ in length ({s.shape[0]} vs {r.shape[0]})")
        for name, a in (("senders", s), ("receivers", r)):
            if a.size and (int(a.min()) < 0 or int(a.max()) >= N):
                bad = int(np.flatnonzero((a < 0) | (a >= N))[0])
                raise ValueError(f"{name}[{bad}] = {int(a[bad])} is out of range for {N} nodes")
        receiver_order, sender_order = _sort_order(r), _sort_order(s)
        return cls(
            senders=s,
            receivers=r,
            num_nodes=N,
            receiver_order=receiver_order,
            receiver_ptr=_row_pointers(r, N),
            sender_order=sender_order,
            sender_ptr=_row_pointers(s, N),
            is_identity=N == s.shape[0]
            and sender_order is None
            and bool(np.array_equal(s, np.arange(N)))
            and bool(np.array_equal(r, s)),
        )

    @classmethod
    def identity(cls, num_edges: int) -> GraphIndex:
        """The graph of the per-edge product: ``E = N = num_edges`` and ``s(e) = r(e) = e``.

        On it the graph form is the edge form: every node array is an edge array (``h[e]`` is the
        input of edge ``e``, ``out[e]`` its output) and nothing is gathered or summed.  Cached for the
        last few sizes (the thread splits stay cached with it).
        """
        if isinstance(num_edges, bool) or not isinstance(num_edges, (int, np.integer)) or num_edges < 0:
            raise ValueError(f"num_edges must be a non-negative integer, got {num_edges!r}")
        return _identity(int(num_edges))

    def chunks(self, mode: str, threads: int) -> tuple[tuple[int, int, np.ndarray | None], ...]:
        """The thread split of ``mode`` (cached): ``(start, stop, edges)`` per thread.

        ``"z"``: node ranges balanced by received edges (``edges`` is ``receiver_order``);
        ``"x"``: node ranges balanced by sent edges, ``edges`` the edges whose sender lies in the
        range, in receiver order (so the kernel reuses rows of ``g``; ``None``: all edges in order);
        ``"y"``, ``"w"``: edge ranges (``edges`` is ``None``).
        """
        key = ("chunks", mode, int(threads), MIN_EDGES_PER_THREAD)
        got = self._cache.get(key)
        if got is None:
            if mode == "z":
                got = tuple((a, b, self.receiver_order) for a, b in _row_chunks(self.receiver_ptr, threads))
            elif mode == "x":
                ranges = _row_chunks(self.sender_ptr, threads)
                if len(ranges) == 1:
                    got = ((*ranges[0], self.receiver_order),)
                else:
                    by_receiver = np.arange(self.num_edges) if self.receiver_order is None else self.receiver_order
                    sent = self.senders[by_receiver]
                    lists = []
                    for a, b in ranges:
                        edges = by_receiver[(sent >= a) & (sent < b)]
                        edges.setflags(write=False)
                        lists.append((a, b, edges))
                    got = tuple(lists)
            else:
                got = tuple((a, b, None) for a, b in _edge_chunks(self.num_edges, threads))
            self._cache[key] = got
        return got

    def indices(self, xp: ModuleType) -> tuple[Any, Any]:
        """``(senders, receivers)`` as arrays of module ``xp`` (device copies cached per GPU)."""
        if xp is np:
            return self.senders, self.receivers
        key = ("device", xp.__name__, int(xp.cuda.Device().id))
        got = self._cache.get(key)
        if got is None:
            got = (xp.asarray(self.senders), xp.asarray(self.receivers))
            self._cache[key] = got
        return got


@lru_cache(maxsize=4)
def _identity(num_edges: int) -> GraphIndex:
    """:meth:`GraphIndex.identity` (cached per size)."""
    e = np.arange(num_edges, dtype=np.int64)
    return GraphIndex.build(e, e, num_edges)
