"""Structures in, batched graphs out: species table, neighbour lists, labels and the :class:`Batch`.

Units follow ASE: positions and cells in Å, energies in eV, forces in eV/Å, stress in eV/Å³
(ASE sign convention, ``stress = (1/V) dE/dε = -virial / V``).

**Edge convention.** Edge ``e`` goes from the *sender* ``j = senders[e]`` to the *receiver*
``i = receivers[e]`` (atom ``i`` receives the message of ``j``), with ::

    vector_e = positions[j] - positions[i] + unit_shifts[e] @ cell[s]      (Å, s = edge_batch[e])

and ``0 < |vector_e| < cutoff``. The list is full (both ``i <- j`` and ``j <- i`` appear, with opposite
shifts), has no self-edge with a zero shift, and keeps periodic images of an atom itself (``i == j``,
non-zero shift) when they lie inside the cutoff. Indices are global (offset by ``ptr``), and edges are
sorted by receiver, then sender, then shift, so that a batch is deterministic. Neighbours are found by
`vesin <https://github.com/Luthaf/vesin>`_ in float64, whatever the float dtype of the batch.

Nothing here imports CuPy unless :meth:`Batch.to` is asked for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any, NoReturn

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols
from ase.stress import voigt_6_to_full_3x3_stress

__all__ = [
    "MAX_EDGES_PER_STRUCTURE",
    "Batch",
    "Labels",
    "SpeciesTable",
    "batch_structures",
    "edge_vectors",
    "labels_from_atoms",
    "neighbour_list",
    "read_structures",
]

#: An ``numpy.ndarray`` or a ``cupy.ndarray`` (after :meth:`Batch.to`).
Array = Any

#: Refuse a structure whose cell is so small for the cutoff (over 1000 images inside the cutoff sphere) that
#: it would give more edges than this (n² x images).
MAX_EDGES_PER_STRUCTURE = 50_000_000

_LABEL_NAMES = ("energy", "forces", "stress")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _float_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _element_name(z: int) -> str:
    return f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}"


# --------------------------------------------------------------------------------------------- species


class SpeciesTable:
    """Map atomic numbers to contiguous species indices ``0 .. S-1`` in the order given.

    Args:
        elements: chemical symbols (``"H"``) or atomic numbers (``1``), no repeats; the position of an
            element in this sequence is its species index.
    """

    __slots__ = ("_lookup", "numbers")

    def __init__(self, elements: Iterable[str | int]) -> None:
        numbers: list[int] = []
        for e in elements:
            if isinstance(e, str):
                if e not in atomic_numbers or e == "X":
                    raise ValueError(f"unknown chemical symbol {e!r}")
                z = atomic_numbers[e]
            elif isinstance(e, (int, np.integer)) and not isinstance(e, bool):
                z = int(e)
                if not 1 <= z < len(chemical_symbols):
                    raise ValueError(f"atomic number {z} is out of range 1..{len(chemical_symbols) - 1}")
            else:
                raise ValueError(f"an element must be a chemical symbol or an atomic number, got {e!r}")
            if z in numbers:
                raise ValueError(f"element {_element_name(z)} appears twice in the species table")
            numbers.append(z)
        if not numbers:
            raise ValueError("a species table needs at least one element")
        #: atomic numbers, in species-index order
        self.numbers: tuple[int, ...] = tuple(numbers)
        lookup = np.full(len(chemical_symbols), -1, dtype=np.int64)
        lookup[list(numbers)] = np.arange(len(numbers))
        self._lookup = lookup

    @classmethod
    def from_structures(cls, atoms_list: Iterable[Atoms]) -> SpeciesTable:
        """The table of every element present in ``atoms_list``, sorted by atomic number."""
        found: set[int] = set()
        for atoms in atoms_list:
            found.update(int(z) for z in np.unique(atoms.numbers))
        return cls(sorted(found))

    @property
    def symbols(self) -> tuple[str, ...]:
        """Chemical symbols, in species-index order."""
        return tuple(chemical_symbols[z] for z in self.numbers)

    def __len__(self) -> int:
        return len(self.numbers)

    def __contains__(self, element: object) -> bool:
        if isinstance(element, str):
            return element in self.symbols
        return element in self.numbers

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpeciesTable) and other.numbers == self.numbers

    def __hash__(self) -> int:
        return hash(self.numbers)

    def __repr__(self) -> str:
        return f"SpeciesTable({self.symbols!r})"

    def index(self, numbers: np.ndarray | Sequence[int], structure: int | None = None) -> np.ndarray:
        """Species indices of atomic numbers.

        Args:
            numbers: (N,) atomic numbers.
            structure: index of the structure they come from, only used in the error message.

        Returns:
            (N,) int64 species indices.

        Raises:
            ValueError: naming the elements missing from the table (and the structure).
        """
        z = np.asarray(numbers, dtype=np.int64).reshape(-1)
        in_range = (z >= 0) & (z < len(self._lookup))
        idx = np.full(z.shape, -1, dtype=np.int64)
        idx[in_range] = self._lookup[z[in_range]]
        if (idx < 0).any():
            unknown = ", ".join(_element_name(int(u)) for u in np.unique(z[idx < 0]))
            where = f"structure {structure} contains" if structure is not None else "found"
            raise ValueError(f"{where} element(s) {unknown} not in the species table ({', '.join(self.symbols)})")
        return idx


# --------------------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Labels:
    """Reference labels of one structure; ``None`` where absent.

    Attributes:
        energy: total energy (eV).
        forces: (n, 3) forces (eV/Å).
        stress: (3, 3) stress (eV/Å³, ASE sign convention).
        virial: (3, 3) virial (eV), ``-stress * volume``.
        weight: per-structure weight (dimensionless), ``None`` if not given.
    """

    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    virial: np.ndarray | None = None
    weight: float | None = None


def _lookup_label(atoms: Atoms, key: str | None, per_atom: bool) -> Any:
    """``atoms.info`` / ``atoms.arrays`` first, then the attached calculator's stored results."""
    if key is None:
        return None
    store = atoms.arrays if per_atom else atoms.info
    if key in store:
        return store[key]
    if not per_atom and key in atoms.arrays:  # a per-structure key stored per atom: let the shape check speak
        return atoms.arrays[key]
    calc = atoms.calc
    results = getattr(calc, "results", None) if calc is not None else None
    if isinstance(results, dict) and key in results:
        return results[key]
    return None


def _as_3x3(value: Any, what: str, where: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape == (6,):
        a = voigt_6_to_full_3x3_stress(a)
    elif a.size == 9:
        a = a.reshape(3, 3)
    else:
        raise ValueError(f"{where} has a {what} of shape {a.shape}; expected 6 (Voigt) or 9 / (3, 3) components")
    if not np.isfinite(a).all():
        raise ValueError(f"{where} has a non-finite {what}")
    return a


def labels_from_atoms(
    atoms: Atoms,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = "stress",
    virial_key: str | None = "virial",
    weight_key: str | None = "weight",
    index: int | None = None,
) -> Labels:
    """Read the reference labels of one structure.

    Each key is looked up in ``atoms.info`` (``atoms.arrays`` for forces) and then in the stored
    results of an attached calculator (``atoms.calc.results``): ASE 3.29 moves ``energy``, ``forces``
    and ``stress`` read from an extxyz file into a ``SinglePointCalculator``, and keeps other keys
    (``REF_energy``, ``virial``) in ``info`` / ``arrays``. The calculator is never asked to compute.
    Pass ``None`` as a key to skip that label.

    Args:
        atoms: the structure.
        energy_key: total energy (eV), a scalar.
        forces_key: forces (eV/Å), shape (n, 3).
        stress_key: stress (eV/Å³), 6 Voigt components (xx, yy, zz, yz, xz, xy) or a 3x3 matrix.
        virial_key: virial (eV), 6 Voigt components or a 3x3 matrix.
        weight_key: per-structure weight, a non-negative scalar.
        index: structure index, only used in error messages.

    Returns:
        The :class:`Labels` found (``None`` for each one absent).

    Raises:
        ValueError: a label present but malformed (wrong shape, not finite, not a number).
    """
    where = f"structure {index}" if index is not None else "the structure"
    energy = _lookup_label(atoms, energy_key, per_atom=False)
    if energy is not None:
        try:
            energy = float(np.asarray(energy, dtype=np.float64).item())
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} has an energy ({energy_key!r}) that is not a single number: {energy!r}") from err
        if not math.isfinite(energy):
            raise ValueError(f"{where} has a non-finite energy ({energy_key!r}): {energy}")
    forces = _lookup_label(atoms, forces_key, per_atom=True)
    if forces is not None:
        forces = np.array(forces, dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise ValueError(f"{where} has forces ({forces_key!r}) of shape {forces.shape}; expected ({len(atoms)}, 3)")
        if not np.isfinite(forces).all():
            bad = int(np.nonzero(~np.isfinite(forces).all(axis=1))[0][0])
            raise ValueError(f"{where} has non-finite forces ({forces_key!r}) on atom {bad}")
    stress = _lookup_label(atoms, stress_key, per_atom=False)
    if stress is not None:
        stress = _as_3x3(stress, f"stress ({stress_key!r})", where)
    virial = _lookup_label(atoms, virial_key, per_atom=False)
    if virial is not None:
        virial = _as_3x3(virial, f"virial ({virial_key!r})", where)
    weight = _lookup_label(atoms, weight_key, per_atom=False)
    if weight is not None:
        try:
            weight = float(np.asarray(weight, dtype=np.float64).item())
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} has a weight ({weight_key!r}) that is not a single number: {weight!r}") from err
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{where} has a weight ({weight_key!r}) that is not finite and >= 0: {weight}")
    return Labels(energy=energy, forces=forces, stress=stress, virial=virial, weight=weight)


def read_structures(path: str | PathLike[str], index: str | int | slice = ":", **kwargs: Any) -> list[Atoms]:
    """Read structures with :func:`ase.io.read` (extxyz and every other format ASE knows).

    Args:
        path: file to read.
        index: which frames, ASE syntax (``":"`` all, ``0`` first, ``"-10:"``, a slice).
        **kwargs: passed to :func:`ase.io.read` (``format=...``).

    Returns:
        A list of ``ase.Atoms`` (a single frame is also returned as a list). Labels stay where ASE puts
        them; read them with :func:`labels_from_atoms`.
    """
    import ase.io

    out = ase.io.read(path, index=index, **kwargs)
    return [out] if isinstance(out, Atoms) else list(out)


# --------------------------------------------------------------------------------------------- edges


def edge_vectors(positions: Array, cell: Array, batch: Batch) -> Array:
    """Edge vectors ``positions[senders] - positions[receivers] + unit_shifts @ cell[edge_batch]``.

    Plain array arithmetic (NumPy or CuPy, whichever ``positions`` is), linear in ``positions`` and
    ``cell``, so a caller can differentiate through both: pass strained ``positions @ (1 + ε)`` and
    ``cell @ (1 + ε)`` per structure to get the virial. Its adjoint: ``dL/dpositions`` gets
    ``+g`` at the sender and ``-g`` at the receiver, ``dL/dcell[s]`` gets ``unit_shifts[e]ᵀ g[e]``
    summed over the edges of structure ``s``, for an upstream gradient ``g`` (E, 3).

    Args:
        positions: (N, 3) positions (Å).
        cell: (S, 3, 3) cells (Å), lattice vectors as rows.
        batch: the :class:`Batch` giving the edges.

    Returns:
        (E, 3) vectors (Å) in the dtype of ``positions``.
    """
    shifts = batch.unit_shifts.astype(positions.dtype)
    cell_e = cell[batch.edge_batch]  # (E, 3, 3)
    offsets = (shifts[:, :, None] * cell_e).sum(axis=1)
    return positions[batch.senders] - positions[batch.receivers] + offsets


def reverse_edge_pairs(senders: Any, receivers: Any, unit_shifts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Group each edge with its reverse: ``(members (R, 2), group (E,))``, int64 NumPy.

    Edge ``(j -> i, S)`` and edge ``(i -> j, -S)`` have opposite vectors, hence the same length, so
    anything that depends on the length alone (radial basis, radial MLP) needs computing once per
    pair: ``f(r) == f(r[members[:, 0]])[group]``, with ``R ~ E / 2`` for a full neighbour list.
    ``members[k]`` are the two edges of pair ``k`` (the first one first; ``members[:, 0]`` is sorted),
    ``members[k, 1] == -1`` when an edge has no reverse (a hand-made graph): it is its own group, so
    the grouping is exact for any edge list.
    """
    host = (a.get() if hasattr(a, "get") else a for a in (senders, receivers, unit_shifts))
    s, r, sh = (np.asarray(a, dtype=np.int64) for a in host)
    sh = sh.reshape(len(s), 3)
    # canonical key of the unordered pair: (lo, hi, shift seen from lo); for i == j the shift up to sign
    flip = (s == r) & ((sh[:, 0] < 0) | ((sh[:, 0] == 0) & ((sh[:, 1] < 0) | ((sh[:, 1] == 0) & (sh[:, 2] < 0)))))
    swap = (s > r) | flip
    lo, hi = np.where(swap, r, s), np.where(swap, s, r)
    ksh = np.where(swap[:, None], -sh, sh)
    n = int(max(lo.max(initial=0), hi.max(initial=0))) + 1
    base = 2 * int(np.abs(ksh).max(initial=0)) + 1
    if float(n) * n * base**3 < 2.0**62:  # one int64 key per edge (fast 1-D unique)
        code = (ksh[:, 0] * base + ksh[:, 1]) * base + ksh[:, 2] + (base**3 - 1) // 2
        keys = (lo * n + hi) * base**3 + code
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    else:
        keys = np.stack([lo, hi, ksh[:, 0], ksh[:, 1], ksh[:, 2]], axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[inverse.reshape(-1)].astype(np.int64)
    members = np.full((len(order), 2), -1, dtype=np.int64)
    members[:, 0] = first[order]
    rest = np.ones(len(s), dtype=bool)
    rest[members[:, 0]] = False
    others = np.flatnonzero(rest)
    members[group[others], 1] = others
    return members, group


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


# --------------------------------------------------------------------------------------------- batch


@dataclass(frozen=True, eq=False)
class Batch:
    """Many structures concatenated into one graph (N atoms, E edges, S structures).

    Integer arrays are int64, float arrays share one dtype (float32 or float64). See the module
    docstring for the edge convention. Labels are ``None`` when no structure of the batch has them;
    otherwise missing entries are zero and the matching ``*_mask`` (S,) bool is False.

    Attributes:
        positions: (N, 3) positions (Å), as given (not wrapped).
        numbers: (N,) atomic numbers.
        species: (N,) species indices in ``species_table``.
        cell: (S, 3, 3) cells (Å), lattice vectors as rows, as given (zero allowed when not periodic).
        pbc: (S, 3) bool periodicity.
        batch: (N,) structure index of each atom.
        ptr: (S + 1,) atom offsets: structure ``s`` holds atoms ``ptr[s]:ptr[s+1]``.
        n_atoms: (S,) atoms per structure.
        receivers: (E,) receiving atom ``i`` of each edge (global index).
        senders: (E,) sending atom ``j`` of each edge (global index).
        unit_shifts: (E, 3) integer lattice shifts.
        edge_batch: (E,) structure index of each edge.
        n_edges: (S,) edges per structure.
        cutoff: neighbour cutoff (Å).
        species_table: the :class:`SpeciesTable` used.
        weights: (S,) per-structure weights (1 unless given).
        energy: (S,) energies (eV) or ``None``.
        forces: (N, 3) forces (eV/Å) or ``None``.
        stress: (S, 3, 3) stress (eV/Å³, ASE sign) or ``None``; a virial label ``W`` is stored as
            ``-W / volume``.
        energy_mask, forces_mask, stress_mask: (S,) bool, which structures have the label.
    """

    positions: Array
    numbers: Array
    species: Array
    cell: Array
    pbc: Array
    batch: Array
    ptr: Array
    n_atoms: Array
    receivers: Array
    senders: Array
    unit_shifts: Array
    edge_batch: Array
    n_edges: Array
    cutoff: float
    species_table: SpeciesTable
    weights: Array
    energy: Array | None = None
    forces: Array | None = None
    stress: Array | None = None
    energy_mask: Array | None = None
    forces_mask: Array | None = None
    stress_mask: Array | None = None

    _FLOAT_FIELDS = ("positions", "cell", "weights", "energy", "forces", "stress")

    @property
    def num_structures(self) -> int:
        """S."""
        return int(self.n_atoms.shape[0])

    @property
    def num_atoms(self) -> int:
        """N."""
        return int(self.positions.shape[0])

    @property
    def num_edges(self) -> int:
        """E."""
        return int(self.receivers.shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The float dtype of positions, cells and labels."""
        return np.dtype(self.positions.dtype)

    def edge_vectors(self, positions: Array | None = None, cell: Array | None = None) -> Array:
        """(E, 3) edge vectors (Å); see :func:`edge_vectors`. Defaults to the batch's own arrays."""
        return edge_vectors(
            self.positions if positions is None else positions, self.cell if cell is None else cell, self
        )

    def edge_lengths(self) -> Array:
        """(E,) edge lengths (Å)."""
        v = self.edge_vectors()
        return (v * v).sum(axis=1) ** 0.5

    def arrays(self) -> dict[str, Array]:
        """Every array field by name (``None`` labels left out)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None and f.name not in ("cutoff", "species_table"):
                out[f.name] = v
        return out

    def astype(self, dtype: Any) -> Batch:
        """The same batch with float arrays cast to ``dtype`` (float32 or float64)."""
        dt = _float_dtype(dtype)
        changes = {
            name: getattr(self, name).astype(dt) for name in self._FLOAT_FIELDS if getattr(self, name) is not None
        }
        return dataclasses.replace(self, **changes)

    def to(self, xp: Any) -> Batch:
        """The same batch with every array moved to the array module ``xp``.

        Args:
            xp: ``numpy`` or ``cupy`` (the module) or its name ``"numpy"`` / ``"cupy"``. CuPy is only
                imported when named here.
        """
        if isinstance(xp, str):
            if xp not in ("numpy", "cupy"):
                raise ValueError(f"unknown array module {xp!r}; use 'numpy' or 'cupy'")
            import importlib

            xp = importlib.import_module(xp)
        if xp is np:

            def move(a: Array) -> np.ndarray:
                return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
        else:

            def move(a: Array) -> Array:
                return xp.asarray(a)

        return dataclasses.replace(self, **{name: move(a) for name, a in self.arrays().items()})

    as_arrays = to


def _stack_label(values: list[np.ndarray | None], shape: tuple[int, ...], dt: np.dtype) -> tuple[Any, Any]:
    mask = np.array([v is not None for v in values], dtype=bool)
    if not mask.any():
        return None, None
    out = np.zeros((len(values), *shape), dtype=dt)
    for s, v in enumerate(values):
        if v is not None:
            out[s] = v
    return out, mask


def _required(require_labels: bool | Iterable[str]) -> tuple[str, ...]:
    if require_labels is True:
        return ("energy", "forces")
    if require_labels is False or require_labels is None:
        return ()
    req = (require_labels,) if isinstance(require_labels, str) else tuple(require_labels)
    bad = [r for r in req if r not in _LABEL_NAMES]
    if bad:
        raise ValueError(f"unknown label(s) {bad} in require_labels; choose from {_LABEL_NAMES}")
    return req


def batch_structures(
    atoms_list: Sequence[Atoms] | Atoms,
    cutoff: float,
    species_table: SpeciesTable,
    dtype: Any = np.float64,
    min_distance: float | None = 0.5,
    require_labels: bool | Iterable[str] = False,
    *,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = "stress",
    virial_key: str | None = "virial",
    weight_key: str | None = "weight",
) -> Batch:
    """Validate structures, find their neighbours and concatenate them into one :class:`Batch`.

    Args:
        atoms_list: the structures (a single ``Atoms`` is taken as a list of one).
        cutoff: neighbour cutoff (Å).
        species_table: maps atomic numbers to species indices.
        dtype: float dtype of positions, cells and labels: float32 or float64.
        min_distance: smallest allowed interatomic distance, periodic images included (Å);
            ``None`` or 0 only refuses coincident atoms.
        require_labels: ``True`` for energy and forces, or a collection of ``"energy"``, ``"forces"``,
            ``"stress"`` (a virial label also counts as stress); ``False`` requires nothing.
        energy_key, forces_key, stress_key, virial_key, weight_key: label keys, see
            :func:`labels_from_atoms`.

    Returns:
        The batch, arrays in NumPy.

    Raises:
        ValueError: naming the structure index and the problem: no structures, a structure with no
        atoms, non-finite positions or cell, an element not in the table, a degenerate periodic cell,
        atoms (or images) closer than ``min_distance``, a required label missing or a malformed one.
    """
    if isinstance(atoms_list, Atoms):
        atoms_list = [atoms_list]
    atoms_list = list(atoms_list)
    if not atoms_list:
        raise ValueError("the list of structures is empty: nothing to batch")
    if not isinstance(species_table, SpeciesTable):
        raise ValueError(f"species_table must be a SpeciesTable, got {type(species_table).__name__}")
    dt = _float_dtype(dtype)
    cutoff = float(cutoff)
    if not (math.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive finite number of Å, got {cutoff}")
    required = _required(require_labels)

    import vesin

    search = max(cutoff, float(min_distance or 0.0))
    nl = vesin.NeighborList(cutoff=search, full_list=True)

    S = len(atoms_list)
    n_atoms = np.zeros(S, dtype=np.int64)
    n_edges = np.zeros(S, dtype=np.int64)
    cells = np.zeros((S, 3, 3), dtype=np.float64)
    pbcs = np.zeros((S, 3), dtype=bool)
    pos_l: list[np.ndarray] = []
    num_l: list[np.ndarray] = []
    spec_l: list[np.ndarray] = []
    recv_l: list[np.ndarray] = []
    send_l: list[np.ndarray] = []
    shift_l: list[np.ndarray] = []
    energies: list[Any] = []
    forces: list[Any] = []
    stresses: list[Any] = []
    weights = np.ones(S, dtype=np.float64)
    offset = 0
    for k, atoms in enumerate(atoms_list):
        if not isinstance(atoms, Atoms):
            raise ValueError(f"structure {k} is a {type(atoms).__name__}, not an ase.Atoms")
        n = len(atoms)
        if n == 0:
            raise ValueError(f"structure {k} has no atoms")
        numbers = atoms.numbers
        species = species_table.index(numbers, structure=k)
        pos = atoms.positions
        cell = atoms.cell.array
        pbc = np.asarray(atoms.pbc, dtype=bool)
        i, j, s = neighbour_list(
            pos, cell, pbc, cutoff, min_distance=min_distance, numbers=numbers, structure=k, _nl=nl
        )
        lab = labels_from_atoms(atoms, energy_key, forces_key, stress_key, virial_key, weight_key, index=k)
        stress = lab.stress
        if stress is None and lab.virial is not None:
            volume = abs(float(np.linalg.det(cell)))
            if not (pbc.all() and volume > 0):
                raise ValueError(f"structure {k} has a virial but no 3D periodic cell volume to turn it into a stress")
            stress = -lab.virial / volume
        for name, value in (("energy", lab.energy), ("forces", lab.forces), ("stress", stress)):
            if name in required and value is None:
                extra = " or virial" if name == "stress" else ""
                raise ValueError(
                    f"structure {k} has no {name}{extra} (looked in atoms.info/atoms.arrays and the calculator results)"
                )
        energies.append(lab.energy)
        forces.append(lab.forces)
        stresses.append(stress)
        if lab.weight is not None:
            weights[k] = lab.weight

        n_atoms[k] = n
        n_edges[k] = i.shape[0]
        cells[k] = cell
        pbcs[k] = pbc
        pos_l.append(pos)
        num_l.append(numbers)
        spec_l.append(species)
        recv_l.append(i + offset)
        send_l.append(j + offset)
        shift_l.append(s)
        offset += n

    ptr = np.zeros(S + 1, dtype=np.int64)
    np.cumsum(n_atoms, out=ptr[1:])
    batch_index = np.repeat(np.arange(S, dtype=np.int64), n_atoms)
    energy, energy_mask = _stack_label([None if e is None else np.float64(e) for e in energies], (), dt)
    if any(f is not None for f in forces):
        forces_arr = np.zeros((offset, 3), dtype=dt)
        for k, f in enumerate(forces):
            if f is not None:
                forces_arr[ptr[k] : ptr[k + 1]] = f
        forces_mask = np.array([f is not None for f in forces], dtype=bool)
    else:
        forces_arr, forces_mask = None, None
    stress_arr, stress_mask = _stack_label(stresses, (3, 3), dt)

    return Batch(
        positions=np.concatenate(pos_l).astype(dt),
        numbers=np.concatenate(num_l).astype(np.int64),
        species=np.concatenate(spec_l),
        cell=cells.astype(dt),
        pbc=pbcs,
        batch=batch_index,
        ptr=ptr,
        n_atoms=n_atoms,
        receivers=np.concatenate(recv_l),
        senders=np.concatenate(send_l),
        unit_shifts=np.concatenate(shift_l).reshape(-1, 3),
        edge_batch=np.repeat(np.arange(S, dtype=np.int64), n_edges),
        n_edges=n_edges,
        cutoff=cutoff,
        species_table=species_table,
        weights=weights.astype(dt),
        energy=energy,
        forces=forces_arr,
        stress=stress_arr,
        energy_mask=energy_mask,
        forces_mask=forces_mask,
        stress_mask=stress_mask,
    )
