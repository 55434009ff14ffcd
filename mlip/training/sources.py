"""Where training data comes from: reading files, and building graphs whose errors name the file and position.

A structure is named in messages as ``structure k of FILE`` with ``k`` its 0-based position in that
file (the same after the train/validation shuffle), so it can be found with ``ase.io.read(FILE, k)``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.backend import to_host

from ..data import Batch, SpeciesTable, batch_structures, read_structures
from .config import TrainConfig
from .errors import DataError

__all__ = ["Source", "batch_source", "fingerprint", "load_isolated_energies", "read_labelled", "smallest_distance"]


def read_labelled(path: str | os.PathLike[str], what: str = "data") -> list[Atoms]:
    """Read structures from a file; a missing, unreadable or empty file (or a folder) raises :class:`DataError`."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} file {path} is a folder, not a file of structures")
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{what} file {path} is empty: no structures")
    try:
        structures = read_structures(path)
    except Exception as err:  # ASE raises many kinds of errors for malformed files
        raise DataError(f"cannot read {what} file {path}: {err}") from err
    if not structures:
        raise DataError(f"{what} file {path} holds no structures")
    return structures


@dataclass
class Source:
    """Structures and where they come from.

    Attributes:
        name: the file (or a description of structures given directly).
        structures: the structures.
        positions: 0-based position of each structure in ``name`` (after a shuffle too).
    """

    name: str
    structures: list[Atoms]
    positions: list[int]

    @classmethod
    def of(cls, name: str, structures: Sequence[Atoms]) -> Source:
        structures = list(structures)
        return cls(name, structures, list(range(len(structures))))

    def subset(self, part: Sequence[Atoms]) -> Source:
        """The structures of ``part`` (objects of this source, e.g. from a split) with their file positions."""
        where = {id(a): k for a, k in zip(self.structures, self.positions)}
        return Source(self.name, list(part), [where[id(a)] for a in part])

    def where(self, k: int) -> str:
        """``"structure <position> of <name>"`` of the k-th structure of this list."""
        return f"structure {self.positions[k]} of {self.name}"


_STRUCTURE = re.compile(r"\bstructure (\d+)\b")


def _name_structure(text: str, source: Source) -> str:
    """Replace the list index in a message of :mod:`mlip.data` by the position in the file."""
    m = _STRUCTURE.search(text)
    if m is None or int(m.group(1)) >= len(source.positions):
        return f"{source.name}: {text}"
    return text[: m.start()] + source.where(int(m.group(1))) + text[m.end() :]


def batch_source(
    source: Source, config: TrainConfig, table: SpeciesTable, cutoff: float, element_hint: str = ""
) -> Batch:
    """All graphs of ``source`` in one batch; a bad structure raises :class:`DataError` naming it and its file."""
    req = [k for k, w in (("energy", config.energy_weight), ("forces", config.forces_weight)) if w > 0]
    req += ["stress"] if config.stress_weight > 0 else []
    try:
        return batch_structures(
            source.structures,
            cutoff,
            table,
            dtype=np.dtype(config.dtype),
            min_distance=config.min_distance,
            require_labels=tuple(req),
            energy_key=config.energy_key,
            forces_key=config.forces_key,
            stress_key=config.stress_key,
        )
    except ValueError as err:
        hint = ""
        text = str(err)
        if "has no forces" in text:
            hint = " (forces_weight > 0 needs forces on every structure; set forces_weight 0 to fit energies only)"
        elif "has no stress" in text:
            hint = " (stress_weight > 0 needs a stress or virial on every structure)"
        elif "has no energy" in text:
            hint = " (energy_weight > 0 needs an energy on every structure)"
        elif "not in the species table" in text:
            hint = element_hint or " (add the element to model.elements)"
        raise DataError(f"{_name_structure(text, source)}{hint}") from err


def smallest_distance(source: Source) -> tuple[float, str]:
    """The smallest interatomic distance (Å; periodic images of other atoms included) and where it is."""
    best, where = np.inf, "no structure has two atoms"
    for k, atoms in enumerate(source.structures):
        if len(atoms) < 2:
            continue
        d = atoms.get_all_distances(mic=bool(np.any(atoms.pbc)))
        d = d[~np.eye(len(atoms), dtype=bool)]
        if d.size and float(d.min()) < best:
            best, where = float(d.min()), source.where(k)
    return best, where


def load_isolated_energies(
    source: str | os.PathLike[str] | Sequence[Atoms], energy_key: str = "energy"
) -> dict[str, float]:
    """Per-element reference energies (eV) from single-atom structures with energies.

    Args:
        source: a file (any ASE format) or a list of structures, each a single atom with an energy.
        energy_key: the energy label.

    Returns:
        ``{symbol: energy}``.

    Raises:
        DataError: a structure with more than one atom or without an energy, or an element twice.
    """
    from ..data import labels_from_atoms

    name = str(source) if isinstance(source, (str, os.PathLike)) else "the isolated atoms"
    structures = read_labelled(source, "isolated atoms") if isinstance(source, (str, os.PathLike)) else list(source)
    if not structures:
        raise DataError(f"{name}: no isolated-atom structures")
    out: dict[str, float] = {}
    for k, atoms in enumerate(structures):
        if len(atoms) != 1:
            raise DataError(f"{name}: structure {k} has {len(atoms)} atoms; isolated-atom energies need one atom each")
        sym = atoms.get_chemical_symbols()[0]
        e = labels_from_atoms(atoms, energy_key, None, None, None, None, index=k).energy
        if e is None:
            raise DataError(f"{name}: structure {k} ({sym}) has no energy ({energy_key!r})")
        if sym in out:
            raise DataError(f"{name}: element {sym} appears twice")
        out[sym] = float(e)
    return out


def fingerprint(*batches: Batch) -> str:
    h = hashlib.sha256()
    for b in batches:
        for name in ("numbers", "positions", "cell", "energy", "forces", "stress", "weights"):
            v = getattr(b, name)
            if v is not None:
                h.update(name.encode())
                h.update(np.ascontiguousarray(to_host(v), dtype=np.float64).tobytes())
    return h.hexdigest()
