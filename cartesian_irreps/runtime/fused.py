"""Fused message-passing tensor product with per-edge, per-channel, per-path weights, and its gradients.

Paths ``p = 0..P-1`` (a :class:`PathTable`) have ranks ``(l1, l2, l3)`` and dense coupling tensors
``C_p`` of shape ``(2l1+1, 2l2+1, 2l3+1)``.  With a graph (a :class:`GraphIndex`: senders ``s(e)``,
receivers ``r(e)``, ``N`` nodes, ``E`` edges) and

* ``h``: ``(N, C, DX)`` node features; path ``p`` reads ``h[s(e), c, ox_p : ox_p + 2l1+1]``,
* ``y``: ``(E, DY)`` edge harmonics shared by all channels; path ``p`` reads ``y[e, oy_p : oy_p + 2l2+1]``,
* ``w``: ``(E, C, P)`` weights,
* ``g``: ``(N, C, DZ)`` output-side node array; path ``p`` owns ``g[r(e), c, oz_p : oz_p + 2l3+1]``
  (``DZ = sum_p (2l3+1)``, blocks contiguous in path order, ``oz_0 = 0``),

the 4-linear form is::

    PhiG(h, y, w, g) = sum_e sum_{c,p,i,j,k} w[e,c,p] C_p[i,j,k] h[s(e),c,ox_p+i] y[e,oy_p+j] g[r(e),c,oz_p+k]

i.e. ``Phi(h[s], y, w, g[r])`` with the per-edge form ``Phi(x, y, w, g) = sum w C_p x y g``, and
:func:`phi_grad_graph` returns one of its partial gradients, chosen by ``mode``:

* ``"z"``: ``dPhiG/dg``, shape ``(N, C, DZ)``: ``out[n] = sum_{e: r(e)=n} z_e`` (the aggregated messages,
  ``z_e[c, oz_p+k] = w[e,c,p] sum_ij C_p[i,j,k] h[s(e),c,ox_p+i] y[e,oy_p+j]``);
* ``"x"``: ``dPhiG/dh``, shape ``(N, C, DX)``: ``out[n] = sum_{e: s(e)=n} (dPhi/dx)_e`` (paths that
  read the same block of ``h`` add up);
* ``"y"``: ``dPhiG/dy``, shape ``(E, DY)`` (summed over channels too); ``"w"``: ``dPhiG/dw``, shape ``(E, C, P)``.

Every derivative of the product (of any order) is again one of these four modes with other
arguments, e.g. the vector-Jacobian product of mode ``"x"`` with respect to ``g``, contracted
with ``v``, is mode ``"z"`` with ``h := v``.  Identity: ``sum(phi_grad_graph(a, ...) * a) == PhiG``
for every ``a`` in ``h, y, w, g``.

**Per-edge product.**  On :meth:`GraphIndex.identity` (``N = E``, ``s(e) = r(e) = e``) the node
arrays are edge arrays and the modes are the per-edge partial gradients of ``Phi(x, y, w, g)``:
the forward product ``z (E, C, DZ)`` and its gradients, with nothing gathered or summed.

NumPy inputs (C-contiguous, one dtype of float32/float64) run on the compiled kernel
``cartesian_irreps._fused`` when it was built, split over threads (the kernel releases the
GIL); CuPy arrays run the generated CUDA kernel (:mod:`cartesian_irreps.runtime.cuda.kernels`);
anything else (strided views, other float dtypes, no compiler at install time) runs on
:func:`phi_grad_graph_reference` (:mod:`.fused_reference`), written with the array module of the
inputs. :mod:`cartesian_irreps.runtime.kernel_backend` selects a backend explicitly.  CuPy is never
imported unless a CuPy array is passed in; SymPy is never imported.

The compiled kernel works without materialising the ``(E, C, D)`` gathers or per-edge products.
It splits the output rows between threads at row boundaries (nodes for ``"z"`` and ``"x"``,
balanced by edge counts; edges for ``"y"`` and ``"w"``), so no two threads write one row.  Mode
``"z"`` walks the nodes in receiver order, accumulates the edges of a node in scratch and writes
its row once; mode ``"x"`` walks the edges of its sender range in receiver order (reusing the
loaded rows of ``g``), accumulates into scratch rows of the range and writes each row once.  The
thread split and edge lists are cached on the :class:`GraphIndex`.

This module holds the argument checks, the dispatch to the kernel and the public entry points;
:mod:`.path_table`, :mod:`.graph_index` and :mod:`.fused_reference` hold the rest (re-exported here).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .backend import THREADS_ENV, array_module, default_threads, is_cupy, run_parallel
from .fused_reference import graph_reference
from .graph_index import GraphIndex
from .kernel_backend import choose
from .path_table import PathTable

try:  # the compiled kernel is optional (setup.py declares it optional=True)
    from .. import _fused as _ext
except ImportError:  # pragma: no cover - exercised only where no compiler was available
    _ext = None

__all__ = [
    "MODES",
    "THREADS_ENV",
    "GraphIndex",
    "PathTable",
    "default_threads",
    "extension_available",
    "phi_grad_graph",
    "phi_grad_graph_reference",
    "phi_graph",
]

#: the four modes, in the kernel's numbering (0, 1, 2, 3)
MODES: tuple[str, ...] = ("z", "x", "y", "w")

#: the arguments, in the kernel's order (node features are ``h``)
_GRAPH_ARGS = ("h", "y", "w", "g")
#: the argument that each mode replaces (its gradient has that argument's shape)
_GRAPH_REPLACED = {"z": "g", "x": "h", "y": "y", "w": "w"}


def extension_available() -> bool:
    """Whether the compiled kernel ``cartesian_irreps._fused`` was built and imports."""
    return _ext is not None


# --------------------------------------------------------------------------------------------
# validation


def _module_and_dtype(named: dict[str, Any]) -> tuple[ModuleType, np.dtype]:
    """The array module (NumPy or CuPy, never mixed, one GPU) and the common real float dtype."""
    for name, a in named.items():
        if not (isinstance(a, np.ndarray) or is_cupy(a)):
            raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}")
    if len({is_cupy(a) for a in named.values()}) > 1:
        listing = ", ".join(f"{n}: {'CuPy' if is_cupy(a) else 'NumPy'}" for n, a in named.items())
        raise TypeError(f"inputs mix NumPy and CuPy arrays ({listing}); move them to one device")
    xp = array_module(*named.values())  # CuPy: all on one GPU
    dtypes = {np.dtype(a.dtype) for a in named.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{n}: {a.dtype}" for n, a in named.items())
        raise TypeError(f"dtype mismatch ({listing}); all arrays must share one float dtype")
    dtype = dtypes.pop()
    if dtype.kind != "f":
        raise TypeError(f"arrays have dtype {dtype}; expected a real floating dtype (float32 or float64)")
    return xp, dtype


def _check_mode(mode: str, table: PathTable) -> None:
    """``mode`` is one of :data:`MODES` and ``table`` a :class:`PathTable`."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(map(repr, MODES))}")
    if not isinstance(table, PathTable):
        raise TypeError(f"table must be a PathTable, got {type(table).__name__}")


def _used_arrays(mode: str, arrays: dict[str, Any], replaced: str) -> dict[str, Any]:
    """The three arrays that ``mode`` reads (all but ``replaced``); ValueError if one is missing."""
    used = {name: a for name, a in arrays.items() if name != replaced}
    missing = [name for name, a in used.items() if a is None]
    if missing:
        raise ValueError(f"mode {mode!r} needs {', '.join(used)}; missing: {', '.join(missing)}")
    return used


def _check_last_axes(used: dict[str, Any], table: PathTable, meaning: dict[str, str], sizes: dict[str, str]) -> None:
    """Number of dimensions and last-axis sizes (``sizes[name]`` names DX, DY, P or DZ) against the table."""
    values = {"DX": table.DX, "DY": table.DY, "P": table.P, "DZ": table.DZ}
    for name, a in used.items():
        ndim = meaning[name].count(",") + 1
        if a.ndim != ndim:
            raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(a.shape)}")
    for name, a in used.items():
        what = sizes[name]
        if a.shape[-1] != values[what]:
            raise ValueError(
                f"{name} has shape {tuple(a.shape)}; expected {meaning[name]} with {what}={values[what]} from the table"
            )


def _check_out(out: Any, want: tuple[int, ...], mode: str, xp: ModuleType) -> None:
    """``out`` (if given) has the output shape ``want`` and is writable."""
    if out is not None:
        if tuple(out.shape) != want:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {want} for mode {mode!r}")
        if xp is np and not out.flags.writeable:
            raise ValueError("out is read-only")


def _graph_output_shape(mode: str, table: PathTable, N: int, E: int, C: int) -> tuple[int, ...]:
    """Shape of the output of mode ``mode``: that of ``g``, ``h``, ``y`` or ``w``."""
    return {"z": (N, C, table.DZ), "x": (N, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P)}[mode]


def _prepare_graph(
    mode: str, table: PathTable, graph: GraphIndex, arrays: dict[str, Any], out: Any
) -> tuple[ModuleType, dict[str, Any], int, np.dtype]:
    """Check the arguments of the graph form; return the array module, the used inputs, ``C`` and the dtype."""
    _check_mode(mode, table)
    if not isinstance(graph, GraphIndex):
        raise TypeError(f"graph must be a GraphIndex (see GraphIndex.build), got {type(graph).__name__}")
    used = _used_arrays(mode, arrays, _GRAPH_REPLACED[mode])
    xp, dtype = _module_and_dtype(dict(used) if out is None else {**used, "out": out})
    meaning = {"h": "(N, C, DX)", "y": "(E, DY)", "w": "(E, C, P)", "g": "(N, C, DZ)"}
    _check_last_axes(used, table, meaning, {"h": "DX", "y": "DY", "w": "P", "g": "DZ"})
    N, E = graph.num_nodes, graph.num_edges
    for name, a in used.items():
        rows, what = (N, "nodes N") if name in ("h", "g") else (E, "edges E")
        if a.shape[0] != rows:
            raise ValueError(
                f"{name} has shape {tuple(a.shape)}; expected {meaning[name]} with {what}={rows} from the graph"
            )
    channels = {name: int(a.shape[1]) for name, a in used.items() if name != "y"}
    if len(set(channels.values())) > 1:
        listing = ", ".join(f"{n}: {tuple(used[n].shape)}" for n in channels)
        raise ValueError(f"inputs disagree on the number of channels C ({listing})")
    C = next(iter(channels.values()))
    _check_out(out, _graph_output_shape(mode, table, N, E, C), mode, xp)
    return xp, used, C, dtype


# --------------------------------------------------------------------------------------------
# the compiled kernel


def _run_graph_kernel(
    mode: str, table: PathTable, graph: GraphIndex, used: dict[str, Any], out: np.ndarray, threads: int
) -> None:
    """Call the compiled graph kernel on the row chunks of ``graph``, the first in this thread."""
    code = MODES.index(mode)
    val = table.coo_val32 if out.dtype == np.float32 else table.coo_val64
    args = [used.get(name) for name in _GRAPH_ARGS]
    ptr = graph.receiver_ptr if mode == "z" else None
    static = (table.meta, table.coo_ptr, table.coo_i, table.coo_j, table.coo_k, val)

    def call(lo: int, hi: int, edges: np.ndarray | None) -> None:
        _ext.phi_grad_graph(code, *args, out, graph.senders, graph.receivers, edges, ptr, *static, lo, hi)

    run_parallel(call, graph.chunks(mode, threads))


# --------------------------------------------------------------------------------------------
# public entry points


def phi_grad_graph(
    mode: str,
    table: PathTable,
    graph: GraphIndex,
    h: Any = None,
    y: Any = None,
    w: Any = None,
    g: Any = None,
    out: Any = None,
    threads: int | None = None,
) -> Any:
    """One partial gradient of the graph form ``PhiG(h, y, w, g)`` (see the module docstring).

    With ``s = graph.senders``, ``r = graph.receivers``, ``PhiG = Phi(h[s], y, w, g[r])``::

        PhiG = sum_e sum_{c,p,i,j,k} w[e,c,p] C_p[i,j,k] h[s(e),c,ox_p+i] y[e,oy_p+j] g[r(e),c,oz_p+k]

    Shapes: ``h (N, C, DX)``, ``y (E, DY)``, ``w (E, C, P)``, ``g (N, C, DZ)`` with ``N, E`` from
    ``graph``.  ``mode`` picks the output and the argument it replaces (not read):

    * ``"z"`` (replaces ``g``): ``(N, C, DZ)``,
      ``out[n,c,oz+k] = sum_{e: r(e)=n} w[e,c,p] sum_ij C_p[i,j,k] h[s(e),c,ox+i] y[e,oy+j]``;
    * ``"x"`` (replaces ``h``): ``(N, C, DX)``,
      ``out[n,c,ox+i] = sum_{e: s(e)=n} sum_p w[e,c,p] sum_jk C_p[i,j,k] y[e,oy+j] g[r(e),c,oz+k]``;
    * ``"y"``: ``(E, DY)``, ``out[e,oy+j] = sum_{c,p} w[e,c,p] sum_ik C_p[i,j,k] h[s(e),c,ox+i] g[r(e),c,oz+k]``;
    * ``"w"``: ``(E, C, P)``, ``out[e,c,p] = sum_ijk C_p[i,j,k] h[s(e),c,ox+i] y[e,oy+j] g[r(e),c,oz+k]``.

    Nodes that no edge reaches get zero rows.  The backend is chosen by
    :func:`cartesian_irreps.runtime.kernel_backend.choose`: CuPy inputs run the generated CUDA kernel
    (:mod:`cartesian_irreps.runtime.cuda.kernels`); NumPy float32/float64 C-contiguous inputs use the
    compiled kernel when it is built, on ``threads`` threads (default :func:`default_threads`) split
    at node (``"z"``, ``"x"``) or edge (``"y"``, ``"w"``) boundaries; anything else (strided, other
    dtypes, ``use_backend("reference")``) uses :func:`phi_grad_graph_reference`.  ``out``, if given,
    must have the output shape and dtype; it is overwritten and returned.
    """
    arrays = {"h": h, "y": y, "w": w, "g": g}
    xp, used, C, dtype = _prepare_graph(mode, table, graph, arrays, out)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    backend = choose("fused message product", next(iter(used.values())), _ext is not None).name
    if backend in ("cuda", "cuda-twin"):  # the generated CUDA kernel (on NumPy input: its C twin)
        from .cuda.kernels import phi_grad_graph_checked

        return phi_grad_graph_checked(mode, table, graph, xp, used, C, dtype, out)
    if backend == "reference":
        return graph_reference(mode, table, graph, xp, used, C, dtype, out)
    fast = (
        _ext is not None
        and xp is np
        and dtype in (np.dtype(np.float32), np.dtype(np.float64))
        and all(a.flags.c_contiguous for a in used.values())
        and (out is None or out.flags.c_contiguous)
    )
    if not fast:
        return graph_reference(mode, table, graph, xp, used, C, dtype, out)
    if threads is None:
        threads = default_threads()
    if out is None:
        out = np.empty(_graph_output_shape(mode, table, graph.num_nodes, graph.num_edges, C), dtype=dtype)
    _run_graph_kernel(mode, table, graph, used, out, int(threads))
    return out


def phi_grad_graph_reference(
    mode: str,
    table: PathTable,
    graph: GraphIndex,
    h: Any = None,
    y: Any = None,
    w: Any = None,
    g: Any = None,
    out: Any = None,
) -> Any:
    """Reference for :func:`phi_grad_graph` with the array module of the inputs (NumPy or CuPy).

    Same arguments and checks; gathers ``x = h[s]`` and ``ge = g[r]`` (``take``), applies the per-edge
    formulas of :mod:`.fused_reference` and, for ``"z"`` / ``"x"``, sums the ``(E, C, D)`` result onto
    the receivers / senders (on :meth:`GraphIndex.identity` nothing is gathered or summed).  Memory
    ``O(E C D)``.
    """
    arrays = {"h": h, "y": y, "w": w, "g": g}
    xp, used, C, dtype = _prepare_graph(mode, table, graph, arrays, out)
    return graph_reference(mode, table, graph, xp, used, C, dtype, out)


def phi_graph(table: PathTable, graph: GraphIndex, h: Any, y: Any, w: Any, g: Any) -> Any:
    """The scalar ``PhiG(h, y, w, g) = sum(z * g)``, ``z = phi_grad_graph("z", ...)``, as a 0-d array."""
    xp, _, _, _ = _prepare_graph("x", table, graph, {"h": None, "y": y, "w": w, "g": g}, None)
    z = phi_grad_graph("z", table, graph, h=h, y=y, w=w)
    if type(z) is not type(g) or z.dtype != g.dtype:
        raise TypeError(f"g ({type(g).__name__}, {g.dtype}) does not match h, y, w ({type(z).__name__}, {z.dtype})")
    return xp.sum(z * g)
