"""Generated CUDA kernels on CuPy arrays: compile once per source (``cupy.RawModule``), launch, no host copies.

On NumPy arrays the same functions run the C twin of the same source (:mod:`.ctwin`; slow, for
checking without a GPU). Three entry points, each the GPU counterpart of a CPU function with the
same arguments, the same checks (the CPU module's own validation runs first, so bad input gets the
same error) and the same result:

* :func:`phi_grad_graph` — :func:`cartesian_irreps.runtime.fused.phi_grad_graph` (the fused graph
  product and its gradients; the path table's couplings are baked into the source);
* :func:`monomial_op` — the four ops of :mod:`cartesian_irreps.runtime.monomials` with a sparse basis
  (forward, VJP, JVP, HVP; the table and basis are baked in);
* :func:`cartesian_harmonics` — harmonics of unit vectors with their Jacobian or VJP.

Sources come from :mod:`cartesian_irreps.generator.cuda` / :mod:`~cartesian_irreps.generator.cuda_products`
and are cached per static input (path table, monomial table + basis, lmax + normalisation); modules
are cached per (source, dtype, device). Index arrays of a graph are copied to the device once and
cached on the :class:`~cartesian_irreps.runtime.fused.GraphIndex`. Inside a call nothing is copied
to the host and nothing synchronises (tests run the calls under ``cupyx.allow_synchronize(False)``).
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import numpy as np

from ...generator.cuda import CudaSource, fused_graph_source
from ...generator.cuda_harmonics import harmonics_source
from ...generator.cuda_products import product_basis_source
from ..backend import import_cupy

__all__ = ["BLOCK", "cartesian_harmonics", "compiled_module", "launch", "monomial_op", "phi_grad_graph"]

BLOCK = 128  # threads per block
_MODULES: dict[tuple, Any] = {}
_FUSED_SOURCES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SOURCES: dict[tuple, CudaSource] = {}


def compiled_module(source: CudaSource, dtype: Any) -> Any:
    """``cupy.RawModule`` of ``source`` for ``dtype`` on the current device (cached)."""
    cp = import_cupy("the CUDA kernels")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"the CUDA kernels run float32 or float64, got {dtype}")
    real = "float" if dtype == np.float32 else "double"
    key = (source.digest, real, int(cp.cuda.Device().id))
    mod = _MODULES.get(key)
    if mod is None:
        mod = cp.RawModule(code=source.text, options=("--std=c++14", f"-DREAL={real}"))
        _MODULES[key] = mod
    return mod


_TWINS: dict[tuple, Any] = {}


def launch(source: CudaSource, name: str, dtype: Any, *args: Any) -> None:
    """Launch kernel ``name`` of ``source`` over its thread count; ``args`` in the kernel's parameter order
    (C-contiguous arrays; scalars as Python ints). CuPy arrays run on the GPU (``RawModule``); NumPy
    arrays run the C twin of the same text (:mod:`.ctwin`)."""
    from ..backend import is_cupy

    if not any(is_cupy(a) for a in args):
        from .ctwin import CTwin

        key = (source.digest, np.dtype(dtype).str)
        twin = _TWINS.get(key)
        if twin is None:
            twin = _TWINS[key] = CTwin(source, dtype)
        twin.launch(name, *args)
        return
    k = source.kernel(name)
    if len(args) != len(k.params):
        raise TypeError(f"{name} takes {len(k.params)} arguments, got {len(args)}")
    values = dict(zip((n for _, n in k.params), args))
    total = 1
    for c in k.count:
        total *= int(values[c]) if isinstance(c, str) else int(c)
    if total == 0:
        return
    cargs = tuple(np.int64(a) if ctype == "idx_t" else a for (ctype, _), a in zip(k.params, args))
    fn = compiled_module(source, dtype).get_function(name)
    fn(((total + BLOCK - 1) // BLOCK,), (BLOCK,), cargs)


# --------------------------------------------------------------------------- fused graph product
def fused_source(table: Any) -> CudaSource:
    """The generated source of a :class:`~cartesian_irreps.runtime.fused.PathTable` (cached per table)."""
    src = _FUSED_SOURCES.get(table)
    if src is None:
        src = fused_graph_source(table.paths, table.couplings, table.meta)
        _FUSED_SOURCES[table] = src
    return src


def _graph_arrays(graph: Any, cp: Any) -> dict[str, Any]:
    """Device copies of the graph's indices and CSR orderings (cached on the graph per device; int64
    host arrays for the C twin when ``cp`` is NumPy)."""
    key = ("cuda-kernels", "host" if cp is np else int(cp.cuda.Device().id))
    got = graph._cache.get(key)
    if got is None:
        E = graph.num_edges
        ident = np.arange(E, dtype=np.int64)

        def order(o: Any) -> Any:
            return cp.asarray(ident if o is None else np.ascontiguousarray(o, dtype=np.int64))

        got = {
            "senders": cp.asarray(np.ascontiguousarray(graph.senders, dtype=np.int64)),
            "receivers": cp.asarray(np.ascontiguousarray(graph.receivers, dtype=np.int64)),
            "receiver_order": order(graph.receiver_order),
            "receiver_ptr": cp.asarray(np.ascontiguousarray(graph.receiver_ptr, dtype=np.int64)),
            "sender_order": order(graph.sender_order),
            "sender_ptr": cp.asarray(np.ascontiguousarray(graph.sender_ptr, dtype=np.int64)),
        }
        graph._cache[key] = got
    return got


def phi_grad_graph(
    mode: str, table: Any, graph: Any, h: Any = None, y: Any = None, w: Any = None, g: Any = None, out: Any = None
) -> Any:
    """:func:`cartesian_irreps.runtime.fused.phi_grad_graph` on CuPy arrays with the generated kernel.

    Same arguments, checks and result (shapes: ``h (N, C, DX)``, ``y (E, DY)``, ``w (E, C, P)``,
    ``g (N, C, DZ)``; ``mode`` in z, x, y, w). Modes z and x sum over each node's received / sent edges
    in its own thread (CSR order), so every output row is written once, without atomics.
    """
    from ..fused import _prepare_graph

    arrays = {"h": h, "y": y, "w": w, "g": g}
    xp, used, C, dtype = _prepare_graph(mode, table, graph, arrays, out)
    return phi_grad_graph_checked(mode, table, graph, xp, used, C, dtype, out)


def phi_grad_graph_checked(
    mode: str, table: Any, graph: Any, xp: Any, used: dict[str, Any], C: int, dtype: Any, out: Any
) -> Any:
    """:func:`phi_grad_graph` after the checks (``used``: the three arrays the mode reads, by name)."""
    from ..fused import _graph_output_shape

    cp = xp  # CuPy: the GPU; NumPy: the C twin
    shape = _graph_output_shape(mode, table, graph.num_nodes, graph.num_edges, C)
    res = cp.empty(shape, dtype=dtype) if out is None or not out.flags.c_contiguous else out
    ga = _graph_arrays(graph, cp)
    args = {name: cp.ascontiguousarray(used[name]) if name in used else res for name in ("h", "y", "w", "g")}
    by_sender = mode == "x"
    order = ga["sender_order"] if by_sender else ga["receiver_order"]
    ptr = ga["sender_ptr"] if by_sender else ga["receiver_ptr"]
    src = fused_source(table)
    launch(
        src, f"fused_{mode}", dtype, args["h"], args["y"], args["w"], args["g"], res,
        ga["senders"], ga["receivers"], order, ptr, graph.num_nodes, graph.num_edges, C,
    )  # fmt: skip
    if out is not None and res is not out:
        out[...] = res
        return out
    return res


# --------------------------------------------------------------------------- product basis
def _digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


_BY_ID: dict[tuple, tuple[tuple, CudaSource]] = {}
_BY_ID_LIMIT = 64


def monomial_source(parent: Any, last: Any, basis: tuple[Any, Any, Any, int], dim: int) -> CudaSource:
    """The generated product-basis source of a monomial table and sparse basis (cached by content; the
    same array objects, as the model passes every step, are found by identity without hashing)."""
    rows, cols, values, width = basis
    ident = (id(parent), id(last), id(rows), id(cols), id(values), int(width), int(dim))
    hit = _BY_ID.get(ident)
    if hit is not None:
        return hit[1]
    key = ("pbasis", _digest(parent, last, rows, cols, np.asarray(values, np.float64)), int(width), int(dim))
    src = _SOURCES.get(key)
    if src is None:
        src = product_basis_source(parent, last, basis, dim)
        _SOURCES[key] = src
    if len(_BY_ID) >= _BY_ID_LIMIT:
        _BY_ID.pop(next(iter(_BY_ID)))
    _BY_ID[ident] = ((parent, last, rows, cols, values), src)  # the objects are kept: their ids stay unique
    return src


def monomial_op(op: str, table: tuple[Any, Any], a: Any, g: Any = None, h: Any = None, basis: Any = None) -> Any:
    """One of ``forward``, ``vjp``, ``jvp``, ``hvp`` of ``a -> m(a) B`` on CuPy arrays (shapes and
    meaning as in :mod:`cartesian_irreps.runtime.monomials`: ``a`` (R, D), ``g`` (R, W), ``h`` (R, D)).

    The CPU module's checks run first (same errors). A basis is required: the monomials alone are the
    identity basis, passed explicitly by :func:`identity_basis`.
    """
    from .. import monomials as cpu

    if op not in ("forward", "vjp", "jvp", "hvp"):
        raise ValueError(f"unknown monomial op {op!r}; expected forward, vjp, jvp or hvp")
    if basis is None:
        basis = identity_basis(len(np.asarray(table[0].get() if hasattr(table[0], "get") else table[0])))
    parent, last, basis = cpu.validated(op, table, a, g, h, basis)
    return monomial_op_checked(op, parent, last, a, g, h, basis)


def monomial_op_checked(op: str, parent: Any, last: Any, a: Any, g: Any, h: Any, basis: Any) -> Any:
    """:func:`monomial_op` after the checks (``parent``, ``last`` int32 NumPy; ``basis`` given)."""
    from ..backend import module_of

    cp = module_of(a)
    R, D = a.shape
    W = int(basis[3])
    src = monomial_source(parent, last, basis, D)
    out = cp.empty((R, W if op in ("forward", "jvp") else D), dtype=a.dtype)
    dummy = out
    args = [cp.ascontiguousarray(x) if x is not None else dummy for x in (a, g, h)]
    launch(src, f"pbasis_{op}", a.dtype, *args, out, R)
    return out


def identity_basis(T: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The basis ``B = 1`` (T, T): the ops on the plain monomials."""
    idx = np.arange(T, dtype=np.int32)
    return idx, idx.copy(), np.ones(T), T


# --------------------------------------------------------------------------- harmonics
def harmonics_kernel_source(lmax: int, normalization: str, component: bool) -> CudaSource:
    key = ("harm", int(lmax), normalization, bool(component))
    src = _SOURCES.get(key)
    if src is None:
        src = harmonics_source(lmax, normalization, component)
        _SOURCES[key] = src
    return src


def cartesian_harmonics(
    vectors: Any,
    lmax: int,
    *,
    normalization: str = "unit",
    component: bool = True,
    gradient: bool = False,
    cotangent: Any = None,
    tangent: Any = None,
    check_zero: bool = True,
) -> Any:
    """Stacked harmonics ``T (E, (lmax+1)^2)`` of ``vectors`` (E, 3), ranks 0..lmax, with the
    ``'component'`` scaling ``sqrt(2l+1)`` when ``component`` (CuPy: GPU; NumPy: the C twin).

    * ``gradient=True``: ``(T, dT/dr (E, K, 3))``;
    * ``cotangent=G`` (E, K): ``sum_k G[e, k] dT_k/dr`` (E, 3) (the VJP);
    * ``tangent=v`` (E, 3): ``sum_d dT_k/dr_d v[e, d]`` (E, K) (the JVP);
    * both: ``sum_k G[e, k] D_v(dT_k/dr)`` (E, 3) (the VJP of the VJP with respect to r).

    ``check_zero`` rejects zero-length vectors (one device-to-host read; pass False inside a hot loop
    whose edges are known to have length).
    """
    from ..._validate import HARMONIC_NORMALIZATIONS, check_choice, check_rank
    from ..backend import array_module, as_float_array, check_trailing

    lmax = check_rank(lmax, "lmax")
    tables_check(lmax)
    check_choice(normalization, HARMONIC_NORMALIZATIONS, "harmonic normalisation")
    cp = array_module(vectors, cotangent, tangent)  # NumPy arrays run the C twin
    as_float_array(vectors, "vectors", cp)
    check_trailing(vectors, "vectors", (3,), "Cartesian components")
    if vectors.ndim != 2:
        raise ValueError(f"vectors must have shape (E, 3), got {tuple(vectors.shape)}")
    E, K = int(vectors.shape[0]), (lmax + 1) ** 2
    for name, arr, shape in (("cotangent", cotangent, (E, K)), ("tangent", tangent, (E, 3))):
        if arr is not None and (tuple(arr.shape) != shape or arr.dtype != vectors.dtype):
            raise ValueError(f"{name} must be {shape} of dtype {vectors.dtype}, got {tuple(arr.shape)} {arr.dtype}")
    if check_zero and E and bool((vectors == 0).all(axis=1).any()):
        raise ValueError("vectors contain a zero-length vector: its direction (and harmonic) is undefined")
    src = harmonics_kernel_source(lmax, normalization, component)
    r = cp.ascontiguousarray(vectors)
    G = r if cotangent is None else cp.ascontiguousarray(cotangent)
    v = r if tangent is None else cp.ascontiguousarray(tangent)
    values = cp.empty((E, K), dtype=r.dtype)
    if cotangent is not None:
        out = cp.empty((E, 3), dtype=r.dtype)
        launch(src, "harm_hvp" if tangent is not None else "harm_vjp", r.dtype, r, G, v, values, out, E)
        return out
    if tangent is not None:
        launch(src, "harm_jvp", r.dtype, r, G, v, values, values, E)
        return values
    if not gradient:
        launch(src, "harm_values", r.dtype, r, G, v, values, values, E)
        return values
    grads = cp.empty((E, K, 3), dtype=r.dtype)
    launch(src, "harm_jacobian", r.dtype, r, G, v, values, grads, E)
    return values, grads


def tables_check(lmax: int) -> None:
    """``lmax`` within the generated harmonics (same error as the CPU path)."""
    from .. import tables

    tables.check_harmonics_lmax(lmax)
