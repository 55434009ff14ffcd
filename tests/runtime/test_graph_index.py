"""Tests of :class:`cartesian_irreps.runtime.graph_index.GraphIndex`: orderings, CSR pointers, thread splits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.runtime import graph_index
from cartesian_irreps.runtime.fused import MODES, GraphIndex

from .fused_cases import graphs


@given(gi=graphs())
def test_graph_index_orders_and_pointers(gi):
    s, r, N = gi.senders, gi.receivers, gi.num_nodes
    assert gi.num_edges == len(s) == len(r)
    assert gi.senders.dtype == gi.receivers.dtype == np.int64 and not gi.senders.flags.writeable
    for key, order, ptr in ((r, gi.receiver_order, gi.receiver_ptr), (s, gi.sender_order, gi.sender_ptr)):
        assert (order is None) == bool(np.all(key[1:] >= key[:-1]))
        perm = np.arange(len(key)) if order is None else order
        assert np.array_equal(np.sort(perm), np.arange(len(key)))
        assert np.array_equal(key[perm], np.sort(key, kind="stable"))
        assert np.array_equal(ptr, np.concatenate([[0], np.cumsum(np.bincount(key, minlength=N))]))
        for n in range(N):
            assert np.all(key[perm[ptr[n] : ptr[n + 1]]] == n)
    identity = N == len(s) and np.array_equal(s, np.arange(N)) and np.array_equal(r, np.arange(N))
    assert gi.is_identity == identity


@given(gi=graphs(max_nodes=30, max_edges=200), threads=st.integers(1, 6))
def test_graph_chunks_cover_rows(gi, threads):
    s, r, N = gi.senders, gi.receivers, gi.num_nodes
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(graph_index, "MIN_EDGES_PER_THREAD", 1)
        for mode in MODES:
            chunks = gi.chunks(mode, threads)
            rows = N if mode in ("z", "x") else len(s)
            assert 1 <= len(chunks) <= max(threads, 1)
            assert chunks[0][0] == 0 and chunks[-1][1] == rows
            assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
            if mode == "x":
                listed = np.concatenate([np.arange(len(s)) if e is None else e for _, _, e in chunks])
                assert np.array_equal(np.sort(listed), np.arange(len(s)))
                for lo, hi, e in chunks:
                    e = np.arange(len(s)) if e is None else e
                    assert np.all((s[e] >= lo) & (s[e] < hi))
                    assert np.all(np.diff(r[e]) >= 0)  # receiver order: rows of g are reused
            assert gi.chunks(mode, threads) is chunks  # cached


def test_edge_chunks():
    assert graph_index._edge_chunks(0, 4) == [(0, 0)]
    assert graph_index._edge_chunks(100, 4) == [(0, 100)]
    n = graph_index.MIN_EDGES_PER_THREAD
    chunks = graph_index._edge_chunks(10 * n + 3, 4)
    assert len(chunks) == 4 and chunks[0][0] == 0 and chunks[-1][1] == 10 * n + 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))


@pytest.mark.parametrize("E", [0, 1, 7])
def test_identity_graph(E):
    gi = GraphIndex.identity(E)
    assert gi.is_identity and gi.num_nodes == gi.num_edges == E
    assert np.array_equal(gi.senders, np.arange(E)) and np.array_equal(gi.receivers, np.arange(E))
    assert gi.receiver_order is None and gi.sender_order is None
    assert np.array_equal(gi.receiver_ptr, np.arange(E + 1))
    assert GraphIndex.identity(E) is gi  # cached
    assert GraphIndex.build(np.arange(E), np.arange(E), E).is_identity
    if E > 1:
        assert not GraphIndex.build(np.arange(E), np.arange(E), E + 1).is_identity
        assert not GraphIndex.build(np.arange(E)[::-1], np.arange(E)[::-1], E).is_identity
    for bad in (-1, 2.0, True):
        with pytest.raises(ValueError, match="num_edges must be a non-negative integer"):
            GraphIndex.identity(bad)


def test_graph_index_errors():
    with pytest.raises(ValueError, match=r"receivers\[1\] = 3 is out of range for 3 nodes"):
        GraphIndex.build([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match=r"senders\[0\] = -1 is out of range"):
        GraphIndex.build([-1, 1], [0, 1], 3)
    with pytest.raises(ValueError, match="differ in length"):
        GraphIndex.build([0, 1], [0], 3)
    with pytest.raises(ValueError, match="1-D integer array"):
        GraphIndex.build([0.0, 1.0], [0, 1], 3)
    with pytest.raises(ValueError, match="1-D integer array"):
        GraphIndex.build([[0, 1]], [[0, 1]], 3)
    with pytest.raises(ValueError, match="num_nodes"):
        GraphIndex.build([0], [0], -1)
    with pytest.raises(ValueError, match="out of range for 0 nodes"):
        GraphIndex.build([0], [0], 0)
    empty = GraphIndex.build(np.zeros(0, int), np.zeros(0, int), 0)
    assert empty.num_edges == 0 and empty.receiver_ptr.tolist() == [0]
    src = np.array([2, 0, 1])
    gi = GraphIndex.build(src, src, 3)
    src[0] = 7  # the graph keeps its own copy
    assert gi.senders[0] == 2
