"""The main job on built-in data: ``mlip demo`` (EMT data -> training -> test errors -> MD -> plots).

On a fresh machine, with nothing downloaded, :func:`run_demo`:

1. makes a Cu-Au data set with :func:`mlip.reference_data.make_emt_dataset` (a 32-atom periodic fcc
   Cu3Au-like alloy, Langevin MD at 300, 600 and 900 K, EMT labels: energy, forces, stress) and the
   EMT isolated-atom energies, splits it 70/10/20 into train/valid/test (seeded) and writes the three
   sets as extxyz files into ``<output_dir>/data/`` (so the CLI commands of the tutorial can reuse them);
2. trains a small model (:data:`DEMO_MODEL`) within a time budget (:mod:`mlip.training`);
3. evaluates the best (EMA) model on every split, with a parity plot of the test set;
4. runs NVE molecular dynamics (velocity Verlet, 2 fs) from a test structure with the trained model;
5. prints one summary table (errors, relative to the spread of the reference forces; speed; energy
   drift) and writes ``summary.json``.

Files in ``output_dir``: ``data/{train,valid,test,isolated_atoms}.xyz``, ``training/`` (checkpoint,
``best.npz``, ``log.csv``, ``learning_curve.png``), ``test_parity.png``, ``test_predictions.{csv,extxyz}``,
``md_energy.png``, ``md_trajectory.extxyz``, ``md_energies.csv``, ``summary.json``.

Everything is seeded: the same seed and the same number of epochs give the same numbers. With a time
budget the number of epochs depends on the speed of the machine; pass a large ``max_minutes`` and a
fixed ``epochs`` for bit-identical runs across machines.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

__all__ = ["DEMO_MODEL", "DEMO_TRAINING", "DemoResult", "run_demo"]

#: Model of the demo: small enough to train in minutes on two CPU cores (lengths in Å).
DEMO_MODEL: dict[str, Any] = {
    "channels": 16,
    "lmax": 1,
    "hidden_lmax": 1,
    "correlation": 3,
    "num_layers": 2,
    "cutoff": 4.5,
    "num_bessel": 8,
    "radial_hidden": [32],
}
#: Training options of the demo (the rest are the :class:`mlip.training.TrainConfig` defaults: E:F = 1:10,
#: Adam/AMSGrad lr 0.01, EMA 0.99, batch 5). The stress term teaches the volume dependence of the energy,
#: which the forces of fixed-cell snapshots do not constrain. EMT's isolated-atom energies (about +3.5 eV) lie far
#: from its crystal energies (about 0 eV/atom), so the demo asks for the fitted shift on top of them (``e0_shift``),
#: as the trainer did by default before isolated-atom energies were used exactly as given.
DEMO_TRAINING: dict[str, Any] = {"stress_weight": 100.0, "e0_shift": True}
#: Data of the demo: fractions of train / validation / test.
DEMO_SPLIT = (0.7, 0.1, 0.2)


@dataclass
class DemoResult:
    """Outcome of :func:`run_demo`.

    Attributes:
        status: the training status (``completed``, ``time_budget`` or ``interrupted``).
        summary: the numbers of the summary table (errors in meV/atom and meV/Å, times in s, speed in
            steps/s, drift in meV/atom/ps).
        table: the printed table.
        files: written files by name.
    """

    status: str
    summary: dict[str, Any]
    table: str
    files: dict[str, Path] = field(default_factory=dict)


def run_demo(
    output_dir: str | os.PathLike[str] = "demo_output",
    *,
    max_minutes: float = 4.0,
    epochs: int = 60,
    seed: int = 0,
    n_structures: int = 150,
    md_steps: int = 500,
    model: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    verbose: bool = True,
    stream: TextIO | None = None,
) -> DemoResult:
    """Run the demo (see the module docstring); returns the summary and the files written.

    Args:
        output_dir: output folder (created; an earlier demo there is overwritten).
        max_minutes: training time budget (minutes).
        epochs: epoch budget.
        seed: seed of the data, the split, the model, the shuffling and the MD.
        n_structures: EMT structures to generate (>= 10).
        md_steps: NVE steps of 2 fs.
        model: model options replacing :data:`DEMO_MODEL` entries.
        options: training options replacing :data:`DEMO_TRAINING` entries.
        verbose: print progress (otherwise only the summary table).
        stream: where to print (stdout by default).
    """
    from .evaluation import evaluate_file, evaluate_structures, md_file
    from .metrics import format_table
    from .reference_data import isolated_atom_energies, make_emt_dataset, split, write_dataset
    from .training import TrainConfig, train

    out_stream = stream if stream is not None else sys.stdout

    def say(text: str) -> None:
        if verbose:
            print(text, file=out_stream, flush=True)

    if n_structures < 10:
        raise ValueError(f"the demo needs at least 10 structures, got {n_structures}")
    if md_steps < 1:
        raise ValueError(f"md_steps must be >= 1, got {md_steps}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    files: dict[str, Path] = {}

    # 1. data
    say(f"[1/4] making {n_structures} EMT structures (Cu-Au, 32 atoms, MD at 300/600/900 K) ...")
    t0 = time.perf_counter()
    data = make_emt_dataset(n_structures=n_structures, seed=seed)
    isolated = isolated_atom_energies(("Cu", "Au"))
    train_set, valid_set, test_set = split(data, DEMO_SPLIT, seed=seed)
    data_dir = out / "data"
    for name, part in (("train", train_set), ("valid", valid_set), ("test", test_set)):
        files[f"{name}_data"] = write_dataset(part, data_dir / f"{name}.xyz")
    from ase import Atoms

    atoms_ref = [
        Atoms(sym, positions=[(10.0, 10.0, 10.0)], cell=[20.0] * 3, pbc=False, info={"energy": e})
        for sym, e in isolated.items()
    ]
    files["isolated_atoms"] = write_dataset(atoms_ref, data_dir / "isolated_atoms.xyz")
    t_data = time.perf_counter() - t0
    say(f"      {len(train_set)} train / {len(valid_set)} valid / {len(test_set)} test in {t_data:.1f} s")

    # 2. training
    model_opts = {**DEMO_MODEL, **(model or {})}
    config = TrainConfig(
        **{**DEMO_TRAINING, **(options or {})},
        model=model_opts,
        seed=seed,
        epochs=epochs,
        max_minutes=max_minutes,
        output_dir=str(out / "training"),
        isolated_atoms_file=str(files["isolated_atoms"]),
        progress=verbose,
    )
    say(f"[2/4] training (budget {max_minutes:g} min, {epochs} epochs at most) ...")
    t0 = time.perf_counter()
    result = train(config, train_set, valid_set, isolated, overwrite=True, stream=out_stream)
    t_train = time.perf_counter() - t0
    files.update(best_model=result.best_path, log=result.log_path)
    if result.curve_path is not None:
        files["learning_curve"] = result.curve_path
    if result.status == "interrupted" or result.best_epoch == 0:
        return DemoResult(result.status, {"status": result.status}, "", files)

    # 3. evaluation
    say("[3/4] evaluating the best (EMA) model ...")
    t0 = time.perf_counter()
    test = evaluate_file(result.best_path, test_set, out, "test", title="demo: test set (held out)")
    files.update(test_parity=test.files["parity"], test_predictions=test.files["csv"])
    train_m = evaluate_structures(result.best_path, train_set).metrics
    valid_m = evaluate_structures(result.best_path, valid_set).metrics
    t_eval = time.perf_counter() - t0

    # 4. MD
    say(f"[4/4] NVE MD: {md_steps} steps of 2 fs from a test structure (300 K momenta) ...")
    md = md_file(
        result.best_path,
        test_set[0],
        out,
        "md",
        ensemble="nve",
        temperature_K=300.0,
        timestep_fs=2.0,
        steps=md_steps,
        seed=seed,
        title="demo: NVE MD with the trained model",
    )
    files.update(md_plot=md.files["plot"], md_trajectory=md.files["trajectory"])
    t_total = time.perf_counter() - t_start

    from .model import load_model

    n_params = sum(int(v.size) for v in load_model(result.best_path)[1].values())
    f_rms = test.metrics["ref_force_rms_mev_A"]
    summary: dict[str, Any] = {
        "structures (train/valid/test)": f"{len(train_set)}/{len(valid_set)}/{len(test_set)}",
        "model parameters": n_params,
        "epochs (best epoch)": f"{result.epochs_done} ({result.best_epoch})",
        "time per epoch [s]": result.seconds_per_epoch,
        "train energy RMSE [meV/atom]": train_m["energy_rmse_mev_atom"],
        "train force RMSE [meV/Å]": train_m["force_rmse_mev_A"],
        "valid energy RMSE [meV/atom]": valid_m["energy_rmse_mev_atom"],
        "valid force RMSE [meV/Å]": valid_m["force_rmse_mev_A"],
        "test energy RMSE [meV/atom]": test.metrics["energy_rmse_mev_atom"],
        "test energy MAE [meV/atom]": test.metrics["energy_mae_mev_atom"],
        "test force RMSE [meV/Å]": test.metrics["force_rmse_mev_A"],
        "test force MAE [meV/Å]": test.metrics["force_mae_mev_A"],
        "reference force RMS [meV/Å]": f_rms,
        "test force RMSE / reference RMS [%]": 100.0 * test.metrics["force_rmse_mev_A"] / f_rms,
        "reference energy spread (std) [meV/atom]": test.metrics["ref_energy_std_mev_atom"],
        "MD speed [steps/s]": md.steps_per_second,
        "MD energy drift [meV/atom/ps]": md.drift_mev_atom_ps,
        "MD max |E_tot - E_tot(0)| [meV/atom]": md.max_deviation_mev_atom,
        "MD mean temperature [K]": float(np.mean(md.temperature)),
        "time: data [s]": t_data,
        "time: training [s]": t_train,
        "time: evaluation [s]": t_eval,
        "time: MD [s]": md.seconds,
        "time: total [s]": t_total,
    }
    table = format_table({"demo": summary}, precision=2, transpose=True)
    print(table, file=out_stream, flush=True)
    if verbose:
        print(
            f"plots: {files['learning_curve'] if 'learning_curve' in files else '-'}, {files['test_parity']}, "
            f"{files['md_plot']}",
            file=out_stream,
            flush=True,
        )
    summary_path = out / "summary.json"
    summary_path.write_text(
        json.dumps(
            {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}, indent=2
        )
        + "\n"
    )
    files["summary"] = summary_path
    return DemoResult(result.status, summary, table, files)
