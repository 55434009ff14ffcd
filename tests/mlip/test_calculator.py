"""The ASE calculator: agreement with the model, derivatives, dynamics, errors, persistence."""

from __future__ import annotations

import importlib.util
from functools import cache

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress
from ase.filters import FrechetCellFilter
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase.stress import voigt_6_to_full_3x3_stress

from mlip.calculator import ICTPCalculator
from mlip.data import SpeciesTable, batch_structures
from mlip.model import ModelConfig, Potential

from .conftest import small_config, small_potential

POT = small_potential("even", seed=1)
POT_PC = small_potential("parity_complete", seed=2)


def molecule() -> Atoms:
    return Atoms(
        "COHHO",
        positions=[[0, 0, 0], [1.2, 0.1, 0], [-0.4, 0.9, 0.2], [-0.5, -0.8, -0.3], [2.1, 0.9, 0.4]],
    )


def periodic(seed: int = 0) -> Atoms:
    """A 2-atom C/O diamond cell, rattled and sheared (non-orthogonal cell)."""
    atoms = bulk("C", "diamond", a=3.6)
    atoms.numbers[1] = 8
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.normal(scale=0.03, size=(3, 3))), scale_atoms=True)
    return atoms


def reference(pot: Potential, atoms: Atoms, stress: bool = False) -> dict:
    b = batch_structures([atoms], pot.config.cutoff, SpeciesTable(pot.config.elements), dtype=pot.config.dtype)
    return pot.evaluate(b, forces=True, stress=stress)


# ------------------------------------------------------------------------------------ agreement


@pytest.mark.parametrize("pot", [POT, POT_PC], ids=["even", "parity_complete"])
@pytest.mark.parametrize("make", [molecule, periodic], ids=["molecule", "periodic"])
def test_energy_and_forces_equal_potential_evaluate(pot, make):
    atoms = make()
    atoms.calc = ICTPCalculator(pot)
    ref = reference(pot, atoms)
    e = atoms.get_potential_energy()
    assert isinstance(e, float)
    assert e == pytest.approx(float(ref["energy"][0]), rel=1e-14, abs=1e-14)
    assert atoms.get_potential_energy(force_consistent=True) == e
    f = atoms.get_forces()
    assert f.shape == (len(atoms), 3) and f.dtype == np.float64
    np.testing.assert_allclose(f, ref["forces"], rtol=1e-13, atol=1e-14)
    # site energies sum to the total energy
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert energies.sum() == pytest.approx(e, rel=1e-12)


def test_stress_equals_potential_evaluate_in_voigt_order():
    atoms = periodic(1)
    atoms.calc = ICTPCalculator(POT)
    ref = reference(POT, atoms, stress=True)["stress"][0]
    s = atoms.get_stress()
    assert s.shape == (6,)
    np.testing.assert_allclose(voigt_6_to_full_3x3_stress(s), ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(s, ref.flat[[0, 4, 8, 5, 2, 1]], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(atoms.get_stress(voigt=False), ref, rtol=1e-12, atol=1e-15)


def test_results_are_cached_and_refreshed_when_atoms_move():
    atoms = molecule()
    calc = ICTPCalculator(POT)
    atoms.calc = calc
    atoms.get_forces()
    first = calc.last_batch
    atoms.get_potential_energy()
    assert calc.last_batch is first  # nothing changed: no new calculation
    e0 = atoms.get_potential_energy()
    atoms.positions[0, 0] += 0.05
    assert atoms.get_potential_energy() != e0
    assert calc.last_batch is not first
    # a direct calculate() on new atoms drops the old results (no stale stress)
    crystal = periodic(0)
    calc.calculate(crystal, ["energy", "stress"])
    assert "stress" in calc.results
    calc.calculate(periodic(1), ["energy"])
    assert "stress" not in calc.results and "energies" not in calc.results


# ------------------------------------------------------------------------------------ derivatives


def position_derivatives(atoms: Atoms, quantity, h: float) -> np.ndarray:
    """Central differences ``d quantity / d positions[i, a]``, shape (n, 3, *quantity().shape)."""
    out = []
    for i in range(len(atoms)):
        for a in range(3):
            x0 = atoms.positions[i, a]
            atoms.positions[i, a] = x0 + h
            plus = np.array(quantity())
            atoms.positions[i, a] = x0 - h
            minus = np.array(quantity())
            atoms.positions[i, a] = x0
            out.append((plus - minus) / (2 * h))
    return np.array(out).reshape(len(atoms), 3, *np.shape(out[0]))


@pytest.mark.parametrize("make", [molecule, periodic], ids=["molecule", "periodic"])
def test_forces_are_minus_finite_difference_gradients_of_the_ase_energy(make):
    atoms = make()
    atoms.calc = ICTPCalculator(POT_PC)
    forces = atoms.get_forces()
    fd = -position_derivatives(atoms, atoms.get_potential_energy, 1e-5).reshape(forces.shape)
    scale = max(np.abs(fd).max(), 1e-3)
    assert np.abs(forces - fd).max() <= 1e-6 * scale


@pytest.mark.parametrize("seed", [0, 1])
def test_stress_matches_ase_numerical_stress(seed):
    atoms = periodic(seed)
    atoms.calc = ICTPCalculator(POT_PC)
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    scale = max(np.abs(numerical).max(), 1e-4)
    assert np.abs(stress - numerical).max() <= 1e-6 * scale
    # the sign is physical: compressing the cell changes the energy as -V sigma : d(strain)
    e0 = atoms.get_potential_energy()
    squeezed = atoms.copy()
    squeezed.calc = atoms.calc
    squeezed.set_cell(atoms.cell.array * (1 - 1e-4), scale_atoms=True)
    de = squeezed.get_potential_energy() - e0
    predicted = -atoms.get_volume() * 1e-4 * stress[:3].sum()
    assert de == pytest.approx(predicted, rel=1e-2, abs=1e-10)


# ------------------------------------------------------------------------------------ dynamics

CU_CELL = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))  # 8 atoms


def cu_config(**kw) -> ModelConfig:
    """:func:`small_config` for copper (cutoff 4 Å, 12 neighbours)."""
    cu = dict(elements=("Cu",), cutoff=4.0, avg_num_neighbors=12.0, atomic_energies=(-3.5,), energy_scale=4.0)
    return small_config(**{**cu, **kw})


def hessian(atoms: Atoms, h: float = 1e-3) -> np.ndarray:
    """Finite-difference Hessian d²E/dr² (eV/Å²), (3N, 3N), symmetrised."""
    n = len(atoms)
    out = -position_derivatives(atoms, atoms.get_forces, h).reshape(3 * n, 3 * n)
    return 0.5 * (out + out.T)


@cache
def stable_cu_potential() -> Potential:
    """A random Cu model for which the perfect fcc lattice is a stable minimum.

    Every atom of the perfect lattice is an inversion centre, so its forces vanish for any model; a
    random model may still make it a saddle. Take the first seed (6 with the current initialiser)
    whose Hessian has no negative curvature beyond the 3 translations and whose softest mode is
    >= 1 eV/Å² (with energy_scale 4, force constants are a few eV/Å², softer than real Cu, so 1 fs
    steps are ~150 per period of the stiffest mode).
    """
    for seed in (6, *range(40)):
        pot = Potential.create(cu_config(), seed=seed)
        atoms = CU_CELL.copy()
        atoms.calc = ICTPCalculator(pot)
        ev = np.linalg.eigvalsh(hessian(atoms))
        if ev[3] >= 1.0 and ev[0] > -1e-6:
            return pot
    raise AssertionError("no random seed gives a mechanically stable fcc Cu lattice; check the initialiser")


def test_bfgs_relaxes_a_rattled_cell_to_the_minimum():
    atoms = CU_CELL.copy()
    atoms.rattle(stdev=0.05, seed=3)
    atoms.calc = ICTPCalculator(stable_cu_potential())
    e0, fmax0 = atoms.get_potential_energy(), np.abs(atoms.get_forces()).max()
    energies = []
    opt = BFGS(atoms, logfile=None)
    opt.attach(lambda: energies.append(atoms.get_potential_energy()))
    opt.run(fmax=1e-4, steps=60)
    assert energies[1] < e0 and energies[-1] < e0
    assert np.abs(atoms.get_forces()).max() < min(1e-4, fmax0)
    perfect = CU_CELL.copy()
    perfect.calc = atoms.calc
    assert atoms.get_potential_energy() == pytest.approx(perfect.get_potential_energy(), abs=1e-6)


def test_variable_cell_relaxation_uses_the_stress():
    atoms = CU_CELL.copy()
    atoms.rattle(stdev=0.03, seed=1)
    atoms.calc = ICTPCalculator(stable_cu_potential())
    e0, s0 = atoms.get_potential_energy(), np.abs(atoms.get_stress()).max()
    assert s0 > 1e-2  # the random model's fcc lattice is far from zero stress at a = 3.61 Å
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=5e-3, steps=60)
    assert atoms.get_potential_energy() < e0
    assert np.abs(atoms.get_stress()).max() < 1e-3  # eV/Å³
    a, b, c = atoms.cell.cellpar()[:3]
    assert a == pytest.approx(2 * b, rel=1e-3) and b == pytest.approx(c, rel=1e-3)  # still cubic


def run_nve(calc, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """Velocity Verlet (1 fs) from fcc Cu at 300 K: (E_pot, E_kin) per atom (eV) and the largest displacement (Å)."""
    atoms = CU_CELL.copy()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    Stationary(atoms)
    start = atoms.positions.copy()
    n = len(atoms)
    epot, ekin = [atoms.get_potential_energy() / n], [atoms.get_kinetic_energy() / n]
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs, logfile=None)

    def record():
        epot.append(atoms.get_potential_energy() / n)
        ekin.append(atoms.get_kinetic_energy() / n)

    dyn.attach(record, interval=1)
    dyn.run(steps)
    return np.array(epot[: steps + 1]), np.array(ekin[: steps + 1]), float(np.abs(atoms.positions - start).max())


def nve_metrics(epot: np.ndarray, ekin: np.ndarray) -> dict[str, float]:
    """Total-energy drift and fluctuation of an NVE run (1 fs steps; energies per atom in eV)."""
    etot = epot + ekin
    t_ps = np.arange(etot.size) * 1e-3
    return {
        "end_minus_start": float(abs(etot[-1] - etot[0])),  # eV/atom
        "drift_meV_per_atom_per_ps": float(np.polyfit(t_ps, etot, 1)[0] * 1e3),
        "fluctuation_ratio": float(etot.std() / ekin.std()),  # std(E_total) / std(E_kin)
        "ekin_std": float(ekin.std()),
    }


class ScaledForces(ICTPCalculator):
    """A deliberately wrong calculator: forces 1.2 x -dE/dr (not conservative w.r.t. its energy)."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["forces"] = 1.2 * self.results["forces"]


def test_nve_velocity_verlet_conserves_total_energy():
    pot = stable_cu_potential()
    epot, ekin, max_disp = run_nve(ICTPCalculator(pot), steps=200)
    m = nve_metrics(epot, ekin)
    print(
        f"\nNVE 8-atom fcc Cu, 300 K, 1 fs x 200: drift {m['drift_meV_per_atom_per_ps']:+.4f} meV/atom/ps, "
        f"|E(end)-E(start)| {m['end_minus_start'] * 1e3:.4f} meV/atom, std(E_tot)/std(E_kin) "
        f"{m['fluctuation_ratio']:.2e}, max displacement {max_disp:.3f} Å"
    )
    # the dynamics are meaningful: atoms vibrate (kinetic and potential energy exchange) and stay bound
    assert m["ekin_std"] > 2e-3  # eV/atom, i.e. a sizeable fraction of 3/2 kT = 0.039 eV
    assert 0.02 < max_disp < 0.6
    # tolerances: |ΔE_tot| < 1e-3 eV/atom over 200 fs; total-energy fluctuation < 1 % of the kinetic one
    assert m["end_minus_start"] < 1e-3
    assert m["fluctuation_ratio"] < 1e-2
    assert abs(m["drift_meV_per_atom_per_ps"]) < 1.0


def test_nve_check_detects_non_conservative_forces():
    """The same metric fails for forces that are not -dE/dr (so the NVE test can fail)."""
    epot, ekin, _ = run_nve(ScaledForces(stable_cu_potential()), steps=100)
    assert nve_metrics(epot, ekin)["fluctuation_ratio"] > 5e-2


# ------------------------------------------------------------------------------------ errors


def test_stress_of_a_non_periodic_system_is_not_implemented():
    atoms = molecule()
    atoms.calc = ICTPCalculator(POT)
    with pytest.raises(PropertyNotImplementedError, match="periodic along all three"):
        atoms.get_stress()
    slab = periodic(0)
    slab.pbc = (True, True, False)
    slab.calc = ICTPCalculator(POT)
    slab.get_forces()  # energy and forces work
    with pytest.raises(PropertyNotImplementedError, match="pbc"):
        slab.get_stress()


def test_bad_structures_raise_with_their_message():
    calc = ICTPCalculator(POT)
    unknown = Atoms("CN", positions=[[0, 0, 0], [1.2, 0, 0]])
    unknown.calc = calc
    with pytest.raises(ValueError, match=r"N \(Z=7\) not in the species table"):
        unknown.get_potential_energy()
    nan = molecule()
    nan.positions[2, 1] = np.nan
    nan.calc = calc
    with pytest.raises(ValueError, match=r"non-finite .*atom 2"):
        nan.get_forces()
    close = Atoms("CO", positions=[[0, 0, 0], [0.3, 0, 0]])
    close.calc = calc
    with pytest.raises(ValueError, match=r"closer than min_distance = 0\.5"):
        close.get_potential_energy()
    close.calc = ICTPCalculator(POT, min_distance=0.2)
    assert np.isfinite(close.get_potential_energy())


def test_bad_arguments():
    with pytest.raises(ValueError, match="device"):
        ICTPCalculator(POT, device="tpu")
    with pytest.raises(ValueError, match="dtype"):
        ICTPCalculator(POT, dtype="float16")
    with pytest.raises(TypeError, match="Potential"):
        ICTPCalculator(42)
    with pytest.raises(FileNotFoundError):
        ICTPCalculator("/nonexistent/model.npz")


# ------------------------------------------------------------------------------------ options


def test_dtype_option_casts_a_copy_and_returns_float64():
    atoms = periodic(0)
    calc32 = ICTPCalculator(POT, dtype="float32")
    assert calc32.potential.config.dtype == "float32" and POT.config.dtype == "float64"
    assert all(v.dtype == np.float64 for v in POT.params.values())
    atoms.calc = calc32
    f32, s32 = atoms.get_forces(), atoms.get_stress()
    assert f32.dtype == np.float64 and s32.dtype == np.float64
    ref = reference(POT, atoms, stress=True)
    assert atoms.get_potential_energy() == pytest.approx(float(ref["energy"][0]), rel=1e-5)
    np.testing.assert_allclose(f32, ref["forces"], atol=1e-4 * np.abs(ref["forces"]).max())
    assert ICTPCalculator(POT).potential is POT  # no copy when nothing changes


def test_loads_a_saved_model_file(tmp_path):
    path = tmp_path / "model.npz"
    POT_PC.save(path)
    atoms = periodic(2)
    ref = reference(POT_PC, atoms, stress=True)
    for model in (path, str(path)):
        atoms.calc = ICTPCalculator(model=model)
        assert atoms.get_potential_energy() == float(ref["energy"][0])
        np.testing.assert_array_equal(atoms.get_forces(), ref["forces"])
        np.testing.assert_allclose(atoms.get_stress(voigt=False), ref["stress"][0], rtol=1e-14, atol=1e-16)


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="needs CuPy and a GPU")
def test_gpu_matches_cpu():
    atoms = periodic(0)
    atoms.calc = ICTPCalculator(POT, device="gpu")
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    ref = reference(POT, atoms, stress=True)
    assert isinstance(f, np.ndarray) and isinstance(s, np.ndarray)
    assert e == pytest.approx(float(ref["energy"][0]), rel=1e-10)
    np.testing.assert_allclose(f, ref["forces"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(voigt_6_to_full_3x3_stress(s), ref["stress"][0], rtol=1e-9, atol=1e-12)
    assert atoms.get_potential_energies().sum() == pytest.approx(e, rel=1e-10)
