"""Molecular dynamics with a trained potential through ASE, stopped when it diverges.

Units follow ASE: energies in eV, times in fs (input) and ps (output), temperatures in K.

* :func:`run_md` runs NVE (velocity Verlet) or Langevin dynamics with
  :class:`mlip.calculator.ICTPCalculator`, writes the trajectory, and reports the total-energy drift
  (meV/atom/ps, slope of a least-squares line) and the speed (steps/s);
* :func:`md_file` adds the energy log (CSV), a summary (JSON) and the energy plot (PNG).

Blow-up guard: after every step the run stops with :class:`MDDiverged` (the trajectory and energies
written so far are kept) when the energy or a position is not finite, the kinetic temperature exceeds
``max_temperature_K`` (default ``10 * temperature_K + 1e4`` K), or, in NVE, the total energy moved by
more than ``max_energy_change_ev_atom`` (default 1 eV/atom) from its start: a diverged model must never
produce a quiet 1e83 K run with exit status 0.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from .model import Potential
from .predict import load_potential

__all__ = ["MDDiverged", "MDError", "MDResult", "md_file", "run_md"]


class MDError(RuntimeError):
    """The dynamics could not go on (e.g. atoms came closer than the allowed distance)."""


class MDDiverged(MDError):
    """The dynamics blew up (non-finite values, runaway temperature or energy); the run was stopped.

    Attributes:
        step: the step at which it was detected.
        samples: (T, 4) rows ``(time_ps, potential_eV, kinetic_eV, temperature_K)`` sampled so far.
        files: files written so far (trajectory, energies).
    """

    def __init__(self, message: str, step: int, samples: np.ndarray, files: dict[str, Path]) -> None:
        super().__init__(message)
        self.step = step
        self.samples = samples
        self.files = files


@dataclass
class MDResult:
    """An MD run.

    Attributes:
        ensemble: ``"nve"`` or ``"langevin"``.
        steps: steps done.
        timestep_fs: time step (fs).
        n_atoms: atoms.
        times_ps: (T,) sample times (ps).
        potential, kinetic, total: (T,) energies (eV).
        temperature: (T,) kinetic temperature (K).
        drift_mev_atom_ps: slope of the total energy per atom (meV/atom/ps) by least squares (only
            meaningful for NVE: Langevin exchanges energy with the bath).
        max_deviation_mev_atom: largest |E_tot(t) - E_tot(0)| per atom (meV/atom).
        steps_per_second: speed, MD steps (force calls) per wall-clock second.
        seconds: wall time of the dynamics (s).
        final: the final structure.
        files: written files.
    """

    ensemble: str
    steps: int
    timestep_fs: float
    n_atoms: int
    times_ps: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    total: np.ndarray
    temperature: np.ndarray
    drift_mev_atom_ps: float
    max_deviation_mev_atom: float
    steps_per_second: float
    seconds: float
    final: Atoms
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The scalar results by name."""
        return {
            "ensemble": self.ensemble,
            "steps": self.steps,
            "timestep_fs": self.timestep_fs,
            "n_atoms": self.n_atoms,
            "duration_ps": float(self.times_ps[-1]) if len(self.times_ps) else 0.0,
            "mean_temperature_K": float(np.mean(self.temperature)),
            "drift_mev_atom_ps": self.drift_mev_atom_ps,
            "max_deviation_mev_atom": self.max_deviation_mev_atom,
            "steps_per_second": self.steps_per_second,
        }


def _calculator(pot: Potential, device: str) -> Any:
    from .calculator import ICTPCalculator

    return ICTPCalculator(pot, device="gpu" if device == "cupy" else "cpu")


def run_md(
    model: Potential | str | os.PathLike[str],
    atoms: Atoms,
    *,
    ensemble: str = "nve",
    temperature_K: float = 300.0,
    timestep_fs: float = 2.0,
    steps: int = 500,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    log_every: int = 5,
    trajectory: str | os.PathLike[str] | None = None,
    trajectory_every: int = 10,
    device: str = "numpy",
    max_temperature_K: float | None = None,
    max_energy_change_ev_atom: float | None = 1.0,
) -> MDResult:
    """Molecular dynamics with the potential through ASE.

    Momenta are drawn from a Maxwell-Boltzmann distribution at ``temperature_K`` (seeded
    :class:`numpy.random.Generator`; centre-of-mass motion removed), then ``steps`` steps of velocity
    Verlet (``"nve"``) or Langevin (``"langevin"``, friction in 1/fs) are run.

    Args:
        model: a :class:`Potential` or a model file.
        atoms: the starting structure (copied; not modified).
        ensemble: ``"nve"`` or ``"langevin"``.
        temperature_K: initial (and, for Langevin, bath) temperature (K).
        timestep_fs: time step (fs).
        steps: number of steps.
        friction_per_fs: Langevin friction (1/fs).
        seed: seed of the momenta and of the Langevin noise.
        log_every: energies are sampled every this many steps (and at step 0).
        trajectory: file for the trajectory (``.traj`` ASE trajectory, otherwise extxyz), or ``None``.
        trajectory_every: frames written every this many steps.
        device: ``"numpy"`` or ``"cupy"``.
        max_temperature_K: stop when the kinetic temperature exceeds it (K); default
            ``10 * temperature_K + 1e4``.
        max_energy_change_ev_atom: NVE only: stop when ``|E_tot(t) - E_tot(0)| / N`` exceeds it (eV/atom);
            ``None`` disables this check.

    Returns:
        :class:`MDResult`.

    Raises:
        ValueError: bad arguments; MDDiverged: the run blew up (checked after every step; what was
        written so far is kept); MDError: the structure became invalid during the run.
    """
    from ase import units
    from ase.md import velocitydistribution as vd

    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    if not (steps >= 1 and timestep_fs > 0 and temperature_K >= 0 and log_every >= 1 and trajectory_every >= 1):
        raise ValueError("need steps >= 1, timestep_fs > 0, temperature_K >= 0, log_every >= 1, trajectory_every >= 1")
    if ensemble == "langevin" and not friction_per_fs > 0:
        raise ValueError(f"friction_per_fs must be > 0, got {friction_per_fs}")
    t_max = 10.0 * temperature_K + 1e4 if max_temperature_K is None else float(max_temperature_K)
    if not t_max > 0 or (max_energy_change_ev_atom is not None and not max_energy_change_ev_atom > 0):
        raise ValueError("max_temperature_K and max_energy_change_ev_atom must be > 0")
    pot = load_potential(model, device)
    rng = np.random.default_rng(seed)
    atoms = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=atoms.pbc)
    atoms.calc = _calculator(pot, device)
    if hasattr(vd, "thermalize_momenta"):  # ASE >= 3.29
        vd.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:  # pragma: no cover - older ASE
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    vd.Stationary(atoms)
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        dyn = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    else:
        from ase.md.langevin import Langevin

        dyn = Langevin(
            atoms,
            timestep_fs * units.fs,
            temperature_K=temperature_K,
            friction=friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
    samples: list[tuple[float, float, float, float]] = []

    def sample() -> None:
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        samples.append((dyn.nsteps * timestep_fs / 1000.0, epot, ekin, float(atoms.get_temperature())))

    dyn.attach(sample, interval=log_every)
    files: dict[str, Path] = {}
    start: dict[str, float] = {}

    def guard() -> None:
        """Stop the run when it has blown up (after every step)."""
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        temp = float(atoms.get_temperature())
        start.setdefault("etot", epot + ekin)
        problem = ""
        if not (math.isfinite(epot) and math.isfinite(ekin) and np.isfinite(atoms.positions).all()):
            problem = f"non-finite energy or positions (E_pot {epot:.6g} eV, E_kin {ekin:.6g} eV)"
        elif temp > t_max:
            problem = f"temperature {temp:.3g} K exceeds {t_max:.3g} K"
        elif ensemble == "nve" and max_energy_change_ev_atom is not None:
            change = abs(epot + ekin - start["etot"]) / len(atoms)
            if change > max_energy_change_ev_atom:
                limit = max_energy_change_ev_atom
                problem = f"total energy moved {change:.3g} eV/atom from its start (limit {limit:g} eV/atom)"
        if problem:
            if not samples or samples[-1][0] != dyn.nsteps * timestep_fs / 1000.0:
                samples.append((dyn.nsteps * timestep_fs / 1000.0, epot, ekin, temp))
            raise MDDiverged(
                f"MD diverged at step {dyn.nsteps} ({dyn.nsteps * timestep_fs / 1000.0:g} ps): {problem}; the model "
                f"is unstable here: try a smaller timestep (now {timestep_fs:g} fs), check the model's validation "
                "errors, or train on structures like this one",
                int(dyn.nsteps),
                np.array(samples, dtype=np.float64),
                files,
            )

    writer = None
    if trajectory is not None:
        tpath = Path(trajectory)
        tpath.parent.mkdir(parents=True, exist_ok=True)
        if tpath.suffix == ".traj":
            from ase.io.trajectory import Trajectory

            writer = Trajectory(str(tpath), "w", atoms)
            dyn.attach(writer.write, interval=trajectory_every)
        else:
            import ase.io

            if tpath.exists():
                tpath.unlink()

            def write_frame() -> None:
                frame = atoms.copy()
                frame.calc = None
                frame.info["time_ps"] = dyn.nsteps * timestep_fs / 1000.0
                frame.info["energy"] = float(atoms.get_potential_energy())
                frame.arrays["forces"] = atoms.get_forces()
                ase.io.write(tpath, frame, format="extxyz", append=True)

            dyn.attach(write_frame, interval=trajectory_every)
        files["trajectory"] = tpath
    dyn.attach(guard, interval=1)  # after the writer: the frame of a blow-up step is written too
    atoms.get_potential_energy()  # first force call outside the timing (model set-up)
    t0 = time.perf_counter()
    try:
        dyn.run(int(steps))
    except MDError:
        raise
    except ValueError as err:
        raise MDError(f"MD stopped at step {dyn.nsteps}: {err}") from err
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - t0
    arr = np.array(samples, dtype=np.float64)
    t, epot, ekin, temp = arr.T
    etot = epot + ekin
    n = len(atoms)
    per_atom_mev = (etot - etot[0]) / n * 1000.0
    drift = float(np.polyfit(t, per_atom_mev, 1)[0]) if len(t) > 1 and np.ptp(t) > 0 else math.nan
    return MDResult(
        ensemble=ensemble,
        steps=int(dyn.nsteps),
        timestep_fs=float(timestep_fs),
        n_atoms=n,
        times_ps=t,
        potential=epot,
        kinetic=ekin,
        total=etot,
        temperature=temp,
        drift_mev_atom_ps=drift,
        max_deviation_mev_atom=float(np.max(np.abs(per_atom_mev))),
        steps_per_second=float(steps) / seconds if seconds > 0 else math.inf,
        seconds=seconds,
        final=atoms,
        files=files,
    )


def md_file(
    model: Potential | str | os.PathLike[str],
    atoms: Atoms,
    out_dir: str | os.PathLike[str] = ".",
    prefix: str = "md",
    *,
    plot: bool = True,
    title: str | None = None,
    **kwargs: Any,
) -> MDResult:
    """:func:`run_md` writing ``<prefix>_trajectory.extxyz``, ``<prefix>_energies.csv`` (time_ps,
    potential_eV, kinetic_eV, total_eV, temperature_K), ``<prefix>_summary.json`` and ``<prefix>_energy.png``
    into ``out_dir``. ``kwargs`` go to :func:`run_md`.

    Raises:
        MDDiverged: as :func:`run_md`, after writing the trajectory and the energies up to the blow-up
        (the message names both files).
    """
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("trajectory", out / f"{prefix}_trajectory.extxyz")
    energies = out / f"{prefix}_energies.csv"
    try:
        res = run_md(model, atoms, **kwargs)
    except MDDiverged as err:
        t, epot, ekin, temp = err.samples.reshape(-1, 4).T
        _write_energies(energies, t, epot, epot + ekin, ekin, temp)
        err.files["energies"] = energies
        kept = ", ".join(str(p) for p in err.files.values())
        raise MDDiverged(f"{err} (kept: {kept})", err.step, err.samples, err.files) from None
    _write_energies(energies, res.times_ps, res.potential, res.total, res.kinetic, res.temperature)
    res.files["energies"] = energies
    summary = out / f"{prefix}_summary.json"
    summary.write_text(json.dumps(_finite(res.summary()), indent=2) + "\n")
    res.files["summary"] = summary
    if plot:
        from .plots import md_energy_plot

        res.files["plot"] = md_energy_plot(
            res.times_ps, res.total, res.potential, res.kinetic, out / f"{prefix}_energy.png", title=title
        )
    return res


def _write_energies(path: Path, t: Any, epot: Any, etot: Any, ekin: Any, temp: Any) -> None:
    """The energy log: ``time_ps,potential_eV,kinetic_eV,total_eV,temperature_K``."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time_ps", "potential_eV", "kinetic_eV", "total_eV", "temperature_K"])
        for row in zip(t, epot, ekin, etot, temp):
            w.writerow([f"{v:.10g}" for v in row])


def _finite(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
