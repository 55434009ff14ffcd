"""The graph-form message product as an autodiff op (:class:`mlip.equivariant.GraphMessageProduct`).

First and second derivatives against finite differences (float64, the checkers of tests/autodiff),
every mode's VJP, and equality with the unfused chain ``index_select -> per-edge product ->
segment_sum`` (the per-edge product being the op on ``GraphIndex.identity(E)``, with the gather and
the sum done by the autodiff ops) for values, gradients, Hessian-vector products and a force-training loss.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.fused import GraphIndex, PathTable
from mlip import autodiff as ad
from mlip.equivariant import (
    GraphMessageProduct,
    edge_harmonics,
    graph_message_product,
)

from ..autodiff.test_higher_order import check_hvp, hvp
from ..autodiff.test_ops import assert_close, check_vjp

seeds = st.integers(0, 2**32 - 1)
#: the argument each mode replaces
REPLACED = {"z": "g", "x": "h", "y": "y", "w": "w"}


@cache
def model_table(first_layer: bool) -> PathTable:
    """The message paths of the model's layers at lmax = 2: node ranks 0..0 (first) or 0..1 (second)."""
    l1s = (0,) if first_layer else (0, 1)
    paths = [
        (l1, l2, l3)
        for l1 in l1s
        for l2 in range(3)
        for l3 in range(abs(l1 - l2), min(l1 + l2, 2) + 1)
        if (l1 + l2 + l3) % 2 == 0
    ]
    return PathTable.from_couplings(paths, [tables.dense_coupling(*p) for p in paths])


@st.composite
def small_graphs(draw) -> GraphIndex:
    """A few nodes (one possibly isolated), edges sorted by receiver or not, repeats and self-loops allowed."""
    n = draw(st.integers(2, 4))
    e = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(seeds))
    s, r = rng.integers(0, n, e), rng.integers(0, n - 1, e)
    if draw(st.booleans()):
        order = np.argsort(r, kind="stable")
        s, r = s[order], r[order]
    return GraphIndex.build(s, r, n)


def inputs(table: PathTable, graph: GraphIndex, C: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    N, E = graph.num_nodes, graph.num_edges
    shapes = {"h": (N, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P), "g": (N, C, table.DZ)}
    return {k: rng.standard_normal(s) for k, s in shapes.items()}


def unfused(table: PathTable, graph: GraphIndex, h: ad.Tensor, y: ad.Tensor, w: ad.Tensor) -> ad.Tensor:
    """``segment_sum(per-edge product(index_select(h, s), y, w), r, N)``."""
    xe = ad.index_select(h, graph.senders)
    per_edge = graph_message_product(table, GraphIndex.identity(graph.num_edges), xe, y, w)
    return ad.segment_sum(per_edge, graph.receivers, graph.num_nodes)


# ------------------------------------------------------------------------------------------------ #
# derivatives against finite differences                                                           #
# ------------------------------------------------------------------------------------------------ #
@given(graph=small_graphs(), first=st.booleans(), C=st.integers(1, 3), seed=seeds)
def test_first_derivatives_of_every_mode(graph, first, C, seed):
    """The VJP of each mode with respect to each of its three inputs, against finite differences."""
    table = model_table(first)
    a = inputs(table, graph, C, seed)
    for mode, replaced in REPLACED.items():
        names = [n for n in ("h", "y", "w", "g") if n != replaced]

        def f(*ts, mode=mode):
            return GraphMessageProduct.apply(*ts, mode=mode, table=table, graph=graph)

        check_vjp(f, [a[n] for n in names], seed)


@given(graph=small_graphs(), first=st.booleans(), C=st.integers(1, 3), seed=seeds)
def test_second_derivatives(graph, first, C, seed):
    """Gradient and Hessian-vector products of a non-linear function of the aggregated messages."""
    table = model_table(first)
    a = inputs(table, graph, C, seed)
    weight = np.random.default_rng(seed + 3).standard_normal((graph.num_nodes, C, table.DZ))

    def f(h, y, w):
        agg = graph_message_product(table, graph, h, y, w)
        return ad.sum(ad.tanh(agg) * weight) + ad.sum(agg * agg) * 0.1

    check_hvp(f, [a["h"], a["y"], a["w"]], seed)


@given(graph=small_graphs(), C=st.integers(1, 3), seed=seeds)
def test_second_derivatives_with_strided_inputs(graph, C, seed):
    """Transposed (non-contiguous) h, y, w: the op copies them once and its VJPs reuse the copies."""
    table = model_table(False)
    a = inputs(table, graph, C, seed)
    leaves = [np.ascontiguousarray(a["h"].transpose(2, 1, 0)), np.ascontiguousarray(a["y"].T)]
    leaves.append(np.ascontiguousarray(a["w"].transpose(2, 1, 0)))
    weight = np.random.default_rng(seed + 5).standard_normal((graph.num_nodes, C, table.DZ))

    def f(hT, yT, wT):
        h, y, w = ad.transpose(hT, (2, 1, 0)), ad.transpose(yT, (1, 0)), ad.transpose(wT, (2, 1, 0))
        assert not (h.data.flags.c_contiguous or w.data.flags.c_contiguous) or min(h.shape + w.shape) == 1
        return ad.sum(ad.sin(graph_message_product(table, graph, h, y, w)) * weight)

    check_hvp(f, leaves, seed)


# ------------------------------------------------------------------------------------------------ #
# the fused op equals the gather -> product -> scatter chain                                        #
# ------------------------------------------------------------------------------------------------ #
@given(graph=small_graphs(), first=st.booleans(), C=st.integers(1, 9), seed=seeds)
def test_equals_unfused_chain(graph, first, C, seed):
    table = model_table(first)
    a = inputs(table, graph, C, seed)
    ts = [ad.tensor(a[n], requires_grad=True) for n in ("h", "y", "w")]
    fused_out = graph_message_product(table, graph, *ts)
    chain_out = unfused(table, graph, *ts)
    assert_close(fused_out.data, chain_out.data, 1e-12)

    def loss(op):
        return lambda h, y, w: ad.sum(ad.sin(op(table, graph, h, y, w)))

    grads_f = ad.grad(loss(graph_message_product)(*ts), ts)
    grads_c = ad.grad(loss(unfused)(*ts), ts)
    for gf, gc in zip(grads_f, grads_c):
        assert_close(gf.data, gc.data, 1e-12)
    vs = [np.random.default_rng(seed + 1).standard_normal(t.shape) for t in ts]
    xs = [a[n] for n in ("h", "y", "w")]
    for hf, hc in zip(hvp(loss(graph_message_product), xs, vs), hvp(loss(unfused), xs, vs)):
        assert_close(hf, hc, 1e-11)


@given(seed=seeds, first=st.booleans())
def test_force_training_loss_matches_chain(seed, first):
    """y from edge vectors; forces = -dE/dvectors (create_graph); d(sum forces^2)/d(h, w) both ways."""
    table = model_table(first)
    rng = np.random.default_rng(seed)
    N, E, C = 5, 14, 4
    s = rng.integers(0, N, E)
    r = np.sort(rng.integers(0, N, E))
    graph = GraphIndex.build(s, r, N)
    vec = rng.uniform(-2.0, 2.0, (E, 3))
    vec[np.abs(vec).sum(1) < 0.3] += 1.0
    h0, w0 = rng.standard_normal((N, C, table.DX)), rng.standard_normal((E, C, table.P))
    scale = rng.standard_normal((N, C, table.DZ))

    def loss(op):
        h, w = ad.tensor(h0, requires_grad=True), ad.tensor(w0, requires_grad=True)
        v = ad.tensor(vec, requires_grad=True)
        y = edge_harmonics(v, 2)
        energy = ad.sum(ad.tanh(op(table, graph, h, y, w)) * scale)
        (dv,) = ad.grad(energy, [v], create_graph=True)
        return [g.data for g in ad.grad(ad.sum(dv * dv), [h, w])]

    for gf, gc in zip(loss(graph_message_product), loss(unfused)):
        assert_close(gf, gc, 1e-11)


def test_unsorted_receivers_and_isolated_nodes():
    """Receivers in any order (the GraphIndex sorts them) and nodes without edges (zero rows)."""
    table = model_table(False)
    rng = np.random.default_rng(0)
    N, E, C = 7, 30, 5
    graph = GraphIndex.build(rng.integers(0, N - 2, E), rng.integers(0, N - 2, E), N)
    assert graph.receiver_order is not None
    a = inputs(table, graph, C, 1)
    ts = [ad.tensor(a[n], requires_grad=True) for n in ("h", "y", "w")]
    out = graph_message_product(table, graph, *ts)
    assert_close(out.data, unfused(table, graph, *ts).data, 1e-12)
    assert not out.data[N - 2 :].any()
    (gh, _, _) = ad.grad(ad.sum(out * out), ts)
    assert not gh.data[N - 2 :].any()


def test_noncontiguous_weights_slice():
    """The model passes a slice of the radial weights (not C-contiguous): the op copies it."""
    table = model_table(True)
    rng = np.random.default_rng(2)
    N, E, C = 4, 9, 3
    graph = GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N, E)), N)
    a = inputs(table, graph, C, 3)
    wide = ad.tensor(rng.standard_normal((E, C, table.P + 2)), requires_grad=True)
    w = wide[:, :, 1 : 1 + table.P]
    assert not w.data.flags.c_contiguous
    out = graph_message_product(table, graph, a["h"], a["y"], w)
    assert_close(out.data, unfused(table, graph, ad.constant(a["h"]), ad.constant(a["y"]), w).data, 1e-12)
    (gw,) = ad.grad(ad.sum(out), [wide])
    assert gw.shape == wide.shape and not gw.data[:, :, 0].any()
