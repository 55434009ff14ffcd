"""The NumPy/CuPy reference of the fused product, written with the array module of the inputs.

It computes the graph form ``PhiG(h, y, w, g) = Phi(h[s], y, w, g[r])`` (see :mod:`.fused`) the plain
way: gather ``x = h[s]`` and ``ge = g[r]`` (``take``), apply the per-edge formulas of the four modes
and, for modes ``"z"`` and ``"x"``, sum the ``(E, C, D)`` result onto the receivers / senders (on
NumPy by ``add.reduceat`` over the runs of the sorted order of the graph, on CuPy by
``scatter_add``).  On :meth:`GraphIndex.identity` nothing is gathered or summed.  Memory
``O(E C D)``; computed in the dtype of the inputs.  The arguments are checked by :mod:`.fused`.

Per path ``p``, with ``M[e,i,k] = sum_j C_p[i,j,k] y[e,oy+j]`` and ``w_p = w[:, :, p]``:

* ``"z"``: ``z[:, :, oz:oz+dz] = w_p[..., None] * (x[:, :, ox:ox+dx] @ M)``;
* ``"x"``: ``gx[:, :, ox:ox+dx] += (w_p[..., None] * ge[:, :, oz:oz+dz]) @ M^T``;
* ``"w"``: ``gw[:, :, p] = sum_k (x[:, :, ox:ox+dx] @ M)[..., k] * ge[:, :, oz+k]``;
* ``"y"``: ``T[e,i,k] = sum_c w_p x[e,c,ox+i] ge[e,c,oz+k]``, ``gy[e, oy+j] += sum_ik C_p[i,j,k] T[e,i,k]``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .graph_index import GraphIndex
from .path_table import PathTable

__all__ = ["graph_reference"]


def _edge_shape(mode: str, table: PathTable, E: int, C: int) -> tuple[int, ...]:
    """Shape of the per-edge result of ``mode``: that of ``g``, ``x`` (gathered), ``y`` or ``w``."""
    return {"z": (E, C, table.DZ), "x": (E, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P)}[mode]


def _edge_products(
    mode: str, table: PathTable, xp: ModuleType, edge: dict[str, Any], E: int, C: int, dtype: np.dtype
) -> Any:
    """The per-edge formulas (module docstring) on edge arrays ``x (E, C, DX)``, ``y``, ``w``, ``g (E, C, DZ)``."""
    res = xp.zeros(_edge_shape(mode, table, E, C), dtype=dtype)
    dense = table.dense_couplings(xp, dtype)
    x, y, w, g = (edge.get(name) for name in ("x", "y", "w", "g"))
    for p, cp in enumerate(dense):
        d1, d2, d3 = cp.shape
        xs, ys, zs = table.x_slices[p], table.y_slices[p], table.z_slices[p]
        if mode == "y":
            xw = x[:, :, xs] * w[:, :, p, None]  # (E, C, d1)
            T = xp.matmul(xw.transpose(0, 2, 1), g[:, :, zs])  # (E, d1, d3)
            cjt = cp.transpose(0, 2, 1).reshape(d1 * d3, d2)
            res[:, ys] += T.reshape(E, d1 * d3) @ cjt
            continue
        # M[e, i, k] = sum_j C[i, j, k] y[e, oy + j]
        M = (y[:, ys] @ cp.transpose(1, 0, 2).reshape(d2, d1 * d3)).reshape(E, d1, d3)
        if mode == "z":
            res[:, :, zs] = xp.matmul(x[:, :, xs], M) * w[:, :, p, None]
        elif mode == "x":
            res[:, :, xs] += xp.matmul(g[:, :, zs] * w[:, :, p, None], M.transpose(0, 2, 1))
        else:  # "w"
            res[:, :, p] = (xp.matmul(x[:, :, xs], M) * g[:, :, zs]).sum(axis=-1)
    return res


def _segment_sum(
    xp: ModuleType, values: Any, index: Any, order: np.ndarray | None, ptr: np.ndarray, num_nodes: int
) -> Any:
    """``out[n] = sum_{e: index[e] = n} values[e]``, ``(N, ...)``; ``order``/``ptr`` sort ``index`` (NumPy)."""
    res = xp.zeros((num_nodes, *values.shape[1:]), dtype=values.dtype)
    if values.shape[0] == 0:
        return res
    if xp is np:
        ordered = values if order is None else values[order]
        nonempty = np.flatnonzero(ptr[1:] > ptr[:-1])
        res[nonempty] = np.add.reduceat(ordered, ptr[nonempty], axis=0)
        return res
    import cupyx

    if hasattr(cupyx, "scatter_add"):
        cupyx.scatter_add(res, index, values)
    else:  # pragma: no cover - newer CuPy: ufunc.at
        xp.add.at(res, index, values)
    return res


def graph_reference(
    mode: str,
    table: PathTable,
    graph: GraphIndex,
    xp: ModuleType,
    used: dict[str, Any],
    C: int,
    dtype: np.dtype,
    out: Any,
) -> Any:
    """Mode ``mode`` of ``PhiG`` on the checked inputs ``used`` (names ``h, y, w, g``) by the reference.

    The per-edge formulas on ``x = h[s]``, ``g[r]``, summed onto the nodes for modes ``"z"`` (by
    receiver) and ``"x"`` (by sender).  Writes into ``out`` when given (and returns it).
    """
    identity = graph.is_identity
    s, r = (None, None) if identity else graph.indices(xp)
    edge: dict[str, Any] = {name: used[name] for name in ("y", "w") if name in used}
    if "h" in used:
        edge["x"] = used["h"] if identity else xp.take(used["h"], s, axis=0)
    if "g" in used:
        edge["g"] = used["g"] if identity else xp.take(used["g"], r, axis=0)
    res = _edge_products(mode, table, xp, edge, graph.num_edges, C, dtype)
    if mode == "z" and not identity:
        res = _segment_sum(xp, res, r, graph.receiver_order, graph.receiver_ptr, graph.num_nodes)
    elif mode == "x" and not identity:
        res = _segment_sum(xp, res, s, graph.sender_order, graph.sender_ptr, graph.num_nodes)
    if out is None:
        return res
    out[...] = res
    return out
