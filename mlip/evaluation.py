"""Evaluation of a trained potential on labelled structures, and molecular dynamics with it.

Units follow ASE: energies in eV, forces in eV/Å, stress in eV/Å³, times in fs (MD input) and ps
(MD output); errors are reported in meV, meV/atom and meV/Å (:mod:`mlip.metrics`).

* :func:`predict` evaluates a :class:`~mlip.model.Potential` on structures in batches;
* :func:`evaluate_structures` compares predictions with the reference labels (:class:`EvalResult`),
  :func:`evaluate_file` does it for a file and writes ``<prefix>_predictions.csv`` (one row per
  structure), ``<prefix>_predictions.extxyz`` (the structures with reference and predicted labels)
  and ``<prefix>_parity.png``;
* :func:`run_md` runs NVE (velocity Verlet) or Langevin dynamics through ASE with
  :class:`mlip.calculator.ICTPCalculator`, writes the trajectory, and reports the total-energy drift
  (meV/atom/ps, slope of a least-squares line) and the speed (steps/s); :func:`md_file` adds the
  energy log (CSV) and the energy plot (PNG).
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.backend import to_host

from .data import SpeciesTable, batch_structures
from .metrics import compute_metrics
from .model import Potential

__all__ = [
    "EvalResult",
    "MDResult",
    "Predictions",
    "evaluate_file",
    "evaluate_structures",
    "load_potential",
    "md_file",
    "predict",
    "run_md",
    "write_predictions_csv",
    "write_predictions_extxyz",
]


def load_potential(model: Potential | str | os.PathLike[str], device: str = "numpy") -> Potential:
    """A :class:`Potential` from itself or a model file (parameters moved to ``device``: numpy/cupy)."""
    if isinstance(model, Potential):
        return model
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    xp = None
    if device == "cupy":
        import cupy

        xp = cupy
    elif device != "numpy":
        raise ValueError(f"device must be 'numpy' or 'cupy', got {device!r}")
    return Potential.load(path, xp=xp)


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

    def forces_of(self, s: int) -> np.ndarray:
        """(n_s, 3) forces of structure ``s`` (eV/Å)."""
        ptr = np.concatenate([[0], np.cumsum(self.n_atoms)])
        return self.forces[ptr[s] : ptr[s + 1]]


def predict(
    model: Potential | str | os.PathLike[str],
    structures: Sequence[Atoms],
    batch_size: int = 10,
    stress: bool = False,
    min_distance: float | None = 0.5,
    device: str = "numpy",
) -> Predictions:
    """Energies, forces (and stress) of ``structures`` with a potential.

    Args:
        model: a :class:`Potential` or a model file.
        structures: the structures (elements must be among the model's).
        batch_size: structures per evaluation (memory only).
        stress: also the stress (needs 3D periodic cells).
        min_distance: smallest allowed interatomic distance (Å).
        device: ``"numpy"`` or ``"cupy"``.

    Returns:
        :class:`Predictions`.
    """
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
        if device == "cupy":
            import cupy

            b = b.to(cupy)
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


@dataclass
class EvalResult:
    """Errors of a potential on labelled structures.

    Attributes:
        metrics: :func:`mlip.metrics.compute_metrics` output (meV, meV/atom, meV/Å, meV/Å³) plus
            ``ref_force_rms_mev_A`` (RMS of the reference force components, meV/Å: the scale a force
            error should be compared with) and ``ref_energy_std_mev_atom`` (spread of the reference
            energies per atom, meV/atom).
        predictions: the model outputs.
        ref_energy: (S,) reference energies (eV).
        ref_forces: (N, 3) reference forces (eV/Å) or ``None`` when some structure has none.
        ref_stress: (S, 3, 3) reference stress (eV/Å³) or ``None``.
    """

    metrics: dict[str, Any]
    predictions: Predictions
    ref_energy: np.ndarray
    ref_forces: np.ndarray | None
    ref_stress: np.ndarray | None = None
    files: dict[str, Path] = field(default_factory=dict)


def evaluate_structures(
    model: Potential | str | os.PathLike[str],
    structures: Sequence[Atoms],
    *,
    batch_size: int = 10,
    stress: bool | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    device: str = "numpy",
) -> EvalResult:
    """Predict and compare with the reference labels.

    Every structure needs an energy; forces are compared when every structure has them, stress when
    asked for (``stress=None``: when every structure is 3D periodic and has one).

    Raises:
        ValueError: no structures, a structure without an energy, an element unknown to the model.
    """
    from .data import labels_from_atoms

    pot = load_potential(model, device)
    structures = list(structures)
    if not structures:
        raise ValueError("no structures to evaluate")
    labels = [labels_from_atoms(a, energy_key, forces_key, stress_key, index=k) for k, a in enumerate(structures)]
    missing = [k for k, lab in enumerate(labels) if lab.energy is None]
    if missing:
        raise ValueError(
            f"structure(s) {missing[:10]} have no energy ({energy_key!r}); evaluation needs labelled structures"
        )
    ref_e = np.array([lab.energy for lab in labels], dtype=np.float64)
    has_f = all(lab.forces is not None for lab in labels)
    ref_f = np.concatenate([lab.forces for lab in labels]) if has_f else None
    all_stress = all(lab.stress is not None for lab in labels) and all(bool(np.all(a.pbc)) for a in structures)
    if stress is None:
        stress = all_stress
    elif stress and not all_stress:
        raise ValueError("stress evaluation needs a stress label and a 3D periodic cell on every structure")
    ref_s = np.stack([lab.stress for lab in labels]) if stress else None
    pred = predict(pot, structures, batch_size=batch_size, stress=bool(stress), device=device)
    m = compute_metrics(
        pred.energy,
        ref_e,
        pred.n_atoms,
        pred.forces if has_f else None,
        ref_f,
        pred.stress if stress else None,
        ref_s,
    )
    m["ref_energy_std_mev_atom"] = float(np.std(ref_e / pred.n_atoms) * 1000.0)
    m["ref_force_rms_mev_A"] = float(np.sqrt(np.mean(ref_f**2)) * 1000.0) if has_f and ref_f is not None else None
    return EvalResult(metrics=m, predictions=pred, ref_energy=ref_e, ref_forces=ref_f, ref_stress=ref_s)


def write_predictions_csv(path: str | os.PathLike[str], structures: Sequence[Atoms], result: EvalResult) -> Path:
    """One row per structure: index, formula, n_atoms, ref/pred energy (eV), energy error (meV/atom),
    force RMSE of the structure (meV/Å, empty without reference forces)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = result.predictions
    ptr = np.concatenate([[0], np.cumsum(p.n_atoms)])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "index",
                "formula",
                "n_atoms",
                "ref_energy_eV",
                "pred_energy_eV",
                "energy_error_meV_atom",
                "force_rmse_meV_A",
            ]
        )
        for s, atoms in enumerate(structures):
            n = int(p.n_atoms[s])
            err = (p.energy[s] - result.ref_energy[s]) / n * 1000.0
            frmse = ""
            if result.ref_forces is not None:
                d = p.forces[ptr[s] : ptr[s + 1]] - result.ref_forces[ptr[s] : ptr[s + 1]]
                frmse = f"{float(np.sqrt(np.mean(d * d)) * 1000.0):.6g}"
            w.writerow(
                [
                    s,
                    atoms.get_chemical_formula(),
                    n,
                    f"{result.ref_energy[s]:.10g}",
                    f"{p.energy[s]:.10g}",
                    f"{err:.6g}",
                    frmse,
                ]
            )
    return path


def write_predictions_extxyz(path: str | os.PathLike[str], structures: Sequence[Atoms], result: EvalResult) -> Path:
    """The structures with ``info["energy"]`` / ``arrays["forces"]`` (reference) and
    ``info["pred_energy"]`` (eV), ``arrays["pred_forces"]`` (eV/Å) (and ``pred_stress``, Voigt eV/Å³)."""
    import ase.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = result.predictions
    ptr = np.concatenate([[0], np.cumsum(p.n_atoms)])
    out = []
    for s, atoms in enumerate(structures):
        a = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=atoms.pbc)
        a.info["energy"] = float(result.ref_energy[s])
        a.info["pred_energy"] = float(p.energy[s])
        if result.ref_forces is not None:
            a.arrays["forces"] = result.ref_forces[ptr[s] : ptr[s + 1]].copy()
        a.arrays["pred_forces"] = p.forces[ptr[s] : ptr[s + 1]].copy()
        if p.stress is not None:
            st = p.stress[s]
            a.info["pred_stress"] = np.array([st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]])
        out.append(a)
    ase.io.write(path, out, format="extxyz")
    return path


def evaluate_file(
    model: Potential | str | os.PathLike[str],
    data: str | os.PathLike[str] | Sequence[Atoms],
    out_dir: str | os.PathLike[str] = ".",
    prefix: str = "eval",
    *,
    batch_size: int = 10,
    stress: bool | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    device: str = "numpy",
    plot: bool = True,
    title: str | None = None,
) -> EvalResult:
    """Evaluate a potential on a file (or structures) and write predictions and a parity plot.

    Writes ``<out_dir>/<prefix>_predictions.csv``, ``<prefix>_predictions.extxyz``,
    ``<prefix>_metrics.json`` and ``<prefix>_parity.png`` (listed in ``result.files``).
    """
    import json

    from .training import read_labelled

    structures = read_labelled(data, "evaluation") if isinstance(data, (str, os.PathLike)) else list(data)
    res = evaluate_structures(
        model,
        structures,
        batch_size=batch_size,
        stress=stress,
        energy_key=energy_key,
        forces_key=forces_key,
        stress_key=stress_key,
        device=device,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res.files["csv"] = write_predictions_csv(out / f"{prefix}_predictions.csv", structures, res)
    res.files["extxyz"] = write_predictions_extxyz(out / f"{prefix}_predictions.extxyz", structures, res)
    metrics_path = out / f"{prefix}_metrics.json"
    metrics_path.write_text(json.dumps(res.metrics, indent=2) + "\n")
    res.files["metrics"] = metrics_path
    if plot:
        from .plots import parity_plot

        n = res.predictions.n_atoms
        res.files["parity"] = parity_plot(
            res.ref_energy / n,
            res.predictions.energy / n,
            res.ref_forces,
            res.predictions.forces if res.ref_forces is not None else None,
            out / f"{prefix}_parity.png",
            title=title,
            metrics=res.metrics,
        )
    return res


# ================================================================================================ MD


class MDError(RuntimeError):
    """The dynamics could not go on (e.g. atoms came closer than the allowed distance)."""


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

    Returns:
        :class:`MDResult`.

    Raises:
        ValueError: bad arguments; MDError: the structure became invalid during the run.
    """
    from ase import units
    from ase.md import velocitydistribution as vd

    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")
    if not (steps >= 1 and timestep_fs > 0 and temperature_K >= 0 and log_every >= 1 and trajectory_every >= 1):
        raise ValueError("need steps >= 1, timestep_fs > 0, temperature_K >= 0, log_every >= 1, trajectory_every >= 1")
    if ensemble == "langevin" and not friction_per_fs > 0:
        raise ValueError(f"friction_per_fs must be > 0, got {friction_per_fs}")
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
    atoms.get_potential_energy()  # first force call outside the timing (model set-up)
    t0 = time.perf_counter()
    try:
        dyn.run(int(steps))
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
    into ``out_dir``. ``kwargs`` go to :func:`run_md`."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("trajectory", out / f"{prefix}_trajectory.extxyz")
    res = run_md(model, atoms, **kwargs)
    energies = out / f"{prefix}_energies.csv"
    with open(energies, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time_ps", "potential_eV", "kinetic_eV", "total_eV", "temperature_K"])
        for row in zip(res.times_ps, res.potential, res.kinetic, res.total, res.temperature):
            w.writerow([f"{v:.10g}" for v in row])
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


def _finite(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
