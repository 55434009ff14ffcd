"""Tests of the fused message-passing tensor product (:mod:`cartesian_irreps.runtime.fused`).

The four modes are the partial gradients of the 4-linear form
``Phi = sum w[e,c,p] C_p[i,j,k] x[e,c,ox+i] y[e,oy+j] g[e,c,oz+k]``; they are checked against a
naive dense ``np.einsum`` written independently of the path table, against each other (the
compiled kernel vs the reference), and through the identities ``<dPhi/da, da> = Phi(a := da)``.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps._validate import triples
from cartesian_irreps.runtime import fused
from cartesian_irreps.runtime.fused import MODES, PathTable, phi, phi_grad, phi_grad_reference

ARGS = {"z": "g", "x": "x", "y": "y", "w": "w"}  # the input whose shape each mode's output has
RTOL = {np.float64: 1e-12, np.float32: 1e-5}

needs_ext = pytest.mark.skipif(not fused.extension_available(), reason="compiled kernel not built")


def natural_paths(L: int) -> list[tuple[int, int, int]]:
    return [t for t in triples(L) if sum(t) % 2 == 0]


@cache
def exact_coupling(l1: int, l2: int, l3: int) -> np.ndarray:
    from cartesian_irreps.symbolic.coupling import derive_coupling

    c = derive_coupling(l1, l2, l3, "unit").floats()
    c.setflags(write=False)
    return c


def make_table(paths) -> PathTable:
    return PathTable.from_couplings(paths, [exact_coupling(*t) for t in paths])


def random_inputs(table: PathTable, E: int, C: int, dtype, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"x": (E, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P), "g": (E, C, table.DZ)}
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def without(arrays: dict, name: str) -> dict:
    return {k: v for k, v in arrays.items() if k != name}


def close(a, b, rtol) -> bool:
    """Agreement relative to the norm of the reference."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return bool(np.linalg.norm(a - b) <= rtol * max(np.linalg.norm(b), 1e-300) + 1e-300)


def naive(paths, x, y, w, g, absolute: bool = False) -> tuple[float, dict[str, np.ndarray]]:
    """Phi and its four gradients by dense einsum, in float64, with offsets l*l and contiguous outputs.

    ``absolute=True`` uses the absolute values of all couplings and arrays (a bound for rounding errors).
    """
    x, y, w, g = (np.asarray(a, dtype=np.float64) for a in (x, y, w, g))
    if absolute:
        x, y, w, g = (np.abs(a) for a in (x, y, w, g))
    grads = {"z": np.zeros_like(g), "x": np.zeros_like(x), "y": np.zeros_like(y), "w": np.zeros_like(w)}
    total = 0.0
    oz = 0
    for p, (l1, l2, l3) in enumerate(paths):
        c = np.abs(exact_coupling(l1, l2, l3)) if absolute else exact_coupling(l1, l2, l3)
        xs = slice(l1 * l1, l1 * l1 + 2 * l1 + 1)
        ys = slice(l2 * l2, l2 * l2 + 2 * l2 + 1)
        zs = slice(oz, oz + 2 * l3 + 1)
        oz += 2 * l3 + 1
        xb, yb, gb, wp = x[:, :, xs], y[:, ys], g[:, :, zs], w[:, :, p]
        total += np.einsum("ijk,eci,ej,eck,ec->", c, xb, yb, gb, wp)
        grads["z"][:, :, zs] += np.einsum("ijk,eci,ej,ec->eck", c, xb, yb, wp)
        grads["x"][:, :, xs] += np.einsum("ijk,ej,eck,ec->eci", c, yb, gb, wp)
        grads["y"][:, ys] += np.einsum("ijk,eci,eck,ec->ej", c, xb, gb, wp)
        grads["w"][:, :, p] += np.einsum("ijk,eci,ej,eck->ec", c, xb, yb, gb)
    return float(total), grads


path_subsets = st.integers(1, 3).flatmap(
    lambda L: st.lists(st.sampled_from(natural_paths(L)), min_size=1, max_size=len(natural_paths(L)), unique=True)
)
dtypes = st.sampled_from([np.float64, np.float32])
sizes = st.tuples(st.integers(0, 24), st.integers(0, 19))  # (E, C): C covers partial channel blocks
seeds = st.integers(0, 2**32 - 1)


# ------------------------------------------------------------------------------------------------ #
# the compiled kernel against the reference                                                        #
# ------------------------------------------------------------------------------------------------ #
def test_extension_is_built_here():
    """In this repository the extension is built; elsewhere the module still works without it."""
    pytest.importorskip("cartesian_irreps._fused", reason="compiled kernel not built (no C compiler at install)")
    assert fused.extension_available()


@needs_ext
@given(paths=path_subsets, size=sizes, dtype=dtypes, seed=seeds)
def test_kernel_matches_reference(paths, size, dtype, seed):
    table = make_table(paths)
    arrays = random_inputs(table, *size, dtype, seed)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        fast = phi_grad(mode, table, **inputs, threads=1)
        ref = phi_grad_reference(mode, table, **inputs)
        assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape == arrays[ARGS[mode]].shape
        assert close(fast, ref, RTOL[dtype]), mode


@needs_ext
def test_kernel_full_natural_lists_and_large_channels():
    """All natural paths for L = 1..3, with C a multiple of the channel block and not."""
    for L in (1, 2, 3):
        table = make_table(natural_paths(L))
        for C, dtype in ((32, np.float64), (37, np.float32), (8, np.float64)):
            arrays = random_inputs(table, 17, C, dtype, L * C)
            for mode in MODES:
                inputs = without(arrays, ARGS[mode])
                fast = phi_grad(mode, table, **inputs, threads=1)
                assert close(fast, phi_grad_reference(mode, table, **inputs), RTOL[dtype]), (L, C, mode)


# ------------------------------------------------------------------------------------------------ #
# the reference against a naive dense einsum, and the defining identities                          #
# ------------------------------------------------------------------------------------------------ #
@given(paths=path_subsets, size=sizes, seed=seeds)
def test_reference_matches_dense_einsum(paths, size, seed):
    table = make_table(paths)
    arrays = random_inputs(table, *size, np.float64, seed)
    _, grads = naive(paths, **arrays)
    for mode in MODES:
        ref = phi_grad_reference(mode, table, **without(arrays, ARGS[mode]))
        assert close(ref, grads[mode], 1e-12), mode


@given(paths=path_subsets, size=sizes, dtype=dtypes, seed=seeds)
def test_gradient_identities(paths, size, dtype, seed):
    """<dPhi/da, a> = Phi and <dPhi/da, da> = Phi(a := da) for every argument a, on both code paths."""
    table = make_table(paths)
    arrays = random_inputs(table, *size, dtype, seed)
    other = random_inputs(table, *size, dtype, seed + 1)
    total, _ = naive(paths, **arrays)
    rtol = {np.float64: 1e-11, np.float32: 1e-4}[dtype]
    for mode in MODES:
        a = ARGS[mode]
        shifted = {**arrays, a: other[a]}
        shifted_total, _ = naive(paths, **shifted)
        # rounding bound: Phi with every coupling and array entry replaced by its absolute value
        bound = max(naive(paths, **arrays, absolute=True)[0], naive(paths, **shifted, absolute=True)[0])
        for fn in (phi_grad, phi_grad_reference):
            grad = fn(mode, table, **without(arrays, a)).astype(np.float64)
            assert abs(np.sum(grad * arrays[a]) - total) <= rtol * bound, (mode, fn.__name__)
            assert abs(np.sum(grad * other[a]) - shifted_total) <= rtol * bound, (mode, fn.__name__)
    bound = naive(paths, **arrays, absolute=True)[0]
    assert abs(float(phi(table, **arrays)) - total) <= rtol * bound


@given(paths=path_subsets, size=sizes, seed=seeds, coef=st.tuples(st.floats(-3, 3), st.floats(-3, 3)))
def test_linearity(paths, size, seed, coef):
    """Each mode is linear in each of its three inputs."""
    a, b = coef
    table = make_table(paths)
    arrays = random_inputs(table, *size, np.float64, seed)
    other = random_inputs(table, *size, np.float64, seed + 1)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        for name in inputs:
            mixed = phi_grad(mode, table, **{**inputs, name: a * inputs[name] + b * other[name]})
            split = a * phi_grad(mode, table, **inputs) + b * phi_grad(mode, table, **{**inputs, name: other[name]})
            assert np.allclose(mixed, split, rtol=1e-12, atol=1e-12 * (1 + np.abs(split).max(initial=0))), (mode, name)


# ------------------------------------------------------------------------------------------------ #
# threads, out, layouts                                                                            #
# ------------------------------------------------------------------------------------------------ #
@needs_ext
@given(paths=path_subsets, E=st.integers(0, 60), C=st.integers(1, 12), dtype=dtypes, seed=seeds)
def test_thread_chunks_identical(paths, E, C, dtype, seed):
    table = make_table(paths)
    arrays = random_inputs(table, E, C, dtype, seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "MIN_EDGES_PER_THREAD", 1)
        for mode in MODES:
            inputs = without(arrays, ARGS[mode])
            one = phi_grad(mode, table, **inputs, threads=1)
            for threads in (2, 3, 7):
                assert np.array_equal(phi_grad(mode, table, **inputs, threads=threads), one), (mode, threads)


@needs_ext
def test_thread_chunks_large_default_threshold():
    table = make_table(natural_paths(2))
    arrays = random_inputs(table, 3 * fused.MIN_EDGES_PER_THREAD + 5, 9, np.float64, 0)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        one = phi_grad(mode, table, **inputs, threads=1)
        assert np.array_equal(phi_grad(mode, table, **inputs, threads=4), one)
        assert np.array_equal(phi_grad(mode, table, **inputs), one)


@needs_ext
def test_large_outputs_streaming_path():
    """Outputs of several MB per call go through the kernel's staging buffer and non-temporal stores."""
    table = make_table(natural_paths(3))
    arrays = random_inputs(table, 1500, 32, np.float64, 11)
    assert arrays["x"].nbytes > 4 << 20  # above the kernel's streaming threshold for modes z, x, w
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        ref = phi_grad_reference(mode, table, **inputs)
        for threads in (1, 2):
            out = np.full_like(ref, np.nan)
            phi_grad(mode, table, **inputs, out=out, threads=threads)
            assert close(out, ref, 1e-12), (mode, threads)


def test_edge_chunks():
    assert fused._edge_chunks(0, 4) == [(0, 0)]
    assert fused._edge_chunks(100, 4) == [(0, 100)]
    n = fused.MIN_EDGES_PER_THREAD
    chunks = fused._edge_chunks(10 * n + 3, 4)
    assert len(chunks) == 4 and chunks[0][0] == 0 and chunks[-1][1] == 10 * n + 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))


def test_concurrent_callers():
    """Several Python threads may call phi_grad at once (each splitting its own edge range)."""
    from concurrent.futures import ThreadPoolExecutor

    table = make_table(natural_paths(2))
    arrays = random_inputs(table, 2 * fused.MIN_EDGES_PER_THREAD + 1, 5, np.float64, 8)
    expected = {m: phi_grad(m, table, **without(arrays, ARGS[m]), threads=1) for m in MODES}
    with ThreadPoolExecutor(4) as pool:
        jobs = [(m, t) for m in MODES for t in (1, 2, 3)]
        results = list(pool.map(lambda mt: phi_grad(mt[0], table, **without(arrays, ARGS[mt[0]]), threads=mt[1]), jobs))
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
    table = make_table(natural_paths(2))
    arrays = random_inputs(table, 40, 11, dtype, 3)
    for mode in MODES:
        inputs = without(arrays, ARGS[mode])
        out = np.full_like(arrays[ARGS[mode]], np.nan)
        res = phi_grad(mode, table, **inputs, out=out)
        assert res is out
        assert close(out, phi_grad_reference(mode, table, **inputs), RTOL[dtype])
        out2 = np.full_like(out, np.nan)
        assert phi_grad_reference(mode, table, **inputs, out=out2) is out2
        assert close(out2, out, RTOL[dtype])


def test_noncontiguous_inputs_use_reference_and_agree():
    table = make_table(natural_paths(2))
    arrays = random_inputs(table, 30, 6, np.float64, 5)
    strided = {k: np.asfortranarray(v) for k, v in arrays.items()}
    assert not strided["x"].flags.c_contiguous
    for mode in MODES:
        assert close(
            phi_grad(mode, table, **without(strided, ARGS[mode])),
            phi_grad(mode, table, **without(arrays, ARGS[mode])),
            1e-12,
        )


def test_float16_runs_on_reference():
    table = make_table(natural_paths(1))
    arrays = random_inputs(table, 5, 3, np.float16, 1)
    out = phi_grad("z", table, **without(arrays, "g"))
    assert out.dtype == np.float16
    ref = phi_grad_reference("z", table, **{k: v.astype(np.float64) for k, v in without(arrays, "g").items()})
    assert close(out, ref, 1e-2)


def test_replaced_array_is_ignored():
    table = make_table(natural_paths(1))
    arrays = random_inputs(table, 9, 4, np.float64, 2)
    for mode in MODES:
        assert np.array_equal(phi_grad(mode, table, **arrays), phi_grad(mode, table, **without(arrays, ARGS[mode])))


def test_path_table_layout():
    paths = natural_paths(3)
    table = make_table(paths)
    assert (table.P, table.DX, table.DY, table.DZ) == (23, 16, 16, sum(2 * t[2] + 1 for t in paths))
    assert table.z_slices[0] == slice(0, 1) and table.z_slices[-1].stop == table.DZ
    assert table.meta.dtype == np.int32 and table.meta.shape == (23, 6)
    assert table.coo_val32.dtype == np.float32 and table.coo_val64.dtype == np.float64
    assert table.nnz == sum(int(np.count_nonzero(exact_coupling(*t))) for t in paths)
    for p, (l1, l2, l3) in enumerate(paths):
        ox, dx, oy, dy, _, dz = table.meta[p]
        assert (ox, dx, oy, dy, dz) == (l1 * l1, 2 * l1 + 1, l2 * l2, 2 * l2 + 1, 2 * l3 + 1)
        a, b = table.coo_ptr[p], table.coo_ptr[p + 1]
        dense = np.zeros((dx, dy, dz))
        dense[table.coo_i[a:b], table.coo_j[a:b], table.coo_k[a:b]] = table.coo_val64[a:b]
        assert np.array_equal(dense, exact_coupling(l1, l2, l3))
    with pytest.raises(ValueError):
        table.meta[0, 0] = 1  # read-only


def test_path_table_custom_offsets():
    """Blocks of x and y in another order, and wider arrays; results follow the layout."""
    paths = [(1, 1, 0), (2, 1, 1), (1, 2, 1)]
    xo, yo = {2: 0, 1: 6}, {1: 0, 2: 4}
    table = PathTable.from_couplings(paths, [exact_coupling(*t) for t in paths], xo, yo, dx=12)
    assert (table.DX, table.DY, table.DZ) == (12, 9, 7)
    std = make_table(paths)
    arrays = random_inputs(std, 11, 5, np.float64, 9)
    x = np.zeros((11, 5, 12))
    x[:, :, 6:9] = arrays["x"][:, :, 1:4]
    x[:, :, 0:5] = arrays["x"][:, :, 4:9]
    y = np.zeros((11, 9))
    y[:, 0:3] = arrays["y"][:, 1:4]
    y[:, 4:9] = arrays["y"][:, 4:9]
    custom = {"x": x, "y": y, "w": arrays["w"], "g": arrays["g"]}
    for fn in (phi_grad, phi_grad_reference):
        assert close(fn("z", table, **without(custom, "g")), fn("z", std, **without(arrays, "g")), 1e-12)
        assert close(fn("w", table, **without(custom, "w")), fn("w", std, **without(arrays, "w")), 1e-12)
        gx = fn("x", table, **without(custom, "x"))
        assert np.all(gx[:, :, 5] == 0) and np.all(gx[:, :, 9:] == 0)
        assert close(gx[:, :, 6:9], fn("x", std, **without(arrays, "x"))[:, :, 1:4], 1e-12)


def test_path_table_errors():
    c = exact_coupling(1, 1, 2)
    with pytest.raises(ValueError, match="at least one path"):
        PathTable.from_couplings([], [])
    with pytest.raises(ValueError, match="2 paths but 1"):
        PathTable.from_couplings([(1, 1, 2), (0, 0, 0)], [c])
    with pytest.raises(ValueError, match="shape"):
        PathTable.from_couplings([(1, 1, 1)], [c])
    with pytest.raises(ValueError, match="triangle"):
        PathTable.from_couplings([(0, 1, 2)], [np.zeros((1, 3, 5))])
    with pytest.raises(ValueError, match="no offset for rank"):
        PathTable.from_couplings([(1, 1, 2)], [c], x_offsets={0: 0})
    with pytest.raises(ValueError, match="overlap"):
        PathTable.from_couplings([(1, 1, 2)], [c], x_offsets={0: 0, 1: 0})
    with pytest.raises(ValueError, match="smaller than the layout"):
        PathTable.from_couplings([(1, 1, 2)], [c], dx=2)
    with pytest.raises(ValueError, match="NaN"):
        PathTable.from_couplings([(1, 1, 2)], [np.full_like(c, np.nan)])


# ------------------------------------------------------------------------------------------------ #
# errors                                                                                           #
# ------------------------------------------------------------------------------------------------ #
class FakeCupyArray:
    """Looks like a CuPy array to the module check (``type(a).__module__`` starts with 'cupy')."""

    __module__ = "cupy._core.core"

    def __init__(self, a):
        self.dtype, self.shape, self.ndim = a.dtype, a.shape, a.ndim


def test_bad_inputs_raise_clear_errors():
    table = make_table(natural_paths(1))
    arrays = random_inputs(table, 6, 3, np.float64, 0)
    x, y, w, g = arrays["x"], arrays["y"], arrays["w"], arrays["g"]
    for fn in (phi_grad, phi_grad_reference):
        with pytest.raises(ValueError, match="unknown mode"):
            fn("q", table, x=x, y=y, w=w)
        with pytest.raises(ValueError, match="missing: w"):
            fn("z", table, x=x, y=y)
        with pytest.raises(TypeError, match="PathTable"):
            fn("z", {"paths": []}, x=x, y=y, w=w)
        with pytest.raises(ValueError, match=r"x has shape \(6, 3, 3\); expected \(E, C, DX\) with DX=4"):
            fn("z", table, x=x[:, :, :3], y=y, w=w)
        with pytest.raises(ValueError, match=r"disagree on the number of edges E \(x: \(6, 3, 4\), y: \(5, 4\)"):
            fn("z", table, x=x, y=y[:5], w=w)
        with pytest.raises(ValueError, match="disagree on the number of channels C"):
            fn("x", table, y=y, w=w[:, :2], g=g)
        with pytest.raises(ValueError, match="w has shape"):
            fn("x", table, y=y, w=w[:, :, :2], g=g)
        with pytest.raises(ValueError, match="must have 3 dimensions"):
            fn("x", table, y=y, w=w, g=g[0])
        with pytest.raises(TypeError, match="dtype mismatch"):
            fn("z", table, x=x.astype(np.float32), y=y, w=w)
        with pytest.raises(TypeError, match="floating"):
            fn("z", table, x=x.astype(int), y=y.astype(int), w=w.astype(int))
        with pytest.raises(TypeError, match="NumPy or CuPy array"):
            fn("z", table, x=x.tolist(), y=y, w=w)
        with pytest.raises(TypeError, match="mix NumPy and CuPy"):
            fn("z", table, x=x, y=FakeCupyArray(y), w=w)
        with pytest.raises(ValueError, match="out has shape"):
            fn("z", table, x=x, y=y, w=w, out=np.empty_like(x))
        with pytest.raises(TypeError, match="dtype mismatch"):
            fn("z", table, x=x, y=y, w=w, out=np.empty_like(g, dtype=np.float32))
        ro = np.empty_like(g)
        ro.setflags(write=False)
        with pytest.raises(ValueError, match="read-only"):
            fn("z", table, x=x, y=y, w=w, out=ro)
    with pytest.raises(ValueError, match="threads"):
        phi_grad("z", table, x=x, y=y, w=w, threads=0)


@needs_ext
def test_extension_validates_arguments():
    from cartesian_irreps import _fused

    table = make_table(natural_paths(1))
    a = random_inputs(table, 6, 3, np.float64, 0)
    static = (table.meta, table.coo_ptr, table.coo_i, table.coo_j, table.coo_k, table.coo_val64)
    out = np.empty_like(a["g"])
    _fused.phi_grad(0, a["x"], a["y"], a["w"], None, out, *static, 0, 6)
    assert close(out, phi_grad_reference("z", table, **without(a, "g")), 1e-12)

    def call(mode=0, e=(0, 6), **over):
        arrs = {"x": a["x"], "y": a["y"], "w": a["w"], "g": None, "out": out, **over}
        st_ = dict(zip(("meta", "ptr", "i", "j", "k", "val"), static))
        st_.update({k: v for k, v in over.items() if k in st_})
        _fused.phi_grad(mode, arrs["x"], arrs["y"], arrs["w"], arrs["g"], arrs["out"], *st_.values(), *e)

    with pytest.raises(ValueError, match="mode must be"):
        call(mode=7)
    with pytest.raises(ValueError, match="dtype mismatch"):
        call(y=a["y"].astype(np.float32))
    with pytest.raises(ValueError, match="float64 or float32"):
        call(x=a["x"].astype(np.int64))
    with pytest.raises(ValueError, match="x has shape"):
        call(x=a["x"][:, :2].copy())
    with pytest.raises(ValueError, match="does not fit"):
        call(x=a["x"][:, :, :3].copy())
    with pytest.raises(ValueError, match="C-contiguous"):
        call(x=np.asfortranarray(a["x"]))
    with pytest.raises(ValueError, match="writable"):
        ro = out.copy()
        ro.setflags(write=False)
        call(out=ro)
    with pytest.raises(ValueError, match="edge range"):
        call(e=(0, 7))
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
        call(k=bad_k)
    with pytest.raises(ValueError, match="coo_ptr"):
        call(ptr=table.coo_ptr[::-1].copy())
    with pytest.raises(ValueError, match="coo_val"):
        call(val=table.coo_val64.astype(np.float16))


@needs_ext
def test_extension_edge_range_and_float32_couplings():
    """Only rows [e_start, e_stop) are written; coo_val may be float32 for float32 arrays."""
    from cartesian_irreps import _fused

    table = make_table(natural_paths(2))
    a = random_inputs(table, 10, 9, np.float32, 4)
    static = (table.meta, table.coo_ptr, table.coo_i, table.coo_j, table.coo_k)
    ref = phi_grad_reference("y", table, **without(a, "y"))
    for val in (table.coo_val32, table.coo_val64):
        out = np.full_like(a["y"], np.nan)
        _fused.phi_grad(2, a["x"], None, a["w"], a["g"], out, *static, val, 3, 8)
        assert np.isnan(out[:3]).all() and np.isnan(out[8:]).all()
        assert close(out[3:8], ref[3:8], 1e-5)


def test_no_sympy_or_cupy_import():
    code = (
        "import sys, numpy as np\n"
        "from cartesian_irreps.runtime import fused\n"
        "t = fused.PathTable.from_couplings([(0, 0, 0)], [np.ones((1, 1, 1))])\n"
        "x = np.ones((2, 3, 1)); fused.phi_grad('z', t, x=x, y=np.ones((2, 1)), w=np.ones((2, 3, 1)))\n"
        "fused.phi_grad_reference('y', t, x=x, w=np.ones((2, 3, 1)), g=x)\n"
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
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no GPU")
    except cp.cuda.runtime.CUDARuntimeError:
        pytest.skip("no usable CUDA device")
    table = make_table(natural_paths(3))
    for dtype in (np.float64, np.float32):
        arrays = random_inputs(table, 50, 16, dtype, 7)
        for mode in MODES:
            inputs = without(arrays, ARGS[mode])
            on_gpu = phi_grad(mode, table, **{k: cp.asarray(v) for k, v in inputs.items()})
            assert type(on_gpu).__module__.startswith("cupy") and on_gpu.dtype == dtype
            assert close(cp.asnumpy(on_gpu), phi_grad_reference(mode, table, **inputs), RTOL[dtype])
