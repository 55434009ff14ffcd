"""The ``mlip`` command line end to end on a tiny EMT set, evaluation metrics, MD and the demo."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from mlip.cli import main
from mlip.data import read_structures
from mlip.evaluation import evaluate_file, evaluate_structures, predict, run_md
from mlip.model import ModelConfig, Potential
from mlip.reference_data import make_emt_dataset, write_dataset

TINY_FLAGS = [
    "--channels", "4", "--lmax", "1", "--hidden-lmax", "1", "--correlation", "2",
    "--cutoff", "4.0", "--num-bessel", "4", "--radial-hidden", "8", "--batch-size", "2",
    "--e0", "average",  # every structure is Cu6Au2: least squares cannot separate Cu and Au
]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """train.xyz (10 Cu-Au structures of 8 atoms, EMT labels) and test.xyz (4)."""
    d = tmp_path_factory.mktemp("data")
    structures = make_emt_dataset(14, size=(1, 1, 2), seed=5, equilibration_steps=20, steps_between=5)
    write_dataset(structures[:10], d / "train.xyz")
    write_dataset(structures[10:], d / "test.xyz")
    return d


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    """A run folder trained for 2 epochs by ``mlip train``."""
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--train-file", str(data_dir / "train.xyz"), "--output-dir", str(out), "--epochs", "2"]
    assert main([*args, *TINY_FLAGS, "--quiet"]) == 0
    return out


def test_train_writes_model_log_curve_and_checkpoint(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"best.npz", "checkpoint.npz", "log.csv", "learning_curve.png", "train_config.json"} <= names
    rows = list(csv.DictReader((trained / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[-1]["valid_force_rmse_mev_A"]) > 0
    pot = Potential.load(trained / "best.npz")
    assert pot.config.channels == 4 and pot.config.elements == ("Cu", "Au")


def test_train_resume_continues(trained, data_dir, capsys, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    assert main(["train", "--resume", "--output-dir", str(out), "--epochs", "3"]) == 0
    text = capsys.readouterr().out
    assert "resuming at epoch 3" in text and "epoch    3/3" in text
    assert len((out / "log.csv").read_text().splitlines()) == 4
    # a changed model option on --resume is refused with a clear message (exit 1)
    assert main(["train", "--resume", "--output-dir", str(out), "--epochs", "4", "--channels", "6"]) == 1
    assert "different config" in capsys.readouterr().err


def test_train_config_file_and_bad_options(tmp_path, data_dir, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"train_file": str(data_dir / "train.xyz"), "epochs": 1, "batch_sise": 2}))
    assert main(["train", "--config", str(cfg)]) == 1
    assert "unknown training config keys" in capsys.readouterr().err
    cfg.write_text(json.dumps({"train_file": str(data_dir / "train.xyz"), "lr": -1, "model": {"channels": 0}}))
    assert main(["train", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "lr must be > 0" in err and "channels must be >= 1" in err
    cfg.write_text(json.dumps({"train_file": str(data_dir / "train.xyz"), "model": {"channels": 3}}))
    assert main(["train", "--config", str(cfg), "--epochs", "5", "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["epochs"] == 5 and resolved["model"] == {"channels": 3}
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    assert main(["train", "--train-file", str(empty), "--output-dir", str(tmp_path / "x")]) == 1
    assert "empty" in capsys.readouterr().err


def test_eval_writes_predictions_and_parity_plot(trained, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", str(trained / "best.npz"), str(data_dir / "test.xyz"), "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "force_rmse_mev_A" in text and "energy_rmse_mev_atom" in text
    assert {"eval_predictions.csv", "eval_predictions.extxyz", "eval_parity.png", "eval_metrics.json"} <= {
        p.name for p in out.iterdir()
    }
    rows = list(csv.DictReader((out / "eval_predictions.csv").open()))
    assert len(rows) == 4 and rows[0]["n_atoms"] == "8"
    back = read_structures(out / "eval_predictions.extxyz")
    assert len(back) == 4 and back[0].arrays["mlip_forces"].shape == (8, 3)
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert metrics["n_structures"] == 4
    # the flag form is the same command; a missing file argument is a clear error
    flags = ["--model", str(trained / "best.npz"), "--data", str(data_dir / "test.xyz"), "--output", str(out)]
    assert main(["eval", *flags, "--no-plot"]) == 0
    capsys.readouterr()
    assert main(["eval", str(trained / "best.npz")]) == 1
    assert "missing the data file" in capsys.readouterr().err


def test_train_flag_aliases(data_dir, capsys):
    d = str(data_dir)
    args = ["train", "--train", f"{d}/train.xyz", "--valid", f"{d}/test.xyz", "--e0", f"{d}/e0.xyz", "--output", "r"]
    assert main([*args, "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["train_file"].endswith("train.xyz") and resolved["valid_file"].endswith("test.xyz")
    assert resolved["isolated_atoms_file"].endswith("e0.xyz") and resolved["output_dir"] == "r"


def test_eval_metrics_against_hand_computed_values(tmp_path):
    """Labels = the model's own predictions + known offsets, so every error is known exactly."""
    cfg = ModelConfig(elements=("Cu", "Au"), channels=3, lmax=1, correlation=2, cutoff=4.0, radial_hidden=(4,))
    pot = Potential.create(cfg, seed=2)
    base = make_emt_dataset(2, size=(1, 1, 2), seed=1, equilibration_steps=5, steps_between=2)
    pred = predict(pot, base)
    offsets_e = np.array([0.016, -0.004])  # eV on 8 atoms -> 2 and -0.5 meV/atom
    dforce = np.zeros((16, 3))
    dforce[0, 0], dforce[9, 2] = 0.03, -0.04  # eV/Å
    labelled = []
    for s, a in enumerate(base):
        b = Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=True)
        b.info["energy"] = pred.energy[s] + offsets_e[s]
        b.arrays["forces"] = pred.forces_of(s) + dforce[8 * s : 8 * s + 8]
        labelled.append(b)
    m = evaluate_structures(pot, labelled).metrics
    assert np.isclose(m["energy_rmse_mev"], np.sqrt((16.0**2 + 4.0**2) / 2), atol=1e-9)
    assert np.isclose(m["energy_mae_mev"], 10.0, atol=1e-9)
    assert np.isclose(m["energy_rmse_mev_atom"], np.sqrt((2.0**2 + 0.5**2) / 2), atol=1e-9)
    assert np.isclose(m["energy_mae_mev_atom"], 1.25, atol=1e-9)
    assert np.isclose(m["force_rmse_mev_A"], np.sqrt((30.0**2 + 40.0**2) / 48), atol=1e-9)
    assert np.isclose(m["force_mae_mev_A"], 70.0 / 48, atol=1e-9)
    res = evaluate_file(pot, labelled, tmp_path, "hand", plot=False)
    rows = list(csv.DictReader((tmp_path / "hand_predictions.csv").open()))
    assert np.isclose(float(rows[0]["energy_error_meV_atom"]), -2.0) and np.isclose(
        float(rows[1]["energy_error_meV_atom"]), 0.5
    )
    assert np.isclose(float(rows[0]["force_rmse_meV_A"]), 30.0 / np.sqrt(24), rtol=1e-5)
    assert res.metrics["ref_force_rms_mev_A"] > 0


def test_eval_predicts_unlabelled_structures(trained, tmp_path, capsys):
    path = tmp_path / "bare.xyz"
    write_dataset([Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])], path)
    assert main(["eval", "--model", str(trained / "best.npz"), "--data", str(path), "--output", str(tmp_path)]) == 0
    assert "no reference labels" in capsys.readouterr().out
    assert "mlip_energy" in read_structures(tmp_path / "eval_predictions.extxyz")[0].info


def test_md_command(trained, data_dir, tmp_path, capsys):
    out = tmp_path / "md"
    args = ["md", "--model", str(trained / "best.npz"), "--structure", str(data_dir / "test.xyz")]
    assert main([*args, "--steps", "20", "--log-every", "2", "--traj-every", "5", "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "drift_mev_atom_ps" in text and "steps_per_second" in text
    frames = read_structures(out / "md_trajectory.extxyz")
    assert len(frames) == 5  # steps 0, 5, 10, 15, 20
    assert (out / "md_energy.png").stat().st_size > 0
    summary = json.loads((out / "md_summary.json").read_text())
    assert summary["steps"] == 20 and summary["steps_per_second"] > 0
    lines = (out / "md_energies.csv").read_text().splitlines()
    assert lines[0] == "time_ps,potential_eV,kinetic_eV,total_eV,temperature_K" and len(lines) == 12
    assert main([*args, "--ensemble", "langevin", "--steps", "4", "--output-dir", str(tmp_path / "md2")]) == 0


def test_md_energy_is_conserved_with_a_small_step(trained, data_dir):
    atoms = read_structures(data_dir / "test.xyz")[0]
    res = run_md(trained / "best.npz", atoms, steps=40, timestep_fs=0.5, log_every=1, temperature_K=300.0)
    assert res.max_deviation_mev_atom < 1.0
    assert abs(res.kinetic[0] - res.kinetic[-1]) > 0  # it moved


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "mlip", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "demo" in out.stdout


def test_demo_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        ["demo", "--output-dir", str(out), "--max-minutes", "0.2", "--epochs", "2", "--structures", "12"]
        + ["--md-steps", "10", "--quiet"]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "test force RMSE [meV/Å]" in table and "MD energy drift [meV/atom/ps]" in table
    for name in ("test_parity.png", "md_energy.png", "summary.json", "training/learning_curve.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("train", "valid", "test", "isolated_atoms"):
        assert (out / "data" / f"{name}.xyz").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["structures (train/valid/test)"] == "8/1/3"
    assert summary["reference force RMS [meV/Å]"] > 0
