"""Monomials of the entries of each row, with first and second derivatives (compiled, row-parallel).

A *monomial table* ``(parent, last)`` (int32, length ``T``, topological: ``parent[t] < t``) defines,
for a row ``a`` of length ``D``::

    m[t] = a[last[t]]                  (parent[t] < 0, degree 1)
    m[t] = m[parent[t]] * a[last[t]]   (otherwise)

:func:`symmetric_monomial_table` lists every monomial ``a_i1 a_i2 ... a_inu`` with
``i1 <= ... <= inu`` up to a degree, by degree, each from its lower-degree parent. This is the
product basis of MACE-like potentials before contraction with the coupling matrices.

Four functions of ``A`` (R, D), each a single pass per row:

* :func:`monomials`: ``M[r, t] = m_t(A[r])``, shape (R, T);
* :func:`monomials_vjp`: ``sum_t G[r, t] dm_t/da``, shape (R, D);
* :func:`monomials_jvp`: ``sum_c H[r, c] dm_t/da_c``, shape (R, T);
* :func:`monomials_hvp`: ``sum_t G[r, t] sum_c H[r, c] d^2 m_t/(da da_c)``, shape (R, D).

With a sparse *basis* ``B`` (T, W) (:func:`sparse_basis`, passed as ``basis=``) the ops are those of
``a -> M(a) B``: forward and JVP return (R, W) and the VJP and HVP read ``G`` (R, W); the compiled
kernel folds ``B`` in row by row, so the (R, T) monomials are never stored.

The compiled kernel ``cartesian_irreps._monomials`` runs them on NumPy float64/float32 arrays,
rows split over :func:`cartesian_irreps.runtime.backend.default_threads` threads; CuPy arrays run the
generated CUDA kernel (:mod:`cartesian_irreps.runtime.cuda.kernels`); the column-by-column reference
below runs when the extension is not built or when asked for (see
:mod:`cartesian_irreps.runtime.kernel_backend`, which also offers the C twin of the CUDA kernel).
Accumulation is in float64 in the kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import array_module, default_threads, run_parallel
from .kernel_backend import choose

try:  # optional, like the fused message kernel
    from .. import _monomials as _ext
except ImportError:  # pragma: no cover - exercised only where the extension is not built
    _ext = None

__all__ = [
    "kernel_available",
    "monomials",
    "monomials_hvp",
    "monomials_jvp",
    "monomials_vjp",
    "sparse_basis",
    "symmetric_monomial_table",
    "table_from_levels",
]

MIN_ROWS_PER_THREAD = 512
_OPS = {"forward": 0, "vjp": 1, "jvp": 2, "hvp": 3}


def kernel_available() -> bool:
    """Whether ``cartesian_irreps._monomials`` was built and imports."""
    return _ext is not None


def table_from_levels(dim: int, levels: list[tuple[Any, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(parent, last)`` in one index space from per-degree selections.

    Degree 1 is the identity (``dim`` entries); level ``k`` of ``levels`` gives the monomials of
    degree ``k + 2`` as ``(parent, last)``, ``parent`` indexing the previous degree and ``last`` a
    column of ``A``. The result orders monomials by degree, as the levels do.
    """
    parent = [np.full(dim, -1, dtype=np.int64)]
    last = [np.arange(dim, dtype=np.int64)]
    offset, size = 0, dim
    for par, lst in levels:
        par, lst = np.asarray(par, dtype=np.int64), np.asarray(lst, dtype=np.int64)
        if par.shape != lst.shape or par.ndim != 1:
            raise ValueError("each level needs 1-D parent and last arrays of one length")
        if len(par) and (par.min() < 0 or par.max() >= size or lst.min() < 0 or lst.max() >= dim):
            raise ValueError("a level's parent or last index is out of range")
        parent.append(par + offset)
        last.append(lst)
        offset, size = offset + size, len(par)
    return np.concatenate(parent).astype(np.int32), np.concatenate(last).astype(np.int32)


def symmetric_monomial_table(dim: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """All monomials ``a_i1 ... a_ik`` (``i1 <= ... <= ik``, ``1 <= k <= degree``) of ``dim`` variables,
    by degree and then lexicographically: ``T = sum_k C(dim + k - 1, k)`` entries."""
    if dim < 1 or degree < 1:
        raise ValueError(f"need dim >= 1 and degree >= 1, got {dim}, {degree}")
    prev = [(i,) for i in range(dim)]
    levels = []
    for _ in range(degree - 1):
        index = {m: k for k, m in enumerate(prev)}
        cur = [m + (c,) for m in prev for c in range(m[-1], dim)]
        levels.append((np.array([index[m[:-1]] for m in cur]), np.array([m[-1] for m in cur])))
        prev = cur
    return table_from_levels(dim, levels)


def sparse_basis(matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The nonzeros of a dense basis ``matrix`` (T, W) as ``(rows int32, cols int32, values float64, W)``
    (row-major order), the ``basis=`` argument of the four functions."""
    m = np.asarray(matrix.get() if hasattr(matrix, "get") else matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a basis matrix must be 2-D (T, W), got shape {m.shape}")
    rows, cols = np.nonzero(m)
    return rows.astype(np.int32), cols.astype(np.int32), np.ascontiguousarray(m[rows, cols]), int(m.shape[1])


def _dense(basis: tuple[Any, Any, Any, int], T: int, xp: Any, dtype: Any) -> Any:
    rows, cols, values, width = basis
    m = np.zeros((T, width))
    np.add.at(m, (np.asarray(rows), np.asarray(cols)), np.asarray(values))
    return xp.asarray(m, dtype=dtype)


# --------------------------------------------------------------------------------------------


def _reference(op: str, parent: np.ndarray, last: np.ndarray, a: Any, g: Any, h: Any, basis: Any = None) -> Any:
    """Column-by-column reference (NumPy or CuPy) of the four ops, in the input dtype (a basis is
    applied as a dense matrix product)."""
    xp = array_module(a)
    if basis is not None:
        b = _dense(basis, len(parent), xp, a.dtype)
        if op in ("forward", "jvp"):
            return _reference(op, parent, last, a, g, h) @ b
        return _reference(op, parent, last, a, g @ b.T, h)
    T = len(parent)
    m = [None] * T
    for t in range(T):
        p, c = int(parent[t]), int(last[t])
        m[t] = a[:, c] if p < 0 else m[p] * a[:, c]
    if op == "forward":
        return xp.stack(m, axis=1) if T else xp.zeros((a.shape[0], 0), a.dtype)
    if op in ("jvp", "hvp"):
        dm = [None] * T
        for t in range(T):
            p, c = int(parent[t]), int(last[t])
            dm[t] = h[:, c] if p < 0 else dm[p] * a[:, c] + m[p] * h[:, c]
        if op == "jvp":
            return xp.stack(dm, axis=1) if T else xp.zeros((a.shape[0], 0), a.dtype)
    gm = [g[:, t].copy() for t in range(T)]
    dgm = [xp.zeros_like(a[:, 0]) for _ in range(T)]
    ga = xp.zeros_like(a)
    for t in range(T - 1, -1, -1):
        p, c = int(parent[t]), int(last[t])
        if op == "vjp":
            ga[:, c] += gm[t] if p < 0 else gm[t] * m[p]
            if p >= 0:
                gm[p] += gm[t] * a[:, c]
        else:
            if p < 0:
                ga[:, c] += dgm[t]
                continue
            ga[:, c] += dgm[t] * m[p] + gm[t] * dm[p]
            gm[p] += gm[t] * a[:, c]
            dgm[p] += dgm[t] * a[:, c] + gm[t] * h[:, c]
    return ga


def _check(name: str, x: Any, rows: int, cols: int, dtype: Any) -> None:
    if x.ndim != 2 or x.shape != (rows, cols):
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {tuple(x.shape)}")
    if x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype}, expected {dtype} (the dtype of a)")


def validated(
    op: str, table: tuple[Any, Any], a: Any, g: Any = None, h: Any = None, basis: Any = None
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Check the arguments of ``op``; return ``(parent, last)`` as int32 NumPy and the checked basis."""
    parent, last = (np.ascontiguousarray(t.get() if hasattr(t, "get") else t, dtype=np.int32) for t in table)
    if parent.shape != last.shape or parent.ndim != 1:
        raise ValueError("the monomial table needs 1-D parent and last arrays of one length")
    if a.ndim != 2 or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"a must be a 2-D float32 or float64 array, got {a.dtype} of shape {tuple(a.shape)}")
    R, D = a.shape
    T = len(parent)
    W = T
    if basis is not None:
        if len(basis) != 4:
            raise ValueError("basis must be (rows, cols, values, width); see sparse_basis")
        rows, cols, values, W = basis
        rows, cols = (np.ascontiguousarray(np.asarray(x), dtype=np.int32) for x in (rows, cols))
        values = np.ascontiguousarray(np.asarray(values), dtype=np.float64)
        W = int(W)
        if not (rows.shape == cols.shape == values.shape and rows.ndim == 1) or W < 0:
            raise ValueError("basis rows, cols and values must be 1-D of one length, width >= 0")
        if len(rows) and (rows.min() < 0 or rows.max() >= T or cols.min() < 0 or cols.max() >= W):
            raise ValueError(f"basis entries must lie inside ({T}, {W})")
        basis = (rows, cols, values, W)
    if op in ("vjp", "hvp"):
        _check("g", g, R, W, a.dtype)
    if op in ("jvp", "hvp"):
        _check("h", h, R, D, a.dtype)
    if T and (int(last.min()) < 0 or int(last.max()) >= D or bool((parent >= np.arange(T)).any())):
        raise ValueError("monomial table: last must index the columns of a and parent[t] < t")
    return parent, last, basis


def _run(
    op: str, table: tuple[Any, Any], a: Any, g: Any = None, h: Any = None, threads: int | None = None, basis: Any = None
) -> Any:
    parent, last, basis = validated(op, table, a, g, h, basis)
    R, D = a.shape
    W = len(parent) if basis is None else basis[3]
    backend = choose("monomials", a, _ext is not None).name
    if backend in ("cuda", "cuda-twin"):
        from .cuda.kernels import identity_basis, monomial_op_checked

        return monomial_op_checked(op, parent, last, a, g, h, identity_basis(len(parent)) if basis is None else basis)
    if backend == "reference":
        return _reference(op, parent, last, a, g, h, basis)
    a, g, h = (None if x is None else np.ascontiguousarray(x) for x in (a, g, h))
    out = np.empty((R, W if op in ("forward", "jvp") else D), dtype=a.dtype)
    code = _OPS[op]
    n = max(1, min(threads or default_threads(), R // MIN_ROWS_PER_THREAD))
    bounds = [R * k // n for k in range(n + 1)]
    extra = () if basis is None else basis

    def call(lo: int, hi: int) -> None:
        _ext.run(code, parent, last, a, g, h, out, lo, hi, *extra)

    run_parallel(call, [(bounds[k], bounds[k + 1]) for k in range(n)])
    return out


def monomials(a: Any, table: tuple[Any, Any], threads: int | None = None, basis: Any = None) -> Any:
    """``M[r, t] = m_t(a[r])`` for ``a`` (R, D): shape (R, T); ``M B`` (R, W) with a basis."""
    return _run("forward", table, a, threads=threads, basis=basis)


def monomials_vjp(a: Any, g: Any, table: tuple[Any, Any], threads: int | None = None, basis: Any = None) -> Any:
    """``sum_t g[r, t] dm_t/da (a[r])`` for ``g`` (R, T) (``(g B^T)[r, t]`` with a basis, ``g`` (R, W)):
    shape (R, D)."""
    return _run("vjp", table, a, g=g, threads=threads, basis=basis)


def monomials_jvp(a: Any, h: Any, table: tuple[Any, Any], threads: int | None = None, basis: Any = None) -> Any:
    """``sum_c h[r, c] dm_t/da_c (a[r])`` for ``h`` (R, D): shape (R, T); times ``B`` (R, W) with a basis."""
    return _run("jvp", table, a, h=h, threads=threads, basis=basis)


def monomials_hvp(a: Any, g: Any, h: Any, table: tuple[Any, Any], threads: int | None = None, basis: Any = None) -> Any:
    """``sum_t g[r, t] sum_c h[r, c] d^2 m_t/(da da_c) (a[r])``: shape (R, D) (``g B^T`` for ``g`` with a
    basis)."""
    return _run("hvp", table, a, g=g, h=h, threads=threads, basis=basis)
