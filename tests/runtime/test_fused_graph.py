"""Tests of the graph form of the fused product (:func:`cartesian_irreps.runtime.fused.phi_grad_graph`).

``PhiG(h, y, w, g) = Phi(h[s], y, w, g[r])`` for senders ``s`` and receivers ``r``; its four modes
are checked three ways against each other (compiled kernel, array-module reference, and the
edge-level :func:`phi_grad` with an explicit gather and ``np.add.at`` scatter), through the
identities ``<dPhiG/da, a> = PhiG`` and ``<dPhiG/da, da> = PhiG(a := da)``, across thread counts
(bitwise), and on the errors of the wrapper and of the extension itself.  Graphs are random, with
empty and isolated nodes, repeated edges, self-loops (periodic images), ``E = 0`` and ``N = 0``.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.runtime import fused
from cartesian_irreps.runtime.fused import (
    MODES,
    GraphIndex,
    PathTable,
    phi_grad,
    phi_grad_graph,
    phi_grad_graph_reference,
    phi_graph,
)

from .test_fused import RTOL, close, make_table, natural_paths, path_subsets

#: the argument whose shape each mode's output has
ARGS = {"z": "g", "x": "h", "y": "y", "w": "w"}
dtypes = st.sampled_from([np.float64, np.float32])
seeds = st.integers(0, 2**32 - 1)

needs_ext = pytest.mark.skipif(not fused.extension_available(), reason="compiled kernel not built")


# ------------------------------------------------------------------------------------------------ #
# random graphs and inputs                                                                         #
# ------------------------------------------------------------------------------------------------ #
@st.composite
def graphs(draw, max_nodes: int = 12, max_edges: int = 40) -> tuple[np.ndarray, np.ndarray, int]:
    """``(senders, receivers, N)``: random edges among the first nodes (the rest isolated), with
    repeats and self-loops likely; receivers sorted (as in a neighbour list) or shuffled."""
    N = draw(st.integers(0, max_nodes))
    E = draw(st.integers(0, max_edges)) if N else 0
    used = draw(st.integers(1, N)) if N else 0  # nodes >= used are isolated
    rng = np.random.default_rng(draw(seeds))
    s = rng.integers(0, max(used, 1), E)
    r = rng.integers(0, max(used, 1), E)
    if E and draw(st.booleans()):  # repeat a few edges
        k = rng.integers(0, E, draw(st.integers(1, 5)))
        s, r = np.concatenate([s, s[k]]), np.concatenate([r, r[k]])
    if E and draw(st.booleans()):  # periodic self-images
        k = rng.integers(0, len(s), 3)
        s, r = np.concatenate([s, r[k]]), np.concatenate([r, r[k]])
    order = draw(st.sampled_from(["sorted", "shuffled", "by sender"]))
    if order == "sorted":
        idx = np.lexsort((s, r))
    elif order == "by sender":
        idx = np.lexsort((r, s))
    else:
        idx = rng.permutation(len(s))
    return s[idx], r[idx], N


def random_graph_inputs(table: PathTable, graph: GraphIndex, C: int, dtype, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    N, E = graph.num_nodes, graph.num_edges
    shapes = {"h": (N, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P), "g": (N, C, table.DZ)}
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def without(arrays: dict, name: str) -> dict:
    return {k: v for k, v in arrays.items() if k != name}


def abs_table(table: PathTable) -> PathTable:
    """The same layout with every coupling entry replaced by its absolute value."""
    return PathTable.from_couplings(
        table.paths,
        [np.abs(c) for c in table.couplings],
        {p[0]: sl.start for p, sl in zip(table.paths, table.x_slices)},
        {p[1]: sl.start for p, sl in zip(table.paths, table.y_slices)},
        dx=table.DX,
        dy=table.DY,
    )


def chain(mode: str, table: PathTable, graph: GraphIndex, arrays: dict, absolute: bool = False) -> np.ndarray:
    """The mode in float64 by the edge-level reference with an explicit gather (``take``) and an
    ``np.add.at`` scatter; ``absolute`` uses absolute values of couplings and inputs (a rounding bound)."""
    a = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    if absolute:
        a = {k: np.abs(v) for k, v in a.items()}
        table = abs_table(table)
    s, r = graph.senders, graph.receivers
    edge = {"x": a["h"][s], "y": a["y"], "w": a["w"], "g": a["g"][r]}
    replaced = {"z": "g", "x": "x", "y": "y", "w": "w"}[mode]
    res = fused.phi_grad_reference(mode, table, **{k: v for k, v in edge.items() if k != replaced})
    if mode in ("z", "x"):
        idx = r if mode == "z" else s
        out = np.zeros((graph.num_nodes, *res.shape[1:]))
        np.add.at(out, idx, res)
        return out
    return res


def phig(table: PathTable, graph: GraphIndex, arrays: dict, absolute: bool = False) -> float:
    """``PhiG`` in float64 as ``sum(z * g)`` of :func:`chain`."""
    g = np.abs(arrays["g"]).astype(np.float64) if absolute else arrays["g"].astype(np.float64)
    return float(np.sum(chain("z", table, graph, arrays, absolute) * g))


# ------------------------------------------------------------------------------------------------ #
# GraphIndex                                                                                       #
# ------------------------------------------------------------------------------------------------ #
@given(graph=graphs())
def test_graph_index_orders_and_pointers(graph):
    s, r, N = graph
    gi = GraphIndex.build(s, r, N)
    assert gi.num_nodes == N and gi.num_edges == len(s)
    assert gi.senders.dtype == gi.receivers.dtype == np.int64 and not gi.senders.flags.writeable
    for key, order, ptr in ((r, gi.receiver_order, gi.receiver_ptr), (s, gi.sender_order, gi.sender_ptr)):
        assert (order is None) == bool(np.all(key[1:] >= key[:-1]))
        perm = np.arange(len(key)) if order is None else order
        assert np.array_equal(np.sort(perm), np.arange(len(key)))
        assert np.array_equal(key[perm], np.sort(key, kind="stable"))
        assert np.array_equal(ptr, np.concatenate([[0], np.cumsum(np.bincount(key, minlength=N))]))
        for n in range(N):
            assert np.all(key[perm[ptr[n] : ptr[n + 1]]] == n)


@given(graph=graphs(max_nodes=30, max_edges=200), threads=st.integers(1, 6))
def test_graph_chunks_cover_rows(graph, threads):
    s, r, N = graph
    gi = GraphIndex.build(s, r, N)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "MIN_EDGES_PER_THREAD", 1)
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


# ------------------------------------------------------------------------------------------------ #
# kernel == reference == explicit gather/scatter                                                   #
# ------------------------------------------------------------------------------------------------ #
@given(paths=path_subsets, graph=graphs(), C=st.integers(0, 19), dtype=dtypes, seed=seeds)
def test_graph_modes_match_reference_and_chain(paths, graph, C, dtype, seed):
    table = make_table(paths)
    gi = GraphIndex.build(*graph)
    arrays = random_graph_inputs(table, gi, C, dtype, seed)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        fast = phi_grad_graph(mode, table, gi, **inputs, threads=1)
        ref = phi_grad_graph_reference(mode, table, gi, **inputs)
        expected = chain(mode, table, gi, arrays)
        assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape == arrays[ARGS[mode]].shape
        assert close(ref, expected, RTOL[dtype]), mode
        assert close(fast, expected, RTOL[dtype]), mode
        if mode in ("z", "x"):  # nodes that no edge reaches get exact zeros
            key = gi.receivers if mode == "z" else gi.senders
            idle = np.setdiff1d(np.arange(gi.num_nodes), key)
            assert not fast[idle].any() and not ref[idle].any()


@needs_ext
def test_graph_kernel_full_natural_lists_and_large_channels():
    """All natural paths for L = 1..3, C a multiple of the channel block and not; many edges per node."""
    rng = np.random.default_rng(3)
    N, E = 23, 400
    r = np.sort(rng.integers(0, N - 2, E))
    gi = GraphIndex.build(rng.integers(0, N, E), r, N)
    for L in (1, 2, 3):
        table = make_table(natural_paths(L))
        for C, dtype in ((32, np.float64), (37, np.float32), (8, np.float64), (64, np.float32)):
            arrays = random_graph_inputs(table, gi, C, dtype, L * C)
            for mode in MODES:
                inputs = without(arrays, ARGS[mode])
                fast = phi_grad_graph(mode, table, gi, **inputs, threads=2)
                assert close(fast, chain(mode, table, gi, arrays), RTOL[dtype]), (L, C, mode)


@given(paths=path_subsets, graph=graphs(), C=st.integers(1, 12), dtype=dtypes, seed=seeds)
def test_graph_gradient_identities(paths, graph, C, dtype, seed):
    """<dPhiG/da, a> = PhiG and <dPhiG/da, da> = PhiG(a := da) for a in h, y, w, g, on both code paths."""
    table = make_table(paths)
    gi = GraphIndex.build(*graph)
    arrays = random_graph_inputs(table, gi, C, dtype, seed)
    other = random_graph_inputs(table, gi, C, dtype, seed + 1)
    total = phig(table, gi, arrays)
    rtol = {np.float64: 1e-11, np.float32: 1e-4}[dtype]
    for mode in MODES:
        a = ARGS[mode]
        shifted = {**arrays, a: other[a]}
        shifted_total = phig(table, gi, shifted)
        bound = max(phig(table, gi, arrays, absolute=True), phig(table, gi, shifted, absolute=True))
        for fn in (phi_grad_graph, phi_grad_graph_reference):
            grad = fn(mode, table, gi, **without(arrays, a)).astype(np.float64)
            assert abs(np.sum(grad * arrays[a]) - total) <= rtol * bound + 1e-300, (mode, fn.__name__)
            assert abs(np.sum(grad * other[a]) - shifted_total) <= rtol * bound + 1e-300, (mode, fn.__name__)
    bound = phig(table, gi, arrays, absolute=True)
    assert abs(float(phi_graph(table, gi, **arrays)) - total) <= rtol * bound + 1e-300


@given(paths=path_subsets, graph=graphs(), C=st.integers(1, 10), seed=seeds)
def test_graph_form_is_edge_form_of_gathered_arrays(paths, graph, C, seed):
    """Modes y and w equal the edge-level compiled kernel on h[s], g[r]; modes z and x its scatter."""
    table = make_table(paths)
    gi = GraphIndex.build(*graph)
    a = random_graph_inputs(table, gi, C, np.float64, seed)
    s, r = gi.senders, gi.receivers
    x, g = a["h"][s], a["g"][r]
    assert close(
        phi_grad_graph("y", table, gi, h=a["h"], w=a["w"], g=a["g"]), phi_grad("y", table, x=x, w=a["w"], g=g), 1e-12
    )
    assert close(
        phi_grad_graph("w", table, gi, h=a["h"], y=a["y"], g=a["g"]), phi_grad("w", table, x=x, y=a["y"], g=g), 1e-12
    )
    z = np.zeros((gi.num_nodes, C, table.DZ))
    np.add.at(z, r, phi_grad("z", table, x=x, y=a["y"], w=a["w"]))
    assert close(phi_grad_graph("z", table, gi, h=a["h"], y=a["y"], w=a["w"]), z, 1e-12)
    gx = np.zeros((gi.num_nodes, C, table.DX))
    np.add.at(gx, s, phi_grad("x", table, y=a["y"], w=a["w"], g=g))
    assert close(phi_grad_graph("x", table, gi, y=a["y"], w=a["w"], g=a["g"]), gx, 1e-12)


# ------------------------------------------------------------------------------------------------ #
# threads, out, layouts                                                                            #
# ------------------------------------------------------------------------------------------------ #
@needs_ext
@given(paths=path_subsets, graph=graphs(max_nodes=20, max_edges=80), C=st.integers(1, 12), dtype=dtypes, seed=seeds)
def test_graph_thread_counts_identical(paths, graph, C, dtype, seed):
    table = make_table(paths)
    gi = GraphIndex.build(*graph)
    arrays = random_graph_inputs(table, gi, C, dtype, seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "MIN_EDGES_PER_THREAD", 1)
        for mode in MODES:
            inputs = without(arrays, ARGS[mode])
            one = phi_grad_graph(mode, table, gi, **inputs, threads=1)
            for threads in (2, 3, 7):
                assert np.array_equal(phi_grad_graph(mode, table, gi, **inputs, threads=threads), one), (mode, threads)


@needs_ext
def test_graph_default_threads_and_large_graph():
    """Above the per-thread threshold the default thread count splits the rows; results are bitwise equal."""
    rng = np.random.default_rng(5)
    N, E = 200, 4 * fused.MIN_EDGES_PER_THREAD + 3
    gi = GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N, E)), N)
    table = make_table(natural_paths(2))
    arrays = random_graph_inputs(table, gi, 9, np.float64, 0)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        one = phi_grad_graph(mode, table, gi, **inputs, threads=1)
        assert len(gi.chunks(mode, 4)) == 4
        assert np.array_equal(phi_grad_graph(mode, table, gi, **inputs, threads=4), one)
        assert np.array_equal(phi_grad_graph(mode, table, gi, **inputs), one)
        assert close(one, chain(mode, table, gi, arrays), 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_graph_out_is_overwritten_and_returned(dtype):
    rng = np.random.default_rng(1)
    gi = GraphIndex.build(rng.integers(0, 9, 50), rng.integers(0, 7, 50), 9)  # unsorted receivers, idle nodes
    table = make_table(natural_paths(2))
    arrays = random_graph_inputs(table, gi, 11, dtype, 3)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        for fn in (phi_grad_graph, phi_grad_graph_reference):
            out = np.full_like(arrays[ARGS[mode]], np.nan)
            assert fn(mode, table, gi, **inputs, out=out) is out
            assert close(out, chain(mode, table, gi, arrays), RTOL[dtype]), (mode, fn.__name__)


def test_graph_noncontiguous_and_float16_use_reference():
    rng = np.random.default_rng(2)
    gi = GraphIndex.build(rng.integers(0, 6, 30), np.sort(rng.integers(0, 6, 30)), 6)
    table = make_table(natural_paths(2))
    arrays = random_graph_inputs(table, gi, 5, np.float64, 4)
    strided = {k: np.asfortranarray(v) for k, v in arrays.items()}
    half = {k: v.astype(np.float16) for k, v in arrays.items()}
    for mode in MODES:
        expected = phi_grad_graph(mode, table, gi, **without(arrays, ARGS[mode]))
        assert close(phi_grad_graph(mode, table, gi, **without(strided, ARGS[mode])), expected, 1e-12)
        got = phi_grad_graph(mode, table, gi, **without(half, ARGS[mode]))
        assert got.dtype == np.float16 and close(got, expected, 2e-2)


def test_graph_replaced_array_is_ignored():
    rng = np.random.default_rng(4)
    gi = GraphIndex.build(rng.integers(0, 5, 20), rng.integers(0, 5, 20), 5)
    table = make_table(natural_paths(1))
    arrays = random_graph_inputs(table, gi, 4, np.float64, 2)
    for mode in MODES:
        got = phi_grad_graph(mode, table, gi, **arrays)
        assert np.array_equal(got, phi_grad_graph(mode, table, gi, **without(arrays, ARGS[mode])))


# ------------------------------------------------------------------------------------------------ #
# errors                                                                                           #
# ------------------------------------------------------------------------------------------------ #
def test_graph_bad_inputs_raise_clear_errors():
    gi = GraphIndex.build([0, 1, 2, 2], [0, 0, 1, 3], 4)
    table = make_table(natural_paths(1))
    a = random_graph_inputs(table, gi, 3, np.float64, 0)
    h, y, w, g = a["h"], a["y"], a["w"], a["g"]
    for fn in (phi_grad_graph, phi_grad_graph_reference):
        with pytest.raises(ValueError, match="unknown mode"):
            fn("q", table, gi, h=h, y=y, w=w)
        with pytest.raises(TypeError, match="GraphIndex"):
            fn("z", table, (gi.senders, gi.receivers), h=h, y=y, w=w)
        with pytest.raises(TypeError, match="PathTable"):
            fn("z", None, gi, h=h, y=y, w=w)
        with pytest.raises(ValueError, match="missing: w"):
            fn("z", table, gi, h=h, y=y)
        with pytest.raises(ValueError, match=r"h has shape \(3, 3, 4\); expected \(N, C, DX\) with nodes N=4"):
            fn("z", table, gi, h=h[:3], y=y, w=w)
        with pytest.raises(ValueError, match=r"y has shape \(3, 4\); expected \(E, DY\) with edges E=4"):
            fn("z", table, gi, h=h, y=y[:3], w=w)
        with pytest.raises(ValueError, match=r"g has shape \(4, 3, 3\); expected \(N, C, DZ\) with DZ="):
            fn("x", table, gi, y=y, w=w, g=g[:, :, :3])
        with pytest.raises(ValueError, match="disagree on the number of channels C"):
            fn("y", table, gi, h=h, w=w[:, :2], g=g)
        with pytest.raises(TypeError, match="dtype mismatch"):
            fn("w", table, gi, h=h, y=y.astype(np.float32), g=g)
        with pytest.raises(ValueError, match="out has shape"):
            fn("z", table, gi, h=h, y=y, w=w, out=np.empty_like(h))
        ro = np.empty_like(g)
        ro.setflags(write=False)
        with pytest.raises(ValueError, match="read-only"):
            fn("z", table, gi, h=h, y=y, w=w, out=ro)
    with pytest.raises(ValueError, match="threads"):
        phi_grad_graph("z", table, gi, h=h, y=y, w=w, threads=0)


@needs_ext
def test_extension_validates_graph_indices():
    """The C entry point checks every index it reads, whatever the caller passes."""
    from cartesian_irreps import _fused

    rng = np.random.default_rng(0)
    N, E = 5, 12
    s = rng.integers(0, N, E).astype(np.int64)
    r = np.sort(rng.integers(0, N, E)).astype(np.int64)
    gi = GraphIndex.build(s, r, N)
    table = make_table(natural_paths(1))
    a = random_graph_inputs(table, gi, 3, np.float64, 0)
    static = (table.meta, table.coo_ptr, table.coo_i, table.coo_j, table.coo_k, table.coo_val64)
    outs = {m: np.empty_like(a[ARGS[m]]) for m in MODES}

    def call(mode, senders=s, receivers=r, order=None, ptr=gi.receiver_ptr, rows=None, **over):
        arrs = {**a, **over}
        args = [None if k == ARGS[mode] else arrs[k] for k in ("h", "y", "w", "g")]
        lo, hi = rows if rows is not None else (0, N if mode in ("z", "x") else E)
        code = MODES.index(mode)
        return _fused.phi_grad_graph(code, *args, outs[mode], senders, receivers, order, ptr, *static, lo, hi)

    for mode in MODES:  # valid calls agree with the reference
        call(mode)
        assert close(outs[mode], chain(mode, table, gi, a), 1e-12), mode

    bad = s.copy()
    bad[3] = N
    with pytest.raises(ValueError, match=r"senders\[3\] = 5 is out of range for 5 nodes"):
        call("z", senders=bad)
    with pytest.raises(ValueError, match=r"senders\[3\] = 5 is out of range"):
        call("y", senders=bad)
    bad_r = r.copy()
    bad_r[-1] = -1
    with pytest.raises(ValueError, match=r"receivers\[11\] = -1 is out of range"):
        call("w", receivers=bad_r)
    with pytest.raises(ValueError, match=r"receivers\[11\] = -1 is out of range"):
        call("x", receivers=bad_r)
    shuffled = rng.permutation(E)
    with pytest.raises(ValueError, match="receivers must be sorted"):
        call("z", senders=s[shuffled], receivers=r[shuffled])
    order = np.argsort(r[shuffled], kind="stable")
    edges = {"senders": s[shuffled], "receivers": r[shuffled], "y": a["y"][shuffled], "w": a["w"][shuffled]}
    call("z", order=order, **edges)  # the same edges in another order: the same sums
    assert close(outs["z"], chain("z", table, gi, a), 1e-12)
    with pytest.raises(ValueError, match="not an edge index"):
        call("z", order=np.full(E, E, dtype=np.int64))
    with pytest.raises(ValueError, match="ptr must start at 0 and end at E"):
        call("z", ptr=np.zeros(N + 1, dtype=np.int64))
    wrong_ptr = gi.receiver_ptr.copy()
    wrong_ptr[1:-1] = wrong_ptr[1:-1][::-1]
    with pytest.raises(ValueError, match=r"ptr must be non-decreasing|listed under node"):
        call("z", ptr=wrong_ptr)
    with pytest.raises(ValueError, match="needs ptr"):
        call("z", ptr=None)
    with pytest.raises(ValueError, match="ptr has length"):
        call("z", ptr=gi.receiver_ptr[:-1].copy())
    with pytest.raises(ValueError, match="int64"):
        call("z", senders=s.astype(np.int32))
    with pytest.raises(ValueError, match="receivers has length"):
        call("y", receivers=r[:-1].copy())
    # mode x: the listed edges must be exactly those whose sender lies in the node range
    with pytest.raises(ValueError, match="order lists 11 edges but 12 edges have their sender"):
        call("x", order=np.arange(E - 1, dtype=np.int64))
    twice = np.arange(E, dtype=np.int64)
    twice[1] = 0
    with pytest.raises(ValueError, match="is listed twice"):
        call("x", order=twice)
    inside = np.flatnonzero(s < 2).astype(np.int64)
    call("x", order=inside, rows=(0, 2))
    with pytest.raises(ValueError, match="sender outside the node range"):
        call("x", order=np.flatnonzero(s >= 2).astype(np.int64)[: len(inside)], rows=(0, 2))
    with pytest.raises(ValueError, match="row range"):
        call("y", rows=(0, E + 1))
    with pytest.raises(ValueError, match="row range"):
        call("z", rows=(2, 1))
    with pytest.raises(ValueError, match=r"h has shape \(4, 3, 4\), expected \(5, 3, 4\)"):
        call("z", h=a["h"][:4].copy())


@needs_ext
def test_extension_graph_rows_outside_range_untouched():
    """Only rows [start, stop) are written (nodes for z and x, edges for y and w)."""
    from cartesian_irreps import _fused

    rng = np.random.default_rng(7)
    N, E = 8, 40
    gi = GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N, E)), N)
    table = make_table(natural_paths(2))
    a = random_graph_inputs(table, gi, 5, np.float32, 1)
    static = (table.meta, table.coo_ptr, table.coo_i, table.coo_j, table.coo_k, table.coo_val32)
    for mode, (lo, hi) in (("z", (2, 5)), ("x", (3, 7)), ("y", (10, 30)), ("w", (5, 6))):
        out = np.full_like(a[ARGS[mode]], np.nan)
        args = [None if k == ARGS[mode] else a[k] for k in ("h", "y", "w", "g")]
        edges = np.flatnonzero((gi.senders >= lo) & (gi.senders < hi)) if mode == "x" else None
        _fused.phi_grad_graph(
            MODES.index(mode), *args, out, gi.senders, gi.receivers, edges, gi.receiver_ptr, *static, lo, hi
        )
        assert np.isnan(out[:lo]).all() and np.isnan(out[hi:]).all()
        assert close(out[lo:hi], chain(mode, table, gi, a)[lo:hi], 1e-5), mode


# ------------------------------------------------------------------------------------------------ #
# CuPy                                                                                             #
# ------------------------------------------------------------------------------------------------ #
@pytest.mark.gpu
def test_graph_cupy_reference_matches_numpy():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no GPU")
    except cp.cuda.runtime.CUDARuntimeError:
        pytest.skip("no usable CUDA device")
    rng = np.random.default_rng(9)
    N, E = 30, 300
    gi = GraphIndex.build(rng.integers(0, N, E), rng.integers(0, N - 3, E), N)  # unsorted, idle nodes
    gi_dev = GraphIndex.build(cp.asarray(gi.senders), cp.asarray(gi.receivers), N)  # device indices accepted
    table = make_table(natural_paths(3))
    for dtype in (np.float64, np.float32):
        arrays = random_graph_inputs(table, gi, 16, dtype, 7)
        for mode in MODES:
            inputs = without(arrays, ARGS[mode])
            for graph in (gi, gi_dev):
                on_gpu = phi_grad_graph(mode, table, graph, **{k: cp.asarray(v) for k, v in inputs.items()})
                assert type(on_gpu).__module__.startswith("cupy") and on_gpu.dtype == dtype
                assert close(cp.asnumpy(on_gpu), phi_grad_graph(mode, table, gi, **inputs), RTOL[dtype])


def test_graph_form_imports_neither_sympy_nor_cupy():
    code = (
        "import sys, numpy as np\n"
        "from cartesian_irreps.runtime import fused\n"
        "t = fused.PathTable.from_couplings([(0, 0, 0)], [np.ones((1, 1, 1))])\n"
        "gi = fused.GraphIndex.build([0, 1, 1], [1, 0, 1], 2)\n"
        "h = np.ones((2, 3, 1)); y = np.ones((3, 1)); w = np.ones((3, 3, 1))\n"
        "z = fused.phi_grad_graph('z', t, gi, h=h, y=y, w=w)\n"
        "assert np.array_equal(fused.phi_grad_graph_reference('z', t, gi, h=h, y=y, w=w), z)\n"
        "assert 'sympy' not in sys.modules and 'cupy' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
