"""Reading structures (any format ASE reads) and their reference labels (energy, forces, stress, virial).

Units follow ASE: energies in eV, forces in eV/Å, stress in eV/Å³ (``stress = (1/V) dE/dε = -virial / V``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

__all__ = ["LABEL_NAMES", "Labels", "labels_from_atoms", "read_structures"]

#: the labels a batch can carry
LABEL_NAMES = ("energy", "forces", "stress")


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


def _number(value: Any, what: str) -> float:
    """``value`` as one float, or a ValueError "<what> that is not a single number"."""
    try:
        return float(np.asarray(value, dtype=np.float64).item())
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} that is not a single number: {value!r}") from err


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
        energy = _number(energy, f"{where} has an energy ({energy_key!r})")
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
        weight = _number(weight, f"{where} has a weight ({weight_key!r})")
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
