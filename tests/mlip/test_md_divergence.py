"""``mlip md`` never reports a blown-up run as a success.

Cases: runaway temperature (a diverged model: atoms pushed apart ever harder), a non-finite energy,
a jump of the NVE total energy, and the command line (exit 1, one ``error:`` line, the trajectory and
energies written so far kept). The models here are ASE calculators with known, deliberately bad
behaviour, put in place of the trained potential's calculator.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes

import mlip.md
from mlip.cli import main
from mlip.data import read_structures
from mlip.evaluation import MDDiverged, md_file, run_md
from mlip.model import ModelConfig, Potential
from mlip.reference_data import write_dataset


class Exploding(Calculator):
    """E = -k |r - r0|^2 summed over atoms: every atom is pushed away from its start ever harder."""

    implemented_properties = ("energy", "forces")

    def __init__(self, k: float = 50.0, nan_after: int | None = None, jump_after: int | None = None) -> None:
        super().__init__()
        self.k, self.nan_after, self.jump_after, self.calls, self.r0 = k, nan_after, jump_after, 0, None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        if self.r0 is None:
            self.r0 = atoms.positions.copy()
        d = atoms.positions - self.r0
        energy = -self.k * float(np.sum(d * d))
        self.calls += 1
        if self.nan_after is not None and self.calls > self.nan_after:
            energy = float("nan")
        if self.jump_after is not None and self.calls > self.jump_after:
            energy += 500.0  # inconsistent with the forces: total energy not conserved
        self.results = {"energy": energy, "forces": 2.0 * self.k * d}


@pytest.fixture()
def pot() -> Potential:
    cfg = ModelConfig(elements=("Cu",), channels=2, lmax=1, correlation=1, cutoff=3.0, radial_hidden=(4,))
    return Potential.create(cfg, seed=0)


@pytest.fixture()
def cu() -> Atoms:
    return bulk("Cu", "fcc", a=3.61, cubic=True)


def _use(monkeypatch, calc: Calculator) -> None:
    monkeypatch.setattr(mlip.md, "_calculator", lambda pot, device: calc)


def test_runaway_temperature_stops_the_run(monkeypatch, pot, cu):
    _use(monkeypatch, Exploding(k=50.0, jump_after=None))
    with pytest.raises(MDDiverged, match=r"MD diverged at step \d+ .*temperature .* K exceeds 1.3e\+04 K") as exc:
        run_md(pot, cu, steps=2000, temperature_K=300.0, max_energy_change_ev_atom=None)
    assert 0 < exc.value.step < 2000
    assert exc.value.samples[-1, 3] > 1.3e4  # the last sample is the blown-up one


def test_non_finite_energy_stops_the_run(monkeypatch, pot, cu):
    _use(monkeypatch, Exploding(k=0.0, nan_after=6))
    with pytest.raises(MDDiverged, match="non-finite energy or positions"):
        run_md(pot, cu, steps=50, temperature_K=300.0)


def test_nve_energy_jump_stops_the_run(monkeypatch, pot, cu):
    _use(monkeypatch, Exploding(k=0.0, jump_after=4))
    with pytest.raises(MDDiverged, match=r"total energy moved 125 eV/atom from its start \(limit 1 eV/atom\)"):
        run_md(pot, cu, steps=50, temperature_K=300.0)
    # Langevin exchanges energy with the bath: the energy check is NVE only, the temperature check stays
    _use(monkeypatch, Exploding(k=0.0, jump_after=4))
    res = run_md(pot, cu, steps=10, temperature_K=300.0, ensemble="langevin")
    assert res.steps == 10


def test_a_quiet_run_is_not_stopped(monkeypatch, pot, cu):
    _use(monkeypatch, Exploding(k=0.0))  # free particles: constant energy and temperature
    res = run_md(pot, cu, steps=20, temperature_K=300.0)
    assert res.steps == 20 and np.allclose(res.temperature, res.temperature[0])


def test_bad_guard_settings(pot, cu):
    with pytest.raises(ValueError, match="must be > 0"):
        run_md(pot, cu, steps=2, max_temperature_K=0.0)


def test_md_file_keeps_what_was_written(monkeypatch, pot, cu, tmp_path):
    _use(monkeypatch, Exploding(k=50.0))
    with pytest.raises(MDDiverged, match=r"kept: .*md_trajectory\.extxyz.*md_energies\.csv") as exc:
        md_file(pot, cu, tmp_path, steps=2000, trajectory_every=2, log_every=2, max_energy_change_ev_atom=None)
    frames = read_structures(tmp_path / "md_trajectory.extxyz")
    assert len(frames) >= 2
    rows = list(csv.DictReader((tmp_path / "md_energies.csv").open()))
    assert len(rows) >= 2 and float(rows[-1]["temperature_K"]) > 1.3e4
    assert exc.value.step >= 2 * (len(frames) - 1)


def test_md_command_exits_1_with_one_error_line(monkeypatch, pot, cu, tmp_path, capsys):
    model, start = tmp_path / "model.npz", tmp_path / "start.xyz"
    pot.save(model)
    write_dataset([cu], start)
    _use(monkeypatch, Exploding(k=50.0))
    out = tmp_path / "md"
    code = main(["md", str(model), str(start), "--steps", "2000", "--output", str(out), "--max-energy-change", "1e9"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("backend:") and err[-1].startswith("error: MD diverged at step")
    assert (out / "md_trajectory.extxyz").is_file() and (out / "md_energies.csv").is_file()
    assert not (out / "md_summary.json").exists()  # no success summary for a failed run


def test_md_command_temperature_limit_flag(monkeypatch, pot, cu, tmp_path, capsys):
    model, start = tmp_path / "model.npz", tmp_path / "start.xyz"
    pot.save(model)
    write_dataset([cu], start)
    _use(monkeypatch, Exploding(k=0.0))
    args = ["md", str(model), str(start), "--steps", "5", "--output", str(tmp_path / "o"), "--max-temperature", "10"]
    assert main(args) == 1
    assert "exceeds 10 K" in capsys.readouterr().err
