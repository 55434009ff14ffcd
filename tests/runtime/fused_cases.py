"""Cases and an independent reference shared by the tests of the fused product (:mod:`cartesian_irreps.runtime.fused`).

The reference :func:`naive` evaluates ``PhiG(h, y, w, g) = Phi(h[s], y, w, g[r])`` and its four
partial gradients by dense ``np.einsum`` on explicitly gathered arrays with an ``np.add.at``
scatter, in float64, from the exact couplings and the stacked layout (offsets ``l*l``): it shares
nothing with the path table, the reference module or the kernel.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from hypothesis import strategies as st

from cartesian_irreps._validate import triples
from cartesian_irreps.runtime.fused import GraphIndex, PathTable

#: the argument whose shape each mode's output has (the one it replaces)
ARGS = {"z": "g", "x": "h", "y": "y", "w": "w"}
RTOL = {np.float64: 1e-12, np.float32: 1e-5}

dtypes = st.sampled_from([np.float64, np.float32])
seeds = st.integers(0, 2**32 - 1)


def natural_paths(L: int) -> list[tuple[int, int, int]]:
    return [t for t in triples(L) if sum(t) % 2 == 0]


path_subsets = st.integers(1, 3).flatmap(
    lambda L: st.lists(st.sampled_from(natural_paths(L)), min_size=1, max_size=len(natural_paths(L)), unique=True)
)


@cache
def exact_coupling(l1: int, l2: int, l3: int) -> np.ndarray:
    from cartesian_irreps.symbolic.coupling import derive_coupling

    c = derive_coupling(l1, l2, l3, "unit").floats()
    c.setflags(write=False)
    return c


def make_table(paths) -> PathTable:
    return PathTable.from_couplings(paths, [exact_coupling(*t) for t in paths])


def without(arrays: dict, name: str) -> dict:
    return {k: v for k, v in arrays.items() if k != name}


def close(a, b, rtol) -> bool:
    """Agreement relative to the norm of the reference."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return bool(np.linalg.norm(a - b) <= rtol * max(np.linalg.norm(b), 1e-300) + 1e-300)


@st.composite
def graphs(draw, max_nodes: int = 12, max_edges: int = 40) -> GraphIndex:
    """Random graphs: edges among the first nodes (the rest isolated), with repeats and self-loops
    likely, receivers sorted (as in a neighbour list), sorted by sender or shuffled; or the per-edge
    graph :meth:`GraphIndex.identity` (``E = N``, ``s(e) = r(e) = e``); ``E = 0`` and ``N = 0`` included."""
    if draw(st.integers(0, 3)) == 0:
        return GraphIndex.identity(draw(st.integers(0, max_edges)))
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
    return GraphIndex.build(s[idx], r[idx], N)


def random_inputs(table: PathTable, graph: GraphIndex, C: int, dtype, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    N, E = graph.num_nodes, graph.num_edges
    shapes = {"h": (N, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P), "g": (N, C, table.DZ)}
    return {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}


def naive(paths, graph: GraphIndex, arrays: dict, absolute: bool = False) -> tuple[float, dict[str, np.ndarray]]:
    """``PhiG`` and its four gradients (keyed by mode) by dense einsum in float64.

    ``absolute=True`` uses the absolute values of all couplings and arrays (a bound for rounding errors).
    """
    h, y, w, g = (np.asarray(arrays[k], dtype=np.float64) for k in ("h", "y", "w", "g"))
    if absolute:
        h, y, w, g = (np.abs(a) for a in (h, y, w, g))
    s, r = graph.senders, graph.receivers
    x, ge = h[s], g[r]
    edge = {"z": np.zeros_like(ge), "x": np.zeros_like(x), "y": np.zeros_like(y), "w": np.zeros_like(w)}
    total = 0.0
    oz = 0
    for p, (l1, l2, l3) in enumerate(paths):
        c = np.abs(exact_coupling(l1, l2, l3)) if absolute else exact_coupling(l1, l2, l3)
        xs = slice(l1 * l1, l1 * l1 + 2 * l1 + 1)
        ys = slice(l2 * l2, l2 * l2 + 2 * l2 + 1)
        zs = slice(oz, oz + 2 * l3 + 1)
        oz += 2 * l3 + 1
        xb, yb, gb, wp = x[:, :, xs], y[:, ys], ge[:, :, zs], w[:, :, p]
        total += np.einsum("ijk,eci,ej,eck,ec->", c, xb, yb, gb, wp)
        edge["z"][:, :, zs] += np.einsum("ijk,eci,ej,ec->eck", c, xb, yb, wp)
        edge["x"][:, :, xs] += np.einsum("ijk,ej,eck,ec->eci", c, yb, gb, wp)
        edge["y"][:, ys] += np.einsum("ijk,eci,eck,ec->ej", c, xb, gb, wp)
        edge["w"][:, :, p] += np.einsum("ijk,eci,ej,eck->ec", c, xb, yb, gb)
    grads = {"y": edge["y"], "w": edge["w"], "z": np.zeros_like(g), "x": np.zeros_like(h)}
    np.add.at(grads["z"], r, edge["z"])
    np.add.at(grads["x"], s, edge["x"])
    return float(total), grads
