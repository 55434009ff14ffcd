"""The :class:`Batch` (many structures as one graph) and :func:`batch_structures`, which builds it.

See :mod:`mlip.data` for units and the edge convention.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.fused import GraphIndex

from .graph import EdgePairs, edge_vectors
from .neighbours import neighbour_list
from .reading import LABEL_NAMES, labels_from_atoms
from .species import SpeciesTable

__all__ = ["Batch", "batch_structures"]

#: An ``numpy.ndarray`` or a ``cupy.ndarray`` (after :meth:`Batch.to`).
Array = Any

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: the fields the edge topology cache depends on
_TOPOLOGY_FIELDS = ("senders", "receivers", "unit_shifts")


def _float_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


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

    The edge topology (:meth:`graph_index`, :meth:`edge_pairs`) depends on ``senders``, ``receivers``,
    ``unit_shifts`` and N only; it is computed once per batch, kept by :meth:`replace`, :meth:`astype`
    and :meth:`to` when those stay the same (new positions keep it), and concatenated by
    :meth:`concatenate`. Change the edge arrays in place and the cache is stale: build a new Batch.
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
    #: what depends on the edges only (:meth:`edge_pairs`, :meth:`graph_index`), built on first use
    _topology: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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

    def edge_pairs(self) -> EdgePairs:
        """Each edge grouped with its reverse (:func:`reverse_edge_pairs`), computed once per batch."""
        got = self._topology.get("pairs")
        if got is None:
            got = self._topology["pairs"] = EdgePairs.of(self.senders, self.receivers, self.unit_shifts)
        return got

    def set_edge_pairs(self, pairs: EdgePairs) -> None:
        """Cache ``pairs`` as this batch's edge pairs (known from elsewhere, e.g. concatenated parts).

        Raises:
            ValueError: ``pairs`` does not have one group entry per edge.
        """
        if pairs.group.shape != (self.num_edges,) or pairs.members.ndim != 2 or pairs.members.shape[1] != 2:
            raise ValueError(
                f"edge pairs of {pairs.group.shape[0]} edges / members {pairs.members.shape} do not fit "
                f"a batch of {self.num_edges} edges"
            )
        self._topology["pairs"] = pairs

    def graph_index(self) -> GraphIndex:
        """The :class:`~cartesian_irreps.runtime.fused.GraphIndex` of the edges (the orderings the graph
        kernels walk), computed once per batch."""
        got = self._topology.get("graph")
        if got is None:
            got = self._topology["graph"] = GraphIndex.build(self.senders, self.receivers, self.num_atoms)
        return got

    def replace(self, **changes: Any) -> Batch:
        """:func:`dataclasses.replace` that keeps the edge topology cache when the edges and the number
        of atoms stay the same (e.g. new positions for an MD step on the same neighbour list)."""
        same = all(changes.get(name, value) is value for name, value in self._edge_fields())
        return self._replaced(changes, keep_topology=same)

    def _edge_fields(self) -> tuple[tuple[str, Any], ...]:
        return tuple((name, getattr(self, name)) for name in _TOPOLOGY_FIELDS)

    def _replaced(self, changes: dict[str, Any], keep_topology: bool) -> Batch:
        out = dataclasses.replace(self, **changes)
        if keep_topology and out.num_atoms == self.num_atoms:
            object.__setattr__(out, "_topology", self._topology)
        return out

    @classmethod
    def concatenate(cls, graphs: Sequence[Batch]) -> Batch:
        """Batches joined into one (see :func:`mlip.data.collate.concatenate_batches`); the edge pairs
        of the parts (computed once per part) are concatenated, not recomputed."""
        from .collate import concatenate_batches

        return concatenate_batches(graphs)

    def edge_lengths(self) -> Array:
        """(E,) edge lengths (Å)."""
        v = self.edge_vectors()
        return (v * v).sum(axis=1) ** 0.5

    def arrays(self) -> dict[str, Array]:
        """Every array field by name (``None`` labels left out)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None and f.name not in ("cutoff", "species_table", "_topology"):
                out[f.name] = v
        return out

    def astype(self, dtype: Any) -> Batch:
        """The same batch with float arrays cast to ``dtype`` (float32 or float64)."""
        dt = _float_dtype(dtype)
        changes = {
            name: getattr(self, name).astype(dt) for name in self._FLOAT_FIELDS if getattr(self, name) is not None
        }
        return self._replaced(changes, keep_topology=True)

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

        # the same edges on another device: the topology (host arrays, device copies cached) stays valid
        return self._replaced({name: move(a) for name, a in self.arrays().items()}, keep_topology=True)

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
    bad = [r for r in req if r not in LABEL_NAMES]
    if bad:
        raise ValueError(f"unknown label(s) {bad} in require_labels; choose from {LABEL_NAMES}")
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
