"""Fused message-passing tensor product with per-edge, per-channel, per-path weights, and its gradients.

Paths ``p = 0..P-1`` have ranks ``(l1, l2, l3)`` and dense coupling tensors ``C_p`` of shape
``(2l1+1, 2l2+1, 2l3+1)``.  With

* ``x``: ``(E, C, DX)`` node features on edges; path ``p`` reads ``x[e, c, ox_p : ox_p + 2l1+1]``,
* ``y``: ``(E, DY)`` edge harmonics shared by all channels; path ``p`` reads ``y[e, oy_p : oy_p + 2l2+1]``,
* ``w``: ``(E, C, P)`` weights,
* ``g``: ``(E, C, DZ)`` output-side array; path ``p`` owns ``g[e, c, oz_p : oz_p + 2l3+1]``
  (``DZ = sum_p (2l3+1)``, blocks contiguous in path order, ``oz_0 = 0``),

the 4-linear form is::

    Phi(x, y, w, g) = sum_{e,c,p,i,j,k} w[e,c,p] C_p[i,j,k] x[e,c,ox_p+i] y[e,oy_p+j] g[e,c,oz_p+k]

and :func:`phi_grad` returns one of its partial gradients, chosen by ``mode``:

* ``"z"``: ``dPhi/dg``, the forward product ``z[e,c,oz_p+k] = w[e,c,p] sum_ij C_p[i,j,k] x[e,c,ox_p+i] y[e,oy_p+j]``
  (shape of ``g``);
* ``"x"``: ``dPhi/dx`` (shape of ``x``; paths that read the same block of ``x`` add up);
* ``"y"``: ``dPhi/dy`` (shape of ``y``; summed over channels too);
* ``"w"``: ``dPhi/dw`` (shape of ``w``).

Every derivative of the product (of any order) is again one of these four modes with other
arguments, e.g. the vector-Jacobian product of mode ``"x"`` with respect to ``g``, contracted
with ``h``, is mode ``"z"`` with ``x := h``.  Identity: ``sum(phi_grad(a, ...) * a) == Phi`` for
every ``a`` in ``x, y, w, g``.

NumPy inputs (C-contiguous, one dtype of float32/float64) run on the compiled kernel
``cartesian_irreps._fused`` when it was built, split over threads (the kernel releases the
GIL); anything else (CuPy arrays, strided views, other float dtypes, no compiler at install
time) runs on :func:`phi_grad_reference`, written with the array module of the inputs.
CuPy is never imported unless a CuPy array is passed in; SymPy is never imported.

**Graph form.**  In message passing, ``x`` is gathered from node features and the product is
summed onto the receiving nodes.  With node arrays ``h (N, C, DX)`` and ``g (N, C, DZ)``, edge
arrays ``y (E, DY)`` and ``w (E, C, P)``, senders ``s(e)`` and receivers ``r(e)`` (a
:class:`GraphIndex`)::

    PhiG(h, y, w, g) = sum_e sum_{c,p,i,j,k} w[e,c,p] C_p[i,j,k] h[s(e),c,ox_p+i] y[e,oy_p+j] g[r(e),c,oz_p+k]

i.e. ``Phi(h[s], y, w, g[r])``.  :func:`phi_grad_graph` returns its partial gradients (on the
compiled kernel without materialising the ``(E, C, D)`` gathers or per-edge products):

* ``"z"``: ``dPhiG/dg``, shape ``(N, C, DZ)``: ``out[n] = sum_{e: r(e)=n} z_e`` (the aggregated messages);
* ``"x"``: ``dPhiG/dh``, shape ``(N, C, DX)``: ``out[n] = sum_{e: s(e)=n} (dPhi/dx)_e``;
* ``"y"``: ``dPhiG/dy``, shape ``(E, DY)``; ``"w"``: ``dPhiG/dw``, shape ``(E, C, P)``.

The compiled kernel splits the output rows between threads at row boundaries (nodes for ``"z"``
and ``"x"``, balanced by edge counts; edges for ``"y"`` and ``"w"``), so no two threads write one
row.  Mode ``"z"`` walks the nodes in receiver order, accumulates the edges of a node in scratch
and writes its row once; mode ``"x"`` walks the edges of its sender range in receiver order
(reusing the loaded rows of ``g``), accumulates into scratch rows of the range and writes each
row once.  The thread split and edge lists are cached on the :class:`GraphIndex`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .._validate import check_triple
from .backend import THREADS_ENV, default_threads, run_parallel

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
    "phi",
    "phi_grad",
    "phi_grad_graph",
    "phi_grad_graph_reference",
    "phi_grad_reference",
    "phi_graph",
]

#: the four modes, in the kernel's numbering (0, 1, 2, 3)
MODES: tuple[str, ...] = ("z", "x", "y", "w")
#: fewer edges than this per thread are not worth a thread hand-off
MIN_EDGES_PER_THREAD = 512

_ARG_NAMES = ("x", "y", "w", "g")
#: the input that each mode replaces (its gradient has that input's shape)
_REPLACED = {"z": "g", "x": "x", "y": "y", "w": "w"}


def extension_available() -> bool:
    """Whether the compiled kernel ``cartesian_irreps._fused`` was built and imports."""
    return _ext is not None


# --------------------------------------------------------------------------------------------
# path table


def _stacked_offsets(ranks: Sequence[int]) -> dict[int, int]:
    """Offsets of the stacked layout (rank ``l`` starts at ``l*l``) for ranks ``0..max(ranks)``."""
    return {l: l * l for l in range(max(ranks) + 1)}


def _check_offsets(offsets: Mapping[int, int], used: Sequence[int], which: str) -> dict[int, int]:
    """Validate a rank -> offset mapping: every used rank present, offsets >= 0, blocks disjoint."""
    out: dict[int, int] = {}
    for l, off in offsets.items():
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or l < 0:
            raise ValueError(f"{which}_offsets keys must be non-negative integer ranks, got {l!r}")
        if isinstance(off, bool) or not isinstance(off, (int, np.integer)) or off < 0:
            raise ValueError(f"{which}_offsets[{l}] must be a non-negative integer, got {off!r}")
        out[int(l)] = int(off)
    missing = sorted(set(used) - set(out))
    if missing:
        raise ValueError(f"{which}_offsets has no offset for rank(s) {missing} used by the paths")
    blocks = sorted((off, off + 2 * l + 1, l) for l, off in out.items())
    for (_, end_a, la), (start_b, _, lb) in itertools.pairwise(blocks):
        if start_b < end_a:
            raise ValueError(f"{which}_offsets: the blocks of ranks {la} and {lb} overlap")
    return out


@dataclass(frozen=True, eq=False)
class PathTable:
    """Static description of the paths: layout offsets, dense and COO couplings.

    Build it with :meth:`from_couplings`.  Attributes:

    * ``paths``: the ``(l1, l2, l3)`` of every path; ``P = len(paths)``;
    * ``couplings``: dense float64 ``C_p`` of shape ``(2l1+1, 2l2+1, 2l3+1)`` (read-only);
    * ``meta``: int32 ``(P, 6)`` rows ``(ox, dx, oy, dy, oz, dz)`` (block offsets and sizes in
      ``x``, ``y`` and ``g``/``z``);
    * ``coo_ptr``: int32 ``(P+1,)``; the nonzeros of ``C_p`` are entries ``coo_ptr[p]:coo_ptr[p+1]``
      of ``coo_i, coo_j, coo_k`` (int32) and ``coo_val64`` / ``coo_val32`` (float64 / float32);
    * ``DX, DY, DZ``: last-axis sizes of ``x``, ``y`` and ``g``;
    * ``x_slices, y_slices, z_slices``: per-path slices of the last axis of ``x``, ``y``, ``g``.
    """

    paths: tuple[tuple[int, int, int], ...]
    couplings: tuple[np.ndarray, ...]
    meta: np.ndarray
    coo_ptr: np.ndarray
    coo_i: np.ndarray
    coo_j: np.ndarray
    coo_k: np.ndarray
    coo_val64: np.ndarray
    coo_val32: np.ndarray
    DX: int
    DY: int
    DZ: int
    x_slices: tuple[slice, ...]
    y_slices: tuple[slice, ...]
    z_slices: tuple[slice, ...]
    _device_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def P(self) -> int:
        """Number of paths."""
        return len(self.paths)

    @property
    def nnz(self) -> int:
        """Total number of nonzero coupling entries."""
        return int(self.coo_ptr[-1])

    @classmethod
    def from_couplings(
        cls,
        paths: Sequence[tuple[int, int, int]],
        couplings: Sequence[np.ndarray],
        x_offsets: Mapping[int, int] | None = None,
        y_offsets: Mapping[int, int] | None = None,
        *,
        dx: int | None = None,
        dy: int | None = None,
    ) -> PathTable:
        """Build the table from the path ranks and their dense couplings.

        ``x_offsets`` / ``y_offsets`` map a rank ``l`` to the start of its block (of size
        ``2l+1``) on the last axis of ``x`` / ``y``; by default the stacked layout ``l -> l*l``
        for ``l = 0..max``, so ``DX = (max l1 + 1)^2`` and ``DY = (max l2 + 1)^2``.  Otherwise
        ``DX = max(offset + 2l + 1)`` over the mapping; ``dx`` / ``dy`` may enlarge it.  The
        output blocks are laid out contiguously in path order: ``oz_p = sum_{q<p} (2 l3_q + 1)``.
        """
        paths = [check_triple(*t) for t in paths]
        couplings = list(couplings)
        if not paths:
            raise ValueError("at least one path is needed")
        if len(paths) != len(couplings):
            raise ValueError(f"{len(paths)} paths but {len(couplings)} coupling tensors")
        l1s = [t[0] for t in paths]
        l2s = [t[1] for t in paths]
        xo = _check_offsets(_stacked_offsets(l1s) if x_offsets is None else x_offsets, l1s, "x")
        yo = _check_offsets(_stacked_offsets(l2s) if y_offsets is None else y_offsets, l2s, "y")
        DX = max(off + 2 * l + 1 for l, off in xo.items())
        DY = max(off + 2 * l + 1 for l, off in yo.items())
        for name, given, minimum in (("dx", dx, DX), ("dy", dy, DY)):
            if given is not None and given < minimum:
                raise ValueError(f"{name}={given} is smaller than the layout needs ({minimum})")
        DX = DX if dx is None else int(dx)
        DY = DY if dy is None else int(dy)

        dense: list[np.ndarray] = []
        meta = np.zeros((len(paths), 6), dtype=np.int32)
        ptr = [0]
        ii: list[np.ndarray] = []
        jj: list[np.ndarray] = []
        kk: list[np.ndarray] = []
        vv: list[np.ndarray] = []
        xs, ys, zs = [], [], []
        oz = 0
        for p, ((l1, l2, l3), c) in enumerate(zip(paths, couplings)):
            c = np.array(c, dtype=np.float64, copy=True)
            shape = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
            if c.shape != shape:
                raise ValueError(f"coupling {p} of path {(l1, l2, l3)} has shape {c.shape}, expected {shape}")
            if not np.isfinite(c).all():
                raise ValueError(f"coupling {p} of path {(l1, l2, l3)} holds NaN or infinite values")
            c.setflags(write=False)
            dense.append(c)
            i, j, k = np.nonzero(c)
            ii.append(i)
            jj.append(j)
            kk.append(k)
            vv.append(c[i, j, k])
            ptr.append(ptr[-1] + len(i))
            meta[p] = (xo[l1], shape[0], yo[l2], shape[1], oz, shape[2])
            xs.append(slice(xo[l1], xo[l1] + shape[0]))
            ys.append(slice(yo[l2], yo[l2] + shape[1]))
            zs.append(slice(oz, oz + shape[2]))
            oz += shape[2]

        def frozen(a: np.ndarray, dtype: type) -> np.ndarray:
            a = np.ascontiguousarray(a, dtype=dtype)
            a.setflags(write=False)
            return a

        val64 = frozen(np.concatenate(vv), np.float64)
        meta.setflags(write=False)
        return cls(
            paths=tuple(paths),
            couplings=tuple(dense),
            meta=meta,
            coo_ptr=frozen(np.asarray(ptr), np.int32),
            coo_i=frozen(np.concatenate(ii), np.int32),
            coo_j=frozen(np.concatenate(jj), np.int32),
            coo_k=frozen(np.concatenate(kk), np.int32),
            coo_val64=val64,
            coo_val32=frozen(val64, np.float32),
            DX=DX,
            DY=DY,
            DZ=oz,
            x_slices=tuple(xs),
            y_slices=tuple(ys),
            z_slices=tuple(zs),
        )

    def dense_couplings(self, xp: ModuleType, dtype: Any) -> tuple[Any, ...]:
        """The dense couplings as arrays of module ``xp`` and ``dtype``, cached per device and dtype."""
        if xp is np:
            key: tuple = ("numpy", np.dtype(dtype).str)
        else:
            key = (xp.__name__, int(xp.cuda.Device().id), np.dtype(dtype).str)
        cached = self._device_cache.get(key)
        if cached is None:
            cached = tuple(xp.asarray(c, dtype=dtype) for c in self.couplings)
            self._device_cache[key] = cached
        return cached


# --------------------------------------------------------------------------------------------
# validation


def _is_cupy(a: Any) -> bool:
    """True for a CuPy array, detected without importing CuPy."""
    return type(a).__module__.startswith("cupy")


def _output_shape(mode: str, table: PathTable, E: int, C: int) -> tuple[int, ...]:
    return {"z": (E, C, table.DZ), "x": (E, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P)}[mode]


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


def _module_and_dtype(named: dict[str, Any]) -> tuple[ModuleType, np.dtype]:
    """The array module (NumPy or CuPy, never mixed, one GPU) and the common real float dtype."""
    for name, a in named.items():
        if not (isinstance(a, np.ndarray) or _is_cupy(a)):
            raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}")
    kinds = {_is_cupy(a) for a in named.values()}
    if len(kinds) > 1:
        listing = ", ".join(f"{n}: {'CuPy' if _is_cupy(a) else 'NumPy'}" for n, a in named.items())
        raise TypeError(f"inputs mix NumPy and CuPy arrays ({listing}); move them to one device")
    if kinds == {True}:
        import cupy as xp

        devices = {a.device.id for a in named.values()}
        if len(devices) > 1:
            raise ValueError(f"inputs live on different GPUs {sorted(devices)}; move them to one device")
    else:
        xp = np
    dtypes = {np.dtype(a.dtype) for a in named.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{n}: {a.dtype}" for n, a in named.items())
        raise TypeError(f"dtype mismatch ({listing}); all arrays must share one float dtype")
    dtype = dtypes.pop()
    if dtype.kind != "f":
        raise TypeError(f"arrays have dtype {dtype}; expected a real floating dtype (float32 or float64)")
    return xp, dtype


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


def _prepare(
    mode: str, table: PathTable, arrays: dict[str, Any], out: Any
) -> tuple[ModuleType, dict[str, Any], int, int, np.dtype]:
    """Check the arguments; return the array module, the used inputs, ``E``, ``C`` and the dtype."""
    _check_mode(mode, table)
    used = _used_arrays(mode, arrays, _REPLACED[mode])
    xp, dtype = _module_and_dtype(dict(used) if out is None else {**used, "out": out})
    meaning = {"x": "(E, C, DX)", "y": "(E, DY)", "w": "(E, C, P)", "g": "(E, C, DZ)"}
    _check_last_axes(used, table, meaning, {"x": "DX", "y": "DY", "w": "P", "g": "DZ"})
    for axis, what in ((0, "edges E"), (1, "channels C")):
        sizes = {name: int(a.shape[axis]) for name, a in used.items() if axis == 0 or name != "y"}
        if len(set(sizes.values())) > 1:
            listing = ", ".join(f"{n}: {tuple(used[n].shape)}" for n in sizes)
            raise ValueError(f"inputs disagree on the number of {what} ({listing})")
    E = int(next(iter(used.values())).shape[0])
    C = next(int(a.shape[1]) for n, a in used.items() if n != "y")
    _check_out(out, _output_shape(mode, table, E, C), mode, xp)
    return xp, used, E, C, dtype


# --------------------------------------------------------------------------------------------
# threads


def _edge_chunks(E: int, threads: int) -> list[tuple[int, int]]:
    """Split ``[0, E)`` into at most ``threads`` near-equal chunks of at least MIN_EDGES_PER_THREAD edges."""
    n = max(1, min(threads, E // MIN_EDGES_PER_THREAD))
    bounds = [E * t // n for t in range(n + 1)]
    return [(bounds[t], bounds[t + 1]) for t in range(n)]


def _run_kernel(mode: str, table: PathTable, used: dict[str, Any], out: np.ndarray, E: int, threads: int) -> None:
    """Call the compiled kernel on edge chunks, the first in this thread and the rest in the pool."""
    code = MODES.index(mode)
    val = table.coo_val32 if out.dtype == np.float32 else table.coo_val64
    args = [used.get(name) for name in _ARG_NAMES]
    static = (table.meta, table.coo_ptr, table.coo_i, table.coo_j, table.coo_k, val)

    def call(lo: int, hi: int) -> None:
        _ext.phi_grad(code, *args, out, *static, lo, hi)

    run_parallel(call, _edge_chunks(E, threads))


# --------------------------------------------------------------------------------------------
# public entry points


def phi_grad(
    mode: str,
    table: PathTable,
    x: Any = None,
    y: Any = None,
    w: Any = None,
    g: Any = None,
    out: Any = None,
    threads: int | None = None,
) -> Any:
    """One partial gradient of ``Phi(x, y, w, g)`` (see the module docstring).

    ``mode`` is ``"z"`` (``dPhi/dg``, the forward product; shape of ``g``), ``"x"`` (``dPhi/dx``),
    ``"y"`` (``dPhi/dy``) or ``"w"`` (``dPhi/dw``); the other three arrays are required and the
    one that ``mode`` replaces is not read.  Shapes: ``x (E, C, DX)``, ``y (E, DY)``,
    ``w (E, C, P)``, ``g (E, C, DZ)`` with ``DX, DY, DZ, P`` from ``table``.  ``out``, if given,
    must have the output shape and dtype; it is overwritten and returned.

    NumPy float32/float64 C-contiguous inputs (and ``out``) use the compiled kernel when it is
    built, on ``threads`` threads (default :func:`default_threads`; small ``E`` runs on one);
    everything else uses :func:`phi_grad_reference`.  Results agree to rounding.
    """
    arrays = {"x": x, "y": y, "w": w, "g": g}
    xp, used, E, C, dtype = _prepare(mode, table, arrays, out)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    fast = (
        _ext is not None
        and xp is np
        and dtype in (np.dtype(np.float32), np.dtype(np.float64))
        and all(a.flags.c_contiguous for a in used.values())
        and (out is None or out.flags.c_contiguous)
    )
    if not fast:
        return _reference(mode, table, xp, used, E, C, dtype, out)
    if threads is None:
        threads = default_threads()
    if out is None:
        out = np.empty(_output_shape(mode, table, E, C), dtype=dtype)
    _run_kernel(mode, table, used, out, E, int(threads))
    return out


def phi_grad_reference(
    mode: str,
    table: PathTable,
    x: Any = None,
    y: Any = None,
    w: Any = None,
    g: Any = None,
    out: Any = None,
) -> Any:
    """Reference for :func:`phi_grad` with the array module of the inputs (NumPy or CuPy).

    Per path, with ``M[e,i,k] = sum_j C_p[i,j,k] y[e,oy+j]`` and ``w_p = w[:, :, p]``:

    * ``"z"``: ``z[:, :, oz:oz+dz] = w_p[..., None] * (x[:, :, ox:ox+dx] @ M)``;
    * ``"x"``: ``gx[:, :, ox:ox+dx] += (w_p[..., None] * g[:, :, oz:oz+dz]) @ M^T``;
    * ``"w"``: ``gw[:, :, p] = sum_k (x[:, :, ox:ox+dx] @ M)[..., k] * g[:, :, oz+k]``;
    * ``"y"``: ``T[e,i,k] = sum_c w_p x[e,c,ox+i] g[e,c,oz+k]``, ``gy[e, oy+j] += sum_ik C_p[i,j,k] T[e,i,k]``.

    Computed in the dtype of the inputs.
    """
    arrays = {"x": x, "y": y, "w": w, "g": g}
    xp, used, E, C, dtype = _prepare(mode, table, arrays, out)
    return _reference(mode, table, xp, used, E, C, dtype, out)


def _reference(
    mode: str,
    table: PathTable,
    xp: ModuleType,
    used: dict[str, Any],
    E: int,
    C: int,
    dtype: np.dtype,
    out: Any,
) -> Any:
    res = xp.zeros(_output_shape(mode, table, E, C), dtype=dtype)
    dense = table.dense_couplings(xp, dtype)
    x, y, w, g = (used.get(name) for name in _ARG_NAMES)
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
    if out is None:
        return res
    out[...] = res
    return out


def phi(table: PathTable, x: Any, y: Any, w: Any, g: Any) -> Any:
    """The scalar ``Phi(x, y, w, g) = sum(z * g)``, ``z = phi_grad("z", ...)``, as a 0-d array of the inputs' module."""
    xp, _, _, _, _ = _prepare("x", table, {"x": None, "y": y, "w": w, "g": g}, None)  # g against y and w
    z = phi_grad("z", table, x=x, y=y, w=w)
    if type(z) is not type(g) or z.dtype != g.dtype:
        raise TypeError(f"g ({type(g).__name__}, {g.dtype}) does not match x, y, w ({type(z).__name__}, {z.dtype})")
    return xp.sum(z * g)


# --------------------------------------------------------------------------------------------
# graph form


#: the argument that each mode replaces in the graph form (node features are ``h``)
_GRAPH_REPLACED = {"z": "g", "x": "h", "y": "y", "w": "w"}
_GRAPH_ARGS = ("h", "y", "w", "g")


def _index_vector(a: Any, name: str) -> np.ndarray:
    """A 1-D integer index array (NumPy or CuPy; copied to the host) as read-only int64."""
    if _is_cupy(a):
        a = a.get()
    a = np.asarray(a)
    if a.ndim != 1 or (a.dtype.kind not in "iu" and a.size):
        raise ValueError(f"{name} must be a 1-D integer array, got dtype {a.dtype} and shape {a.shape}")
    a = np.array(a, dtype=np.int64)  # a private copy: the graph is immutable
    a.setflags(write=False)
    return a


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
    * ``sender_order`` / ``sender_ptr``: the same for the senders (mode ``"x"`` scatters by sender).

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
        return cls(
            senders=s,
            receivers=r,
            num_nodes=N,
            receiver_order=_sort_order(r),
            receiver_ptr=_row_pointers(r, N),
            sender_order=_sort_order(s),
            sender_ptr=_row_pointers(s, N),
        )

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


def _graph_output_shape(mode: str, table: PathTable, N: int, E: int, C: int) -> tuple[int, ...]:
    """Shape of the output of graph mode ``mode``: that of ``g``, ``h``, ``y`` or ``w``."""
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

    Nodes that no edge reaches get zero rows.  NumPy float32/float64 C-contiguous inputs use the
    compiled kernel when it is built, on ``threads`` threads (default :func:`default_threads`) split
    at node (``"z"``, ``"x"``) or edge (``"y"``, ``"w"``) boundaries; anything else (CuPy, strided,
    other dtypes) uses :func:`phi_grad_graph_reference`.  ``out``, if given, must have the output
    shape and dtype; it is overwritten and returned.
    """
    arrays = {"h": h, "y": y, "w": w, "g": g}
    xp, used, C, dtype = _prepare_graph(mode, table, graph, arrays, out)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    fast = (
        _ext is not None
        and hasattr(_ext, "phi_grad_graph")
        and xp is np
        and dtype in (np.dtype(np.float32), np.dtype(np.float64))
        and all(a.flags.c_contiguous for a in used.values())
        and (out is None or out.flags.c_contiguous)
    )
    if not fast:
        return _graph_reference(mode, table, graph, xp, used, C, dtype, out)
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

    Gathers ``x = h[s]`` and ``ge = g[r]`` (``take``), applies :func:`phi_grad_reference`'s
    per-edge formulas and, for ``"z"`` / ``"x"``, sums the ``(E, C, D)`` result onto the receivers /
    senders: on NumPy by ``add.reduceat`` over the runs of the sorted order of the graph, on CuPy by
    ``scatter_add``.  Memory ``O(E C D)``.
    """
    arrays = {"h": h, "y": y, "w": w, "g": g}
    xp, used, C, dtype = _prepare_graph(mode, table, graph, arrays, out)
    return _graph_reference(mode, table, graph, xp, used, C, dtype, out)


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


def _graph_reference(
    mode: str,
    table: PathTable,
    graph: GraphIndex,
    xp: ModuleType,
    used: dict[str, Any],
    C: int,
    dtype: np.dtype,
    out: Any,
) -> Any:
    """``phi_grad_reference`` on ``x = h[s]``, ``g[r]`` (``take``), scattered onto nodes for modes z and x."""
    s, r = graph.indices(xp)
    E = graph.num_edges
    edge: dict[str, Any] = {}
    if "h" in used:
        edge["x"] = xp.take(used["h"], s, axis=0)
    if "g" in used:
        edge["g"] = xp.take(used["g"], r, axis=0)
    for name in ("y", "w"):
        if name in used:
            edge[name] = used[name]
    res = _reference(mode, table, xp, edge, E, C, dtype, None)
    if mode == "z":
        res = _segment_sum(xp, res, r, graph.receiver_order, graph.receiver_ptr, graph.num_nodes)
    elif mode == "x":
        res = _segment_sum(xp, res, s, graph.sender_order, graph.sender_ptr, graph.num_nodes)
    if out is None:
        return res
    out[...] = res
    return out


def phi_graph(table: PathTable, graph: GraphIndex, h: Any, y: Any, w: Any, g: Any) -> Any:
    """The scalar ``PhiG(h, y, w, g) = sum(z * g)``, ``z = phi_grad_graph("z", ...)``, as a 0-d array."""
    xp, _, _, _ = _prepare_graph("x", table, graph, {"h": None, "y": y, "w": w, "g": g}, None)
    z = phi_grad_graph("z", table, graph, h=h, y=y, w=w)
    if type(z) is not type(g) or z.dtype != g.dtype:
        raise TypeError(f"g ({type(g).__name__}, {g.dtype}) does not match h, y, w ({type(z).__name__}, {z.dtype})")
    return xp.sum(z * g)
