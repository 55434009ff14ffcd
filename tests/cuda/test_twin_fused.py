"""The generated fused graph kernels, compiled as C (the twin), against the NumPy reference.

Random path sets (even, odd and both parities), random graphs (unsorted, empty, with isolated nodes
and self-loops), float32 and float64, all four modes; the same source text NVRTC compiles.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesian_irreps.runtime.cuda import kernels
from cartesian_irreps.runtime.fused import GraphIndex, phi_grad_graph, phi_grad_graph_reference

from .conftest import assert_close, needs_cc, path_table

pytestmark = needs_cc

REPLACED = {"z": "g", "x": "h", "y": "y", "w": "w"}


def _inputs(table, graph, C, dtype, rng):
    N, E = graph.num_nodes, graph.num_edges
    return {
        "h": rng.standard_normal((N, C, table.DX)).astype(dtype),
        "y": rng.standard_normal((E, table.DY)).astype(dtype),
        "w": rng.standard_normal((E, C, table.P)).astype(dtype),
        "g": rng.standard_normal((N, C, table.DZ)).astype(dtype),
    }


@st.composite
def graphs(draw):
    N = draw(st.integers(1, 9))
    E = draw(st.integers(0, 25))
    senders = draw(st.lists(st.integers(0, N - 1), min_size=E, max_size=E))
    # receivers avoid the last node half of the time: isolated nodes
    top = N - 1 if N > 1 and draw(st.booleans()) else N
    receivers = draw(st.lists(st.integers(0, top - 1), min_size=E, max_size=E))
    if draw(st.booleans()):
        receivers = sorted(receivers)
    return GraphIndex.build(np.array(senders, dtype=np.int64), np.array(receivers, dtype=np.int64), N)


@settings(max_examples=25, deadline=None)
@given(
    graph=graphs(),
    lmax=st.integers(0, 3),
    l1_max=st.integers(0, 2),
    parity=st.sampled_from(["even", "odd", "both"]),
    C=st.integers(1, 4),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**31 - 1),
)
def test_twin_equals_the_reference(graph, lmax, l1_max, parity, C, dtype, seed):
    l1_max = min(l1_max, lmax)
    try:
        table = path_table(l1_max, lmax, parity)
    except ValueError:  # no odd path at this size
        table = path_table(l1_max, lmax, "even")
    arrays = _inputs(table, graph, C, dtype, np.random.default_rng(seed))
    for mode, replaced in REPLACED.items():
        used = {k: v for k, v in arrays.items() if k != replaced}
        want = phi_grad_graph_reference(mode, table, graph, **used)
        got = kernels.phi_grad_graph(mode, table, graph, **used)
        assert_close(got, want, dtype)


def test_empty_graph_and_isolated_nodes_give_zero_rows():
    table = path_table(1, 2, "both")
    graph = GraphIndex.build(np.zeros(0, np.int64), np.zeros(0, np.int64), 3)
    arrays = _inputs(table, graph, 2, np.float64, np.random.default_rng(0))
    z = kernels.phi_grad_graph("z", table, graph, h=arrays["h"], y=arrays["y"], w=arrays["w"])
    assert z.shape == (3, 2, table.DZ) and not z.any()
    gy = kernels.phi_grad_graph("y", table, graph, h=arrays["h"], w=arrays["w"], g=arrays["g"])
    assert gy.shape == (0, table.DY)
    graph = GraphIndex.build(np.array([0, 1]), np.array([1, 1]), 4)
    arrays = _inputs(table, graph, 2, np.float64, np.random.default_rng(1))
    z = kernels.phi_grad_graph("z", table, graph, h=arrays["h"], y=arrays["y"], w=arrays["w"])
    assert not z[[0, 2, 3]].any() and z[1].any()
    gx = kernels.phi_grad_graph("x", table, graph, y=arrays["y"], w=arrays["w"], g=arrays["g"])
    assert not gx[[2, 3]].any() and gx[0].any()


def test_twin_equals_the_compiled_cpu_kernel_on_a_large_graph():
    rng = np.random.default_rng(3)
    N, E, C = 60, 700, 8
    graph = GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N, E)), N)
    table = path_table(2, 3, "both")
    arrays = _inputs(table, graph, C, np.float64, rng)
    for mode, replaced in REPLACED.items():
        used = {k: v for k, v in arrays.items() if k != replaced}
        assert_close(
            kernels.phi_grad_graph(mode, table, graph, **used), phi_grad_graph(mode, table, graph, **used), np.float64
        )


def test_bad_input_gets_the_cpu_errors():
    table = path_table(1, 1, "even")
    graph = GraphIndex.build(np.array([0, 1]), np.array([1, 0]), 2)
    arrays = _inputs(table, graph, 2, np.float64, np.random.default_rng(0))
    cases = [
        ({**arrays, "h": arrays["h"][:, :, :-1]}, ValueError, "DX"),
        ({**arrays, "w": arrays["w"].astype(np.float32)}, TypeError, "dtype mismatch"),
        ({**arrays, "y": arrays["y"][:1]}, ValueError, "edges E"),
        ({**arrays, "h": arrays["h"][:, :1]}, ValueError, "channels C"),
    ]
    for bad, exc, match in cases:
        used = {k: v for k, v in bad.items() if k != "g"}
        with pytest.raises(exc, match=match) as cpu:
            phi_grad_graph("z", table, graph, **used)
        with pytest.raises(exc, match=match) as twin:
            kernels.phi_grad_graph("z", table, graph, **used)
        assert str(cpu.value) == str(twin.value)
    with pytest.raises(ValueError, match="unknown mode"):
        kernels.phi_grad_graph("q", table, graph, **arrays)
    with pytest.raises(ValueError, match="missing: g"):
        kernels.phi_grad_graph("w", table, graph, h=arrays["h"], y=arrays["y"])


def test_the_twin_catches_an_indexing_error():
    """A kernel that skips each node's last received edge (an off-by-one in the CSR loop) is caught."""
    from cartesian_irreps.generator.cuda import CudaSource
    from cartesian_irreps.runtime.cuda.ctwin import CTwin

    table = path_table(1, 2, "both")
    rng = np.random.default_rng(5)
    graph = GraphIndex.build(rng.integers(0, 5, 30), np.sort(rng.integers(0, 5, 30)), 5)
    arrays = _inputs(table, graph, 3, np.float64, rng)
    good = kernels.fused_source(table)
    broken = CudaSource(good.text.replace("q < ptr[n + 1]", "q < ptr[n + 1] - 1"), good.kernels)
    assert broken.text != good.text
    out = np.empty((5, 3, table.DZ))
    order = np.arange(30, dtype=np.int64)
    CTwin(broken, np.float64).launch(
        "fused_z", arrays["h"], arrays["y"], arrays["w"], out, out, graph.senders, graph.receivers, order,
        np.ascontiguousarray(graph.receiver_ptr), 5, 30, 3,
    )  # fmt: skip
    want = phi_grad_graph_reference("z", table, graph, h=arrays["h"], y=arrays["y"], w=arrays["w"])
    with pytest.raises(AssertionError):
        assert_close(out, want, np.float64)
