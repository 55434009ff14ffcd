"""The static description of the paths of the fused product: layout offsets and couplings.

A path ``p`` with ranks ``(l1, l2, l3)`` carries a dense coupling tensor ``C_p`` of shape
``(2l1+1, 2l2+1, 2l3+1)`` and reads the block ``x[..., ox_p : ox_p + 2l1+1]`` of the node features,
``y[..., oy_p : oy_p + 2l2+1]`` of the edge harmonics and owns ``z[..., oz_p : oz_p + 2l3+1]`` of the
output (blocks contiguous in path order).  :class:`PathTable` holds these offsets together with the
couplings in the dense form (for the NumPy/CuPy reference) and the COO form (for the compiled kernel).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .._validate import check_triple

__all__ = ["PathTable"]


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
