"""Predictions of a trained potential on structures (no labels needed), and the backend in use.

Units follow ASE: energies in eV, forces in eV/Å, stress in eV/Å³.

* :func:`load_potential` reads a model file onto a device (``numpy`` CPU or ``cupy`` GPU; a missing
  CuPy is a one-line :class:`RuntimeError`, never a traceback);
* :func:`predict` evaluates it on structures in batches (:class:`Predictions`);
* :func:`backend_line` is the line every ``mlip`` command prints first: array module, compiled kernels
  or the reason they are missing, threads (:mod:`cartesian_irreps.runtime.kernels`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.backend import device_name, module_for_device, to_host
from cartesian_irreps.runtime.kernels import describe_backend, warn_if_slow

from .data import SpeciesTable, batch_structures
from .model import Potential

__all__ = ["Predictions", "backend_line", "device_module", "load_potential", "predict"]


def device_module(device: str) -> ModuleType:
    """The array module of ``device`` (numpy/cpu or cupy/gpu/cuda); no CuPy is a clear ``RuntimeError``."""
    if device_name(device) == "cupy":
        return module_for_device(device)  # raises RuntimeError naming the fix when CuPy is missing
    return np


def backend_line(device: str = "numpy") -> str:
    """``"backend: <description>"`` for ``device``; also warns (RuntimeWarning) when NumPy runs without
    the compiled kernels (see :func:`cartesian_irreps.runtime.kernels.warn_if_slow`).

    Raises:
        RuntimeError: ``device`` is ``cupy`` and CuPy does not import.
    """
    name = device_name(device)
    device_module(name)  # no CuPy for device cupy: RuntimeError naming the fix, before any work
    warn_if_slow(name, stacklevel=3)
    return f"backend: {describe_backend(name)}"


def load_potential(model: Potential | str | os.PathLike[str], device: str = "numpy") -> Potential:
    """A :class:`Potential` from itself or a model file (parameters moved to ``device``: numpy/cupy)."""
    if isinstance(model, Potential):
        return model
    xp = device_module(device)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    return Potential.load(path, xp=None if xp is np else xp)


@dataclass
class Predictions:
    """Model outputs for S structures (N atoms in all), as float64 NumPy arrays.

    Attributes:
        energy: (S,) total energies (eV).
        forces: (N, 3) forces (eV/Å), structures concatenated in order.
        n_atoms: (S,) atoms per structure.
        stress: (S, 3, 3) stress (eV/Å³) or ``None``.
    """

    energy: np.ndarray
    forces: np.ndarray
    n_atoms: np.ndarray
    stress: np.ndarray | None = None

    @property
    def offsets(self) -> np.ndarray:
        """(S + 1,) first atom of each structure in :attr:`forces`, then N."""
        return np.concatenate([[0], np.cumsum(self.n_atoms)])

    def forces_of(self, s: int) -> np.ndarray:
        """(n_s, 3) forces of structure ``s`` (eV/Å)."""
        ptr = self.offsets
        return self.forces[ptr[s] : ptr[s + 1]]


def predict(
    model: Potential | str | os.PathLike[str],
    structures: Sequence[Atoms],
    batch_size: int = 10,
    stress: bool = False,
    min_distance: float | None = 0.5,
    device: str = "numpy",
) -> Predictions:
    """Energies, forces (and stress) of ``structures`` with a potential; labels are not read.

    Args:
        model: a :class:`Potential` or a model file.
        structures: the structures (elements must be among the model's).
        batch_size: structures per evaluation (memory only).
        stress: also the stress (needs 3D periodic cells).
        min_distance: smallest allowed interatomic distance (Å).
        device: ``"numpy"`` or ``"cupy"``.

    Returns:
        :class:`Predictions`.

    Raises:
        ValueError: no structures, ``batch_size < 1``, or a structure the model cannot take (named by index).
        RuntimeError: ``device="cupy"`` without CuPy.
    """
    xp = device_module(device)
    pot = load_potential(model, device)
    structures = list(structures)
    if not structures:
        raise ValueError("no structures to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    table = SpeciesTable(pot.config.elements)
    dt = np.dtype(pot.config.dtype)
    energies, forces, stresses = [], [], []
    for i in range(0, len(structures), batch_size):
        chunk = structures[i : i + batch_size]
        try:
            b = batch_structures(
                chunk,
                pot.config.cutoff,
                table,
                dtype=dt,
                min_distance=min_distance,
                energy_key=None,
                forces_key=None,
                stress_key=None,
                virial_key=None,
                weight_key=None,
            )
        except ValueError as err:
            raise ValueError(f"structures {i}..{i + len(chunk) - 1}: {err}") from err
        if xp is not np:
            b = b.to(xp)
        out = pot.evaluate(b, forces=True, stress=stress)
        energies.append(to_host(out["energy"]).astype(np.float64))
        forces.append(to_host(out["forces"]).astype(np.float64))
        if stress:
            stresses.append(to_host(out["stress"]).astype(np.float64))
    return Predictions(
        energy=np.concatenate(energies),
        forces=np.concatenate(forces),
        n_atoms=np.array([len(a) for a in structures], dtype=np.int64),
        stress=np.concatenate(stresses) if stress else None,
    )
