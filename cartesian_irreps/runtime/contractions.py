"""The three contraction kinds every product and every vector-Jacobian product reduces to.

With a (possibly slot-permuted) coupling ``C[a, b, k]`` (shapes A, B, K) and a flat batch axis n:

* kind ``"pair"``:    ``z[n, c, k] = sum_ab C[a, b, k] u[n, c, a] v[n, c, b]``   (both per channel)
* kind ``"shared"``:  ``z[n, c, k] = sum_ab C[a, b, k] u[n, c, a] s[n, b]``      (s shared by channels)
* kind ``"reduce"``:  ``z[n, k]    = sum_c sum_ab C[a, b, k] u[n, c, a] v[n, c, b]`` (channels summed)

Each kind has several equivalent evaluation strategies; the generator times them and records the
fastest per triple in :mod:`cartesian_irreps.generated.plans`:

* ``einsum``: ``opt_einsum.contract`` with the dense coupling and a precomputed path;
* ``einsum_direct``: one ``einsum`` call over all three operands without intermediates (the
  array module's own loop; wins for the smallest couplings);
* ``outer_gemm``: form the per-(n, c) outer product of the inputs, then one BLAS matrix product
  with ``C`` reshaped to (A*B, K);
* ``fold``: (shared) fold the shared input into a per-n matrix ``M = s . C`` (one GEMM), then a
  batched matrix product over channels;
* ``matmul_gemm``: (reduce) batched ``u^T v`` over channels, then one GEMM with ``C``;
* ``sparse``: gather the inputs at the non-zeros of C, multiply, and sum into the outputs with a
  (nnz, K) matrix product;
* ``diagonal``: when one slot has rank 0, C is a multiple of the identity between the other two:
  the product is a scaling (``alpha u_0 v``) or a dot product (``alpha sum_a u_a v_a``), one
  elementwise pass. Only applicable to those couplings (``CouplingArrays.diagonal``).

Large batches are processed in chunks so that intermediates stay small (about ``CHUNK_BYTES``).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import opt_einsum

from .tables import CouplingArrays

KINDS = ("pair", "shared", "reduce")
STRATEGIES = {
    "pair": ("einsum", "einsum_direct", "outer_gemm", "sparse", "diagonal"),
    "shared": ("einsum", "einsum_direct", "fold", "outer_gemm", "sparse", "diagonal"),
    "reduce": ("einsum", "einsum_direct", "matmul_gemm", "sparse", "diagonal"),
}
EQUATIONS = {"pair": "abk,nca,ncb->nck", "shared": "abk,nca,nb->nck", "reduce": "abk,nca,ncb->nk"}
CHUNK_BYTES = 8 * 2**20
NOT_APPLICABLE = 10**15  # FLOP count reported for a strategy that does not apply to a coupling


def _backend(xp: ModuleType) -> str:
    return "cupy" if xp.__name__ == "cupy" else "numpy"


# --------------------------------------------------------------------------- strategies
def _pair_einsum(cp: CouplingArrays, u, v, xp, path):
    return opt_einsum.contract(EQUATIONS["pair"], cp.dense, u, v, optimize=path or "greedy", backend=_backend(xp))


def _direct(kind: str) -> Callable:
    def run(cp: CouplingArrays, u, v, xp, path):
        return xp.einsum(EQUATIONS[kind], cp.dense, u, v)

    return run


def _diagonal(kind: str) -> Callable:
    """Rank-0 slot: ``alpha * u[..., :1] * v`` or ``alpha * u * v[..., :1]`` or ``alpha * sum(u * v)``."""

    def run(cp: CouplingArrays, u, v, xp, path):
        if cp.diagonal is None:
            raise ValueError(f"the 'diagonal' strategy does not apply to coupling {cp.key}")
        slot, alpha = cp.diagonal
        if kind == "shared":
            v = v[:, None, :]
        if kind == "reduce":
            if slot == 2:
                return xp.einsum("nca,nca->n", u, v)[:, None] * alpha
            return (u * v).sum(axis=1) * alpha  # one factor has size 1 and broadcasts
        if slot == 2:
            return xp.einsum("nca,nca->nc", u, v)[..., None] * alpha
        return u * v * alpha  # the rank-0 factor (size 1) broadcasts over the other

    return run


def _pair_outer(cp: CouplingArrays, u, v, xp, path):
    n, c, a = u.shape
    outer = (u[:, :, :, None] * v[:, :, None, :]).reshape(n * c, a * v.shape[2])
    return (outer @ cp.ab_k).reshape(n, c, -1)


def _pair_sparse(cp: CouplingArrays, u, v, xp, path):
    n, c, _ = u.shape
    prod = (u[:, :, cp.sp_a] * v[:, :, cp.sp_b]).reshape(n * c, -1)
    return (prod @ cp.sp_sel).reshape(n, c, -1)


def _shared_einsum(cp: CouplingArrays, u, s, xp, path):
    return opt_einsum.contract(EQUATIONS["shared"], cp.dense, u, s, optimize=path or "greedy", backend=_backend(xp))


def _shared_fold(cp: CouplingArrays, u, s, xp, path):
    na, _, nk = cp.dims
    m = (s @ cp.b_ak).reshape(s.shape[0], na, nk)
    return xp.matmul(u, m)


def _shared_outer(cp: CouplingArrays, u, s, xp, path):
    n, c, a = u.shape
    outer = (u[:, :, :, None] * s[:, None, None, :]).reshape(n * c, a * s.shape[1])
    return (outer @ cp.ab_k).reshape(n, c, -1)


def _shared_sparse(cp: CouplingArrays, u, s, xp, path):
    n, c, _ = u.shape
    prod = (u[:, :, cp.sp_a] * s[:, None, cp.sp_b]).reshape(n * c, -1)
    return (prod @ cp.sp_sel).reshape(n, c, -1)


def _reduce_einsum(cp: CouplingArrays, u, v, xp, path):
    return opt_einsum.contract(EQUATIONS["reduce"], cp.dense, u, v, optimize=path or "greedy", backend=_backend(xp))


def _reduce_matmul(cp: CouplingArrays, u, v, xp, path):
    n = u.shape[0]
    t = xp.matmul(u.transpose(0, 2, 1), v).reshape(n, -1)
    return t @ cp.ab_k


def _reduce_sparse(cp: CouplingArrays, u, v, xp, path):
    prod = (u[:, :, cp.sp_a] * v[:, :, cp.sp_b]).sum(axis=1)
    return prod @ cp.sp_sel


IMPLEMENTATIONS: dict[tuple[str, str], Callable] = {
    ("pair", "einsum"): _pair_einsum,
    ("pair", "einsum_direct"): _direct("pair"),
    ("pair", "outer_gemm"): _pair_outer,
    ("pair", "diagonal"): _diagonal("pair"),
    ("shared", "diagonal"): _diagonal("shared"),
    ("reduce", "diagonal"): _diagonal("reduce"),
    ("pair", "sparse"): _pair_sparse,
    ("shared", "einsum"): _shared_einsum,
    ("shared", "einsum_direct"): _direct("shared"),
    ("shared", "fold"): _shared_fold,
    ("shared", "outer_gemm"): _shared_outer,
    ("shared", "sparse"): _shared_sparse,
    ("reduce", "einsum"): _reduce_einsum,
    ("reduce", "einsum_direct"): _direct("reduce"),
    ("reduce", "matmul_gemm"): _reduce_matmul,
    ("reduce", "sparse"): _reduce_sparse,
}


def intermediate_per_row(strategy: str, dims: tuple[int, int, int], nnz: int, channels: int) -> int:
    """Floats of intermediate storage per batch row n (used to size chunks)."""
    na, nb, nk = dims
    if strategy == "outer_gemm":
        return channels * na * nb
    if strategy == "sparse":
        return channels * nnz
    if strategy == "fold":
        return na * nk + channels * nk
    if strategy == "matmul_gemm":
        return na * nb
    if strategy == "diagonal":  # one elementwise pass: no need to chunk
        return 1
    return channels * max(na * nb, nb * nk, na * nk)


def flops(kind: str, strategy: str, dims: tuple[int, int, int], nnz: int, channels: int) -> int:
    """Floating-point operations per batch row n (multiplies and adds counted separately)."""
    na, nb, nk = dims
    c = channels
    if strategy == "outer_gemm":
        return c * na * nb + 2 * c * na * nb * nk
    if strategy == "sparse":
        return 2 * c * nnz + 2 * (1 if kind == "reduce" else c) * nnz * nk
    if strategy == "fold":
        return 2 * nb * na * nk + 2 * c * na * nk
    if strategy == "matmul_gemm":
        return 2 * c * na * nb + 2 * na * nb * nk
    if strategy == "diagonal":  # applicable only to rank-0 slots (see CouplingArrays.diagonal)
        return 2 * c * max(na, nb, nk) if 1 in dims else NOT_APPLICABLE
    if strategy == "einsum_direct":  # one loop over every (a, b, k) for every row and channel
        return 2 * c * na * nb * nk + (c * na * nb if kind != "shared" else 0)
    # einsum: opt_einsum's own cost model for one row along its optimal path
    shapes = [dims, (1, c, na), (1, nb) if kind == "shared" else (1, c, nb)]
    _, info = opt_einsum.contract_path(EQUATIONS[kind], *shapes, shapes=True, optimize="optimal")
    return int(info.opt_cost)


def floor_flops(kind: str, dims: tuple[int, int, int], nnz: int, channels: int) -> int:
    """A lower bound per row: fold a shared input once (2 nnz), then one small mat-vec per channel.

    For the per-channel kinds every non-zero needs a multiply-add per channel (2 C nnz).
    """
    na, _, nk = dims
    if kind == "shared":
        return 2 * nnz + 2 * channels * na * nk
    return 2 * channels * nnz


def contract(
    kind: str,
    strategy: str,
    cp: CouplingArrays,
    u: Any,
    v: Any,
    xp: ModuleType,
    path: Any = None,
    out: Any = None,
) -> Any:
    """Evaluate one contraction kind with one strategy, chunked over the batch axis n.

    ``u``: (n, C, A); ``v``: (n, C, B) for pair/reduce or (n, B) for shared. Returns (n, C, K) or
    (n, K) for reduce, written into ``out`` when given. An empty batch (``n = 0``) or no channels
    (``C = 0``; a reduce kind then sums nothing) gives zeros of that shape.
    """
    fn = IMPLEMENTATIONS[(kind, strategy)]
    n, channels = u.shape[0], u.shape[1]
    nk = cp.dims[2]
    shape = (n, nk) if kind == "reduce" else (n, channels, nk)
    if out is None:
        out = xp.empty(shape, dtype=u.dtype)
    if n == 0 or channels == 0:
        out[...] = 0
        return out
    if strategy == "diagonal" and kind != "reduce" and cp.diagonal is not None:
        # written in place (no temporary, no copy): a rank-0 input broadcasts in one multiply, a
        # rank-0 output is one dot product per row and channel
        vb = v[:, None, :] if kind == "shared" else v
        if cp.diagonal[0] == 2:
            xp.einsum("nca,nca->nc", u, xp.broadcast_to(vb, u.shape), out=out[..., 0])
        else:
            xp.multiply(u, vb, out=out)
        if cp.diagonal[1] != 1:
            out *= cp.diagonal[1]
        return out
    per_row = max(1, intermediate_per_row(strategy, cp.dims, cp.nnz, channels)) * u.dtype.itemsize
    step = n if xp.__name__ == "cupy" else max(1, CHUNK_BYTES // per_row)
    if step >= n:
        out[...] = fn(cp, u, v, xp, path)
        return out
    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        out[sl] = fn(cp, u[sl], v[sl], xp, path)
    return out
