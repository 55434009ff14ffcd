"""Full neighbour lists of one structure (vesin, float64), checked for close contacts and bad cells.

Edge ``e`` goes from the sender ``j`` to the receiver ``i`` with
``vector_e = positions[j] - positions[i] + unit_shifts[e] @ cell`` and ``0 < |vector_e| < cutoff``
(lengths in Å); see :mod:`mlip.data` for the full convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
from ase.data import chemical_symbols

__all__ = ["MAX_EDGES_PER_STRUCTURE", "neighbour_list"]

#: Refuse a structure whose cell is so small for the cutoff (over 1000 images inside the cutoff sphere) that
#: it would give more edges than this (n² x images).
MAX_EDGES_PER_STRUCTURE = 50_000_000


def _check_cell(cell: np.ndarray, pbc: np.ndarray, k: int) -> None:
    """Periodic lattice vectors must be non-zero and linearly independent."""
    if not pbc.any():
        return
    vecs = cell[pbc]
    norms = np.linalg.norm(vecs, axis=1)
    axes = "".join("abc"[a] for a in np.nonzero(pbc)[0])
    gram_det = float(np.linalg.det(vecs @ vecs.T))
    measure = math.sqrt(max(gram_det, 0.0))  # length / area / volume spanned by the periodic vectors
    if norms.min() <= 1e-8 or measure <= 1e-10 * float(np.prod(norms)):
        raise ValueError(
            f"structure {k} is periodic along {axes} but its cell is degenerate "
            f"(periodic lattice vectors {vecs.tolist()} Å are zero or linearly dependent)"
        )


def _complete_box(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """The cell with each non-periodic vector replaced by a unit vector orthogonal to the periodic ones.

    Shifts along non-periodic directions are zero, so this changes no edge vector; it only gives a
    well-conditioned box for the neighbour search and for the image-count estimate.
    """
    box = np.array(cell, dtype=np.float64)
    per = np.nonzero(pbc)[0]
    if per.size == 3:
        return box
    if per.size == 0:
        return np.eye(3)
    # orthonormal basis: periodic vectors first, completed by the standard basis, via QR
    q, _ = np.linalg.qr(np.concatenate([box[per], np.eye(3)], axis=0).T)
    free = q[:, per.size : 3].T  # orthonormal directions orthogonal to the periodic vectors
    for row, a in zip(free, np.nonzero(~pbc)[0]):
        box[a] = row
    return box


def _images_in_cutoff(box: np.ndarray, pbc: np.ndarray, cutoff: float) -> float:
    """About how many lattice points of the periodic directions lie inside a ball of radius ``cutoff``."""
    per = np.nonzero(pbc)[0]
    if per.size == 0:
        return 1.0
    vecs = box[per]
    measure = math.sqrt(max(float(np.linalg.det(vecs @ vecs.T)), 1e-300))  # length, area or volume
    ball = (2.0 * cutoff, math.pi * cutoff**2, 4.0 / 3.0 * math.pi * cutoff**3)[per.size - 1]
    return ball / measure


def neighbour_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray | Sequence[bool],
    cutoff: float,
    *,
    min_distance: float | None = 0.5,
    numbers: np.ndarray | None = None,
    structure: int = 0,
    _nl: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list of one structure with vesin, checked for close contacts.

    Args:
        positions: (n, 3) positions (Å), need not be wrapped into the cell.
        cell: (3, 3) cell (Å), lattice vectors as rows; ignored along non-periodic directions (may be 0).
        pbc: (3,) periodicity per lattice vector.
        cutoff: neighbour cutoff (Å), edges have ``0 < length < cutoff``.
        min_distance: smallest allowed distance between two atoms, periodic images included (Å);
            ``None`` or 0 only refuses coincident atoms.
        numbers: (n,) atomic numbers, only used in error messages.
        structure: structure index, only used in error messages.

    Returns:
        ``(receivers, senders, unit_shifts)``: (E,) int64, (E,) int64, (E, 3) int64, local indices,
        sorted by receiver, sender, shift; ``vector = positions[senders] - positions[receivers] +
        unit_shifts @ cell``.

    Raises:
        ValueError: non-finite positions/cell, degenerate periodic cell, a cell too small for the
        cutoff, or two atoms (or an atom and an image) closer than ``min_distance``.
    """
    k = structure
    pos = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(-1)
    if pbc.shape == (1,):
        pbc = np.repeat(pbc, 3)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"structure {k} has positions of shape {pos.shape}; expected (n, 3)")
    if cell.shape != (3, 3) or pbc.shape != (3,):
        raise ValueError(f"structure {k} has a cell of shape {cell.shape} / pbc of shape {pbc.shape}")
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive finite number of Å, got {cutoff}")
    finite = np.isfinite(pos).all(axis=1)
    if not finite.all():
        a = int(np.nonzero(~finite)[0][0])
        raise ValueError(f"structure {k} has a non-finite (NaN or infinite) position: atom {a} at {pos[a].tolist()}")
    if not np.isfinite(cell).all():
        raise ValueError(f"structure {k} has a non-finite (NaN or infinite) cell: {cell.tolist()}")
    _check_cell(cell, pbc, k)
    box = _complete_box(cell, pbc)
    n = pos.shape[0]
    dmin = float(min_distance or 0.0)
    if not (math.isfinite(dmin) and dmin >= 0):
        raise ValueError(f"min_distance must be a finite number >= 0 Å, got {min_distance}")
    # a lattice vector shorter than min_distance: every atom is too close to its own image
    for a in np.nonzero(pbc)[0]:
        length = float(np.linalg.norm(cell[a]))
        if length < dmin and n > 0:
            raise ValueError(
                f"structure {k}: atom 0 and its periodic image (shift {tuple(int(a == b) for b in range(3))}) "
                f"are {length:.4g} Å apart, closer than min_distance = {dmin:g} Å"
            )
    search = max(cutoff, dmin)
    # a cell tiny for the cutoff would make vesin enumerate (and return) a huge number of images
    images = _images_in_cutoff(box, pbc, search)
    estimate = float(n) * n * images
    if images > 1000 and estimate > MAX_EDGES_PER_STRUCTURE:
        raise ValueError(
            f"structure {k}: the cell is too small for the cutoff {search:g} Å "
            f"(about {estimate:.3g} edges expected, limit {MAX_EDGES_PER_STRUCTURE}); check the cell {cell.tolist()}"
        )
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros((0, 3), dtype=np.int64)

    import vesin

    nl = _nl if _nl is not None and _nl.cutoff == search else vesin.NeighborList(cutoff=search, full_list=True)
    vbox = box if pbc.any() else np.zeros((3, 3))
    i, j, shifts, d = nl.compute(pos, vbox, pbc, quantities="ijSd", copy=True)
    i = i.astype(np.int64, copy=False)
    j = j.astype(np.int64, copy=False)
    shifts = shifts.astype(np.int64, copy=False)

    close = d < dmin if dmin > 0 else d <= 0.0
    if close.any():
        e = int(np.argmin(np.where(close, d, np.inf)))
        _raise_close(k, int(i[e]), int(j[e]), shifts[e], float(d[e]), dmin, numbers)
    if search > cutoff:
        keep = d < cutoff
        i, j, shifts = i[keep], j[keep], shifts[keep]
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    return i[order], j[order], shifts[order]


def _raise_close(
    k: int, i: int, j: int, shift: np.ndarray, d: float, dmin: float, numbers: np.ndarray | None
) -> NoReturn:
    def name(a: int) -> str:
        return f"atom {a} ({chemical_symbols[int(numbers[a])]})" if numbers is not None else f"atom {a}"

    s = tuple(int(x) for x in shift)
    limit = f"closer than min_distance = {dmin:g} Å" if dmin > 0 else "coincident atoms"
    if i == j:
        what = f"{name(i)} and its own periodic image (shift {s})"
    elif any(s):
        what = f"{name(i)} and the periodic image (shift {s}) of {name(j)}"
    else:
        what = f"{name(i)} and {name(j)}"
    raise ValueError(f"structure {k}: {what} are {d:.4g} Å apart, {limit}")
