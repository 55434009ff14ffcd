"""Tests of the fused message-passing product (:mod:`cartesian_irreps.runtime.fused`).

``PhiG(h, y, w, g) = Phi(h[s], y, w, g[r])`` for senders ``s`` and receivers ``r``; its four modes
are checked against a naive dense ``np.einsum`` on explicitly gathered arrays with an ``np.add.at``
scatter (written independently of the path table, :mod:`.fused_cases`), the compiled kernel against
the array-module reference, through the identities ``<dPhiG/da, a> = PhiG`` and
``<dPhiG/da, da> = PhiG(a := da)``, linearity, across thread counts (bitwise), and on the errors of
the wrapper and of the extension itself.  Graphs are random, with empty and isolated nodes, repeated
edges, self-loops (periodic images), ``E = 0`` and ``N = 0``, and the per-edge graph
:meth:`GraphIndex.identity` (the per-edge product ``Phi(x, y, w, g)``).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.runtime import fused, graph_index
from cartesian_irreps.runtime.fused import (
    MODES,
    GraphIndex,
    PathTable,
    phi_grad_graph,
    phi_grad_graph_reference,
    phi_graph,
)
from cartesian_irreps.runtime.message_passing import MessagePassingProduct

from .fused_cases import (
    ARGS,
    RTOL,
    close,
    dtypes,
    graphs,
    make_table,
    naive,
    natural_paths,
    path_subsets,
    random_inputs,
    seeds,
    without,
)

needs_ext = pytest.mark.skipif(not fused.extension_available(), reason="compiled kernel not built")
BOTH = (phi_grad_graph, phi_grad_graph_reference)


def test_extension_is_built_here():
    """In this repository the extension is built; elsewhere the module still works without it."""
    pytest.importorskip("cartesian_irreps._fused", reason="compiled kernel not built (no C compiler at install)")
    assert fused.extension_available()


# ------------------------------------------------------------------------------------------------ #
# kernel == reference == dense einsum with explicit gather/scatter                                 #
# ------------------------------------------------------------------------------------------------ #
@given(paths=path_subsets, gi=graphs(), C=st.integers(0, 19), dtype=dtypes, seed=seeds)
def test_modes_match_reference_and_dense_einsum(paths, gi, C, dtype, seed):
    """C covers partial channel blocks; idle nodes get exact zeros."""
    table = make_table(paths)
    arrays = random_inputs(table, gi, C, dtype, seed)
    _, grads = naive(paths, gi, arrays)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        fast = phi_grad_graph(mode, table, gi, **inputs, threads=1)
        ref = phi_grad_graph_reference(mode, table, gi, **inputs)
        assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape == arrays[ARGS[mode]].shape
        assert close(ref, grads[mode], RTOL[dtype]), mode
        assert close(fast, grads[mode], RTOL[dtype]), mode
        assert close(fast, ref, RTOL[dtype]), mode
        if mode in ("z", "x"):  # nodes that no edge reaches get exact zeros
            key = gi.receivers if mode == "z" else gi.senders
            idle = np.setdiff1d(np.arange(gi.num_nodes), key)
            assert not fast[idle].any() and not ref[idle].any()


@needs_ext
@pytest.mark.parametrize("L", [1, 2, 3])
def test_kernel_full_natural_lists_and_large_channels(L):
    """All natural paths for L = 1..3, C a multiple of the channel block and not; per-edge and many edges per node."""
    rng = np.random.default_rng(3)
    N, E = 23, 400
    many = GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N - 2, E)), N)
    table = make_table(natural_paths(L))
    for gi in (GraphIndex.identity(17), many):
        for C, dtype in ((32, np.float64), (37, np.float32), (8, np.float64), (64, np.float32)):
            arrays = random_inputs(table, gi, C, dtype, L * C)
            _, grads = naive(natural_paths(L), gi, arrays)
            for mode in MODES:
                inputs = without(arrays, ARGS[mode])
                for threads in (1, 2):
                    fast = phi_grad_graph(mode, table, gi, **inputs, threads=threads)
                    assert close(fast, grads[mode], RTOL[dtype]), (L, C, mode, gi.is_identity)


@given(paths=path_subsets, gi=graphs(), C=st.integers(1, 12), dtype=dtypes, seed=seeds)
def test_gradient_identities(paths, gi, C, dtype, seed):
    """<dPhiG/da, a> = PhiG and <dPhiG/da, da> = PhiG(a := da) for a in h, y, w, g, on both code paths."""
    table = make_table(paths)
    arrays = random_inputs(table, gi, C, dtype, seed)
    other = random_inputs(table, gi, C, dtype, seed + 1)
    total = naive(paths, gi, arrays)[0]
    rtol = {np.float64: 1e-11, np.float32: 1e-4}[dtype]
    for mode in MODES:
        a = ARGS[mode]
        shifted = {**arrays, a: other[a]}
        shifted_total = naive(paths, gi, shifted)[0]
        # rounding bound: PhiG with every coupling and array entry replaced by its absolute value
        bound = max(naive(paths, gi, arrays, absolute=True)[0], naive(paths, gi, shifted, absolute=True)[0])
        for fn in BOTH:
            grad = fn(mode, table, gi, **without(arrays, a)).astype(np.float64)
            assert abs(np.sum(grad * arrays[a]) - total) <= rtol * bound + 1e-300, (mode, fn.__name__)
            assert abs(np.sum(grad * other[a]) - shifted_total) <= rtol * bound + 1e-300, (mode, fn.__name__)
    bound = naive(paths, gi, arrays, absolute=True)[0]
    assert abs(float(phi_graph(table, gi, **arrays)) - total) <= rtol * bound + 1e-300


@given(
    paths=path_subsets, gi=graphs(), C=st.integers(0, 8), seed=seeds, coef=st.tuples(st.floats(-3, 3), st.floats(-3, 3))
)
def test_linearity(paths, gi, C, seed, coef):
    """Each mode is linear in each of its three inputs."""
    a, b = coef
    table = make_table(paths)
    arrays = random_inputs(table, gi, C, np.float64, seed)
    other = random_inputs(table, gi, C, np.float64, seed + 1)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        for name in inputs:
            mixed = phi_grad_graph(mode, table, gi, **{**inputs, name: a * inputs[name] + b * other[name]})
            split = a * phi_grad_graph(mode, table, gi, **inputs) + b * phi_grad_graph(
                mode, table, gi, **{**inputs, name: other[name]}
            )
            assert np.allclose(mixed, split, rtol=1e-12, atol=1e-12 * (1 + np.abs(split).max(initial=0))), (mode, name)


@given(paths=path_subsets, gi=graphs(), C=st.integers(1, 10), seed=seeds)
def test_graph_form_is_per_edge_form_of_gathered_arrays(paths, gi, C, seed):
    """Modes y and w equal the per-edge product (identity graph) on h[s], g[r]; modes z and x its scatter."""
    table = make_table(paths)
    a = random_inputs(table, gi, C, np.float64, seed)
    s, r = gi.senders, gi.receivers
    edges = GraphIndex.identity(gi.num_edges)
    x, g = a["h"][s], a["g"][r]
    assert close(
        phi_grad_graph("y", table, gi, h=a["h"], w=a["w"], g=a["g"]),
        phi_grad_graph("y", table, edges, h=x, w=a["w"], g=g),
        1e-12,
    )
    assert close(
        phi_grad_graph("w", table, gi, h=a["h"], y=a["y"], g=a["g"]),
        phi_grad_graph("w", table, edges, h=x, y=a["y"], g=g),
        1e-12,
    )
    z = np.zeros((gi.num_nodes, C, table.DZ))
    np.add.at(z, r, phi_grad_graph("z", table, edges, h=x, y=a["y"], w=a["w"]))
    assert close(phi_grad_graph("z", table, gi, h=a["h"], y=a["y"], w=a["w"]), z, 1e-12)
    gx = np.zeros((gi.num_nodes, C, table.DX))
    np.add.at(gx, s, phi_grad_graph("x", table, edges, y=a["y"], w=a["w"], g=g))
    assert close(phi_grad_graph("x", table, gi, y=a["y"], w=a["w"], g=a["g"]), gx, 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_message_passing_product(dtype):
    """:class:`MessagePassingProduct` (the per-edge product of all paths up to L) and its VJPs."""
    mp = MessagePassingProduct(2, 2, 2)
    gi = GraphIndex.identity(13)
    arrays = random_inputs(mp.table, gi, 6, dtype, 1)
    x, y, w, g = (arrays[k] for k in ("h", "y", "w", "g"))
    _, grads = naive(mp.paths, gi, arrays)
    z = mp(x, y, w, threads=2)
    assert z.shape == (13, 6, mp.out_dim) and z.dtype == dtype
    assert close(z, grads["z"], RTOL[dtype])
    assert [b.shape[-1] for b in mp.split(z)] == [2 * t[2] + 1 for t in mp.paths]
    for got, mode in zip(mp.vjp(g, x, y, w), ("x", "y", "w")):
        assert close(got, grads[mode], RTOL[dtype]), mode
    with pytest.raises(ValueError, match="wrt may contain"):
        mp.vjp(g, x, y, w, wrt=("g",))
    with pytest.raises(ValueError, match=r"y has shape \(12, 9\); expected \(E, DY\) with edges E=13"):
        mp(x, y[:12], w)


# ------------------------------------------------------------------------------------------------ #
# threads, out, layouts                                                                            #
# ------------------------------------------------------------------------------------------------ #
@needs_ext
@given(paths=path_subsets, gi=graphs(max_nodes=20, max_edges=80), C=st.integers(1, 12), dtype=dtypes, seed=seeds)
def test_thread_counts_identical(paths, gi, C, dtype, seed):
    table = make_table(paths)
    arrays = random_inputs(table, gi, C, dtype, seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(graph_index, "MIN_EDGES_PER_THREAD", 1)
        for mode in MODES:
            inputs = without(arrays, ARGS[mode])
            one = phi_grad_graph(mode, table, gi, **inputs, threads=1)
            for threads in (2, 3, 7):
                assert np.array_equal(phi_grad_graph(mode, table, gi, **inputs, threads=threads), one), (mode, threads)


@needs_ext
def test_default_threads_and_large_graphs():
    """Above the per-thread threshold the default thread count splits the rows; results are bitwise equal."""
    rng = np.random.default_rng(5)
    N, E = 200, 4 * graph_index.MIN_EDGES_PER_THREAD + 3
    table = make_table(natural_paths(2))
    for gi in (
        GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N, E)), N),
        GraphIndex.identity(3 * graph_index.MIN_EDGES_PER_THREAD + 5),
    ):
        arrays = random_inputs(table, gi, 9, np.float64, 0)
        _, grads = naive(natural_paths(2), gi, arrays)
        for mode in MODES:
            inputs = without(arrays, ARGS[mode])
            one = phi_grad_graph(mode, table, gi, **inputs, threads=1)
            assert len(gi.chunks(mode, 3)) == 3
            assert np.array_equal(phi_grad_graph(mode, table, gi, **inputs, threads=3), one)
            assert np.array_equal(phi_grad_graph(mode, table, gi, **inputs), one)
            assert close(one, grads[mode], 1e-12)


@needs_ext
def test_large_outputs_streaming_path():
    """Outputs of several MB per call (mode w) go through the kernel's staging buffer and non-temporal stores."""
    table = make_table(natural_paths(3))
    gi = GraphIndex.identity(1500)
    arrays = random_inputs(table, gi, 32, np.float64, 11)
    assert arrays["w"].nbytes > 4 << 20  # above the kernel's streaming threshold
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        ref = phi_grad_graph_reference(mode, table, gi, **inputs)
        for threads in (1, 2):
            out = np.full_like(ref, np.nan)
            phi_grad_graph(mode, table, gi, **inputs, out=out, threads=threads)
            assert close(out, ref, 1e-12), (mode, threads)


def test_concurrent_callers():
    """Several Python threads may call the product at once (each splitting its own rows)."""
    from concurrent.futures import ThreadPoolExecutor

    table = make_table(natural_paths(2))
    rng = np.random.default_rng(8)
    E = 2 * graph_index.MIN_EDGES_PER_THREAD + 1
    for gi in (GraphIndex.identity(E), GraphIndex.build(rng.integers(0, 50, E), rng.integers(0, 50, E), 50)):
        arrays = random_inputs(table, gi, 5, np.float64, 8)

        def run(mode: str, threads: int, gi: GraphIndex = gi, arrays: dict = arrays) -> np.ndarray:
            return phi_grad_graph(mode, table, gi, **without(arrays, ARGS[mode]), threads=threads)

        expected = {m: run(m, 1) for m in MODES}
        with ThreadPoolExecutor(4) as pool:
            jobs = [(m, t) for m in MODES for t in (1, 2, 3)]
            results = list(pool.map(lambda mt: run(*mt), jobs))
        for (m, _), r in zip(jobs, results):
            assert np.array_equal(r, expected[m])


def test_default_threads_env(monkeypatch):
    monkeypatch.setenv(fused.THREADS_ENV, "3")
    assert fused.default_threads() == 3
    monkeypatch.setenv(fused.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="not an integer"):
        fused.default_threads()
    monkeypatch.setenv(fused.THREADS_ENV, "0")
    with pytest.raises(ValueError, match=">= 1"):
        fused.default_threads()
    monkeypatch.delenv(fused.THREADS_ENV)
    assert fused.default_threads() >= 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_is_overwritten_and_returned(dtype):
    rng = np.random.default_rng(1)
    table = make_table(natural_paths(2))
    for gi in (GraphIndex.build(rng.integers(0, 9, 50), rng.integers(0, 7, 50), 9), GraphIndex.identity(40)):
        arrays = random_inputs(table, gi, 11, dtype, 3)  # unsorted receivers, idle nodes; per-edge
        _, grads = naive(natural_paths(2), gi, arrays)
        for mode in MODES:
            inputs = without(arrays, ARGS[mode])
            for fn in BOTH:
                out = np.full_like(arrays[ARGS[mode]], np.nan)
                assert fn(mode, table, gi, **inputs, out=out) is out
                assert close(out, grads[mode], RTOL[dtype]), (mode, fn.__name__)


def test_noncontiguous_and_float16_use_reference():
    rng = np.random.default_rng(2)
    table = make_table(natural_paths(2))
    for gi in (GraphIndex.build(rng.integers(0, 6, 30), np.sort(rng.integers(0, 6, 30)), 6), GraphIndex.identity(5)):
        arrays = random_inputs(table, gi, 5, np.float64, 4)
        strided = {k: np.asfortranarray(v) for k, v in arrays.items()}
        assert not strided["h"].flags.c_contiguous
        half = {k: v.astype(np.float16) for k, v in arrays.items()}
        for mode in MODES:
            expected = phi_grad_graph(mode, table, gi, **without(arrays, ARGS[mode]))
            assert close(phi_grad_graph(mode, table, gi, **without(strided, ARGS[mode])), expected, 1e-12)
            got = phi_grad_graph(mode, table, gi, **without(half, ARGS[mode]))
            ref = phi_grad_graph_reference(
                mode, table, gi, **{k: v.astype(np.float64) for k, v in without(half, ARGS[mode]).items()}
            )
            assert got.dtype == np.float16 and close(got, expected, 2e-2) and close(got, ref, 1e-2)


def test_replaced_array_is_ignored():
    rng = np.random.default_rng(4)
    table = make_table(natural_paths(1))
    for gi in (GraphIndex.build(rng.integers(0, 5, 20), rng.integers(0, 5, 20), 5), GraphIndex.identity(9)):
        arrays = random_inputs(table, gi, 4, np.float64, 2)
        for mode in MODES:
            got = phi_grad_graph(mode, table, gi, **arrays)
            assert np.array_equal(got, phi_grad_graph(mode, table, gi, **without(arrays, ARGS[mode])))


# ------------------------------------------------------------------------------------------------ #
# errors                                                                                           #
# ------------------------------------------------------------------------------------------------ #
class FakeCupyArray:
    """Looks like a CuPy array to the module check (``type(a).__module__`` starts with 'cupy')."""

    __module__ = "cupy._core.core"

    def __init__(self, a):
        self.dtype, self.shape, self.ndim = a.dtype, a.shape, a.ndim


def test_bad_inputs_raise_clear_errors():
    gi = GraphIndex.build([0, 1, 2, 2], [0, 0, 1, 3], 4)
    table = make_table(natural_paths(1))
    a = random_inputs(table, gi, 3, np.float64, 0)
    h, y, w, g = a["h"], a["y"], a["w"], a["g"]
    for fn in BOTH:
        with pytest.raises(ValueError, match="unknown mode"):
            fn("q", table, gi, h=h, y=y, w=w)
        with pytest.raises(TypeError, match="GraphIndex"):
            fn("z", table, (gi.senders, gi.receivers), h=h, y=y, w=w)
        with pytest.raises(TypeError, match="PathTable"):
            fn("z", None, gi, h=h, y=y, w=w)
        with pytest.raises(TypeError, match="PathTable"):
            fn("z", {"paths": []}, gi, h=h, y=y, w=w)
        with pytest.raises(ValueError, match="missing: w"):
            fn("z", table, gi, h=h, y=y)
        with pytest.raises(ValueError, match=r"h has shape \(3, 3, 4\); expected \(N, C, DX\) with nodes N=4"):
            fn("z", table, gi, h=h[:3], y=y, w=w)
        with pytest.raises(ValueError, match=r"h has shape \(4, 3, 3\); expected \(N, C, DX\) with DX=4"):
            fn("z", table, gi, h=h[:, :, :3], y=y, w=w)
        with pytest.raises(ValueError, match=r"y has shape \(3, 4\); expected \(E, DY\) with edges E=4"):
            fn("z", table, gi, h=h, y=y[:3], w=w)
        with pytest.raises(ValueError, match=r"g has shape \(4, 3, 3\); expected \(N, C, DZ\) with DZ="):
            fn("x", table, gi, y=y, w=w, g=g[:, :, :3])
        with pytest.raises(ValueError, match="disagree on the number of channels C"):
            fn("y", table, gi, h=h, w=w[:, :2], g=g)
        with pytest.raises(ValueError, match="w has shape"):
            fn("x", table, gi, y=y, w=w[:, :, :2], g=g)
        with pytest.raises(ValueError, match="must have 3 dimensions"):
            fn("x", table, gi, y=y, w=w, g=g[0])
        with pytest.raises(TypeError, match="dtype mismatch"):
            fn("w", table, gi, h=h, y=y.astype(np.float32), g=g)
        with pytest.raises(TypeError, match="floating"):
            fn("z", table, gi, h=h.astype(int), y=y.astype(int), w=w.astype(int))
        with pytest.raises(TypeError, match="NumPy or CuPy array"):
            fn("z", table, gi, h=h.tolist(), y=y, w=w)
        with pytest.raises(TypeError, match="mix NumPy and CuPy"):
            fn("z", table, gi, h=h, y=FakeCupyArray(y), w=w)
        with pytest.raises(ValueError, match="out has shape"):
            fn("z", table, gi, h=h, y=y, w=w, out=np.empty_like(h))
        with pytest.raises(TypeError, match="dtype mismatch"):
            fn("z", table, gi, h=h, y=y, w=w, out=np.empty_like(g, dtype=np.float32))
        ro = np.empty_like(g)
        ro.setflags(write=False)
        with pytest.raises(ValueError, match="read-only"):
            fn("z", table, gi, h=h, y=y, w=w, out=ro)
    with pytest.raises(ValueError, match="threads"):
        phi_grad_graph("z", table, gi, h=h, y=y, w=w, threads=0)


def _ext_call(table: PathTable, gi: GraphIndex, a: dict, mode: str, out, rows=None, edges=None, **over):
    """Call the extension directly: ``over`` replaces arrays (h, y, w, g), indices or table entries."""
    from cartesian_irreps import _fused

    static = dict(
        meta=table.meta,
        coo_ptr=table.coo_ptr,
        coo_i=table.coo_i,
        coo_j=table.coo_j,
        coo_k=table.coo_k,
        coo_val=table.coo_val32 if out.dtype == np.float32 else table.coo_val64,
    )
    static.update({k: v for k, v in over.items() if k in static})
    arrs = {**a, **{k: v for k, v in over.items() if k in a}}
    args = [None if k == ARGS[mode] else arrs[k] for k in ("h", "y", "w", "g")]
    idx = {"senders": gi.senders, "receivers": gi.receivers, "order": edges, "ptr": gi.receiver_ptr}
    idx.update({k: v for k, v in over.items() if k in idx})
    lo, hi = rows if rows is not None else (0, gi.num_nodes if mode in ("z", "x") else gi.num_edges)
    code = over.get("code", MODES.index(mode))
    return _fused.phi_grad_graph(code, *args, out, *idx.values(), *static.values(), lo, hi)


@needs_ext
def test_extension_validates_arrays_and_table():
    """The C entry point checks formats, shapes, contiguity and the path table itself."""
    gi = GraphIndex.identity(6)
    table = make_table(natural_paths(1))
    a = random_inputs(table, gi, 3, np.float64, 0)
    out = np.empty_like(a["g"])
    _ext_call(table, gi, a, "z", out)
    assert close(out, naive(natural_paths(1), gi, a)[1]["z"], 1e-12)

    def call(**over):
        return _ext_call(table, gi, a, "z", over.pop("out", out), **over)

    with pytest.raises(ValueError, match="mode must be"):
        call(code=7)
    with pytest.raises(ValueError, match="dtype mismatch"):
        call(y=a["y"].astype(np.float32))
    with pytest.raises(ValueError, match="float64 or float32"):
        call(h=a["h"].astype(np.int64))
    with pytest.raises(ValueError, match="h has shape"):
        call(h=a["h"][:, :2].copy())
    with pytest.raises(ValueError, match="does not fit"):
        call(h=a["h"][:, :, :3].copy())
    with pytest.raises(ValueError, match="C-contiguous"):
        call(h=np.asfortranarray(a["h"]))
    ro = out.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="writable"):
        call(out=ro)
    with pytest.raises(ValueError, match="row range"):
        call(rows=(0, 7))
    with pytest.raises(ValueError, match="meta must be an int32"):
        call(meta=table.meta.astype(np.int64))
    bad = table.meta.copy()
    bad[0, 0] = table.DX
    with pytest.raises(ValueError, match="does not fit"):
        call(meta=bad)
    overlap = table.meta.copy()
    overlap[1, 4] = overlap[0, 4]
    with pytest.raises(ValueError, match="overlaps"):
        call(meta=overlap)
    bad_k = table.coo_k.copy()
    bad_k[0] = 5
    with pytest.raises(ValueError, match="out of range"):
        call(coo_k=bad_k)
    with pytest.raises(ValueError, match="coo_ptr"):
        call(coo_ptr=table.coo_ptr[::-1].copy())
    with pytest.raises(ValueError, match="coo_val"):
        call(coo_val=table.coo_val64.astype(np.float16))


@needs_ext
def test_extension_validates_graph_indices():
    """The C entry point checks every index it reads, whatever the caller passes."""
    rng = np.random.default_rng(0)
    N, E = 5, 12
    s = rng.integers(0, N, E).astype(np.int64)
    r = np.sort(rng.integers(0, N, E)).astype(np.int64)
    gi = GraphIndex.build(s, r, N)
    table = make_table(natural_paths(1))
    a = random_inputs(table, gi, 3, np.float64, 0)
    outs = {m: np.empty_like(a[ARGS[m]]) for m in MODES}
    grads = naive(natural_paths(1), gi, a)[1]

    def call(mode, **over):
        return _ext_call(table, gi, a, mode, outs[mode], **over)

    for mode in MODES:  # valid calls agree with the dense reference
        call(mode)
        assert close(outs[mode], grads[mode], 1e-12), mode

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
    moved = {"senders": s[shuffled], "receivers": r[shuffled], "y": a["y"][shuffled], "w": a["w"][shuffled]}
    call("z", edges=order, **moved)  # the same edges in another order: the same sums
    assert close(outs["z"], grads["z"], 1e-12)
    with pytest.raises(ValueError, match="not an edge index"):
        call("z", edges=np.full(E, E, dtype=np.int64))
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
        call("x", edges=np.arange(E - 1, dtype=np.int64))
    twice = np.arange(E, dtype=np.int64)
    twice[1] = 0
    with pytest.raises(ValueError, match="is listed twice"):
        call("x", edges=twice)
    inside = np.flatnonzero(s < 2).astype(np.int64)
    call("x", edges=inside, rows=(0, 2))
    with pytest.raises(ValueError, match="sender outside the node range"):
        call("x", edges=np.flatnonzero(s >= 2).astype(np.int64)[: len(inside)], rows=(0, 2))
    with pytest.raises(ValueError, match="row range"):
        call("y", rows=(0, E + 1))
    with pytest.raises(ValueError, match="row range"):
        call("z", rows=(2, 1))
    with pytest.raises(ValueError, match=r"h has shape \(4, 3, 4\), expected \(5, 3, 4\)"):
        call("z", h=a["h"][:4].copy())


@needs_ext
def test_extension_rows_outside_range_untouched_and_couplings_of_either_format():
    """Only rows [start, stop) are written (nodes for z and x, edges for y and w); the coupling values
    may be float32 or float64 for float32 arrays."""
    rng = np.random.default_rng(7)
    N, E = 8, 40
    table = make_table(natural_paths(2))
    for gi in (GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N, E)), N), GraphIndex.identity(10)):
        a = random_inputs(table, gi, 5, np.float32, 1)
        grads = naive(natural_paths(2), gi, a)[1]
        for mode, (lo, hi) in (("z", (2, 5)), ("x", (3, 7)), ("y", (3, 8)), ("w", (5, 6))):
            for val in (table.coo_val32, table.coo_val64):
                out = np.full_like(a[ARGS[mode]], np.nan)
                edges = np.flatnonzero((gi.senders >= lo) & (gi.senders < hi)) if mode == "x" else None
                _ext_call(table, gi, a, mode, out, rows=(lo, hi), edges=edges, coo_val=val)
                assert np.isnan(out[:lo]).all() and np.isnan(out[hi:]).all()
                assert close(out[lo:hi], grads[mode][lo:hi], 1e-5), mode


def test_imports_neither_sympy_nor_cupy():
    code = (
        "import sys, numpy as np\n"
        "from cartesian_irreps.runtime import fused\n"
        "t = fused.PathTable.from_couplings([(0, 0, 0)], [np.ones((1, 1, 1))])\n"
        "gi = fused.GraphIndex.build([0, 1, 1], [1, 0, 1], 2)\n"
        "h = np.ones((2, 3, 1)); y = np.ones((3, 1)); w = np.ones((3, 3, 1))\n"
        "z = fused.phi_grad_graph('z', t, gi, h=h, y=y, w=w)\n"
        "assert np.array_equal(fused.phi_grad_graph_reference('z', t, gi, h=h, y=y, w=w), z)\n"
        "e = fused.GraphIndex.identity(2)\n"
        "fused.phi_grad_graph_reference('y', t, e, h=h, w=np.ones((2, 3, 1)), g=h)\n"
        "assert 'sympy' not in sys.modules and 'cupy' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------ #
# CuPy                                                                                             #
# ------------------------------------------------------------------------------------------------ #
@pytest.mark.gpu
def test_cupy_reference_matches_numpy():
    cp = pytest.importorskip("cupy")
    try:
        gpus = cp.cuda.runtime.getDeviceCount()
    except cp.cuda.runtime.CUDARuntimeError:
        gpus = 0
    if gpus < 1:
        pytest.skip("no usable CUDA device")
    rng = np.random.default_rng(9)
    N, E = 30, 300
    gi = GraphIndex.build(rng.integers(0, N, E), rng.integers(0, N - 3, E), N)  # unsorted, idle nodes
    gi_dev = GraphIndex.build(cp.asarray(gi.senders), cp.asarray(gi.receivers), N)  # device indices accepted
    table = make_table(natural_paths(3))
    for graph, same in ((gi, gi), (gi_dev, gi), (GraphIndex.identity(50), GraphIndex.identity(50))):
        for dtype in (np.float64, np.float32):
            arrays = random_inputs(table, same, 16, dtype, 7)
            for mode in MODES:
                inputs = without(arrays, ARGS[mode])
                on_gpu = phi_grad_graph(mode, table, graph, **{k: cp.asarray(v) for k, v in inputs.items()})
                assert type(on_gpu).__module__.startswith("cupy") and on_gpu.dtype == dtype
                assert close(cp.asnumpy(on_gpu), phi_grad_graph(mode, table, same, **inputs), RTOL[dtype])
