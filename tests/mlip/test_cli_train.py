"""``mlip train`` end to end on tiny data: YAML configs, test sets, fine-tuning, resume with a new learning
rate, --version, and one ``error:`` line (exit 1) for each bad input by name."""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from mlip.cli import main
from mlip.evaluation import evaluate_structures
from mlip.model import load_model
from mlip.reference_data import make_emt_dataset, write_dataset
from mlip.training import TrainConfig, Trainer
from mlip.training.rundir import LOCK_NAME

TINY = ["--channels", "4", "--lmax", "1", "--hidden-lmax", "1", "--correlation", "2", "--cutoff", "4.0"]
TINY += ["--num-bessel", "4", "--radial-hidden", "8", "--batch-size", "2", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    s = make_emt_dataset(12, size=(1, 1, 2), seed=5, equilibration_steps=10, steps_between=3)
    write_dataset(s[:8], d / "train.xyz")
    write_dataset(s[8:10], d / "test_a.xyz")
    write_dataset(s[10:], d / "test_b.xyz")
    return d


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    args = ["train", "--train", str(data / "train.xyz"), "--output", str(out), "--epochs", "2", "--e0", "average"]
    assert main([*args, *TINY, "--test", str(data / "test_a.xyz"), str(data / "test_b.xyz")]) == 0
    return out


def train_args(data: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--train", str(data / "train.xyz"), "--output", str(out), "--epochs", "1", *TINY, *more]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


# ---------------------------------------------------------------------------------------- features


def test_test_sets_are_evaluated_with_the_best_model(run, data):
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert list(metrics) == [str(data / "test_a.xyz"), str(data / "test_b.xyz")]
    for name, got in metrics.items():
        expected = evaluate_structures(run / "best.npz", __import__("ase.io").io.read(name, ":")).metrics
        assert got["n_structures"] == 2
        assert np.isclose(got["energy_rmse_mev_atom"], expected["energy_rmse_mev_atom"], rtol=1e-10)
        assert np.isclose(got["force_rmse_mev_A"], expected["force_rmse_mev_A"], rtol=1e-10)
    assert (run / "test" / "test_a_predictions.csv").exists() and (run / "test" / "test_b_metrics.json").exists()


def test_the_test_table_is_printed(data, tmp_path, capsys):
    args = train_args(data, tmp_path / "r", "--e0", "average", "--test", str(data / "test_a.xyz"))
    args.remove("--quiet")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test sets (best model, epoch 1):" in out and "test_a.xyz" in out and "force_rmse_mev_A" in out


def test_yaml_config_file(data, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"train_file: {data / 'train.xyz'}\nlr: 1e-3\ne0: average\nmodel:\n  channels: 3\n  cutoff: 4\n")
    assert main(["train", "--config", str(cfg), "--epochs", "5", "--print-config"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["lr"] == 0.001 and got["epochs"] == 5 and got["model"] == {"channels": 3, "cutoff": 4}
    assert got["e0"] == "average"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "epochs: 3\nmodel: [channels: 3\nlr: 1\n", r"bad\.yaml is not valid YAML at line \d"),
        ("bad.json", '{"epochs": 3,\n "lr": }\n', r"bad\.json is not valid JSON at line 2, column 8"),
        ("list.yml", "- 1\n- 2\n", r"must hold a YAML mapping of options, got list"),
    ],
)
def test_config_file_parse_errors_name_the_line(tmp_path, capsys, name, text, message):
    (tmp_path / name).write_text(text)
    assert main(["train", "--config", str(tmp_path / name)]) == 1
    assert __import__("re").search(message, error_line(capsys))


def test_fine_tuning_starts_from_the_model_and_keeps_its_e0_and_scale(run, data, tmp_path):
    source_config, source = load_model(run / "best.npz")
    cfg = TrainConfig(train_file=str(data / "test_a.xyz"), valid_file=str(data / "test_b.xyz"), lr=0.001, epochs=1)
    tr = Trainer(cfg.replace(init_from=str(run / "best.npz"), output_dir=str(tmp_path / "ft"), progress=False))
    assert all(np.array_equal(tr.params[k], source[k]) for k in source)
    kept = tr.model_config
    assert kept.atomic_energies == source_config.atomic_energies and kept.energy_scale == source_config.energy_scale
    assert kept.avg_num_neighbors == source_config.avg_num_neighbors and kept.channels == 4
    # asking for other E0s replaces them (the least-squares/average fit of the new data)
    redo = Trainer(cfg.replace(init_from=str(run / "best.npz"), e0="average", output_dir=str(tmp_path / "x")))
    assert redo.model_config.atomic_energies != source_config.atomic_energies
    assert redo.model_config.energy_scale == source_config.energy_scale
    res = tr.fit()  # and it trains from there
    assert res.status == "completed" and res.history[0]["lr"] == 0.001


def test_fine_tuning_with_another_architecture_is_an_error(run, data, tmp_path, capsys):
    args = ["train", "--train", str(data / "test_a.xyz"), "--valid", str(data / "test_b.xyz")]
    args += ["--init-from", str(run / "best.npz"), "--channels", "6", "--output", str(tmp_path / "ft")]
    assert main(args) == 1
    assert "fine-tuning keeps the architecture" in error_line(capsys)
    assert not (tmp_path / "ft").exists()


def test_resume_with_a_lower_learning_rate(run, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run, out)
    assert main(["train", "--resume", "--output", str(out), "--epochs", "3", "--lr", "0.001"]) == 0
    assert "the resumed run uses the learning rate 0.001" in capsys.readouterr().err
    meta = json.loads((out / "train_config.json").read_text())
    assert meta["train_config"]["lr"] == 0.001
    log = (out / "log.csv").read_text().splitlines()
    assert log[-1].split(",")[2] == "0.001"
    assert main(["train", "--resume", "--output", str(out), "--epochs", "4", "--batch-size", "3"]) == 1
    assert "other training options" in error_line(capsys)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlip (cartesian-irreps) {version('cartesian-irreps')}"


# ------------------------------------------------------------------------------------- bad input


def test_huge_learning_rate_exits_non_zero_and_saves_no_best_model(data, tmp_path, capsys):
    assert main(train_args(data, tmp_path / "r", "--e0", "average", "--lr", "1000")) == 1
    line = error_line(capsys)
    assert "diverged at epoch 1" in line and "--lr 100" in line
    assert not (tmp_path / "r" / "best.npz").exists()


def test_least_squares_e0_on_one_composition_without_e0_is_an_error(data, tmp_path, capsys):
    assert main(train_args(data, tmp_path / "r")) == 1
    assert "cannot be fitted by least squares" in error_line(capsys)


def test_radial_hidden_zero_is_an_error(data, tmp_path, capsys):
    assert main([*train_args(data, tmp_path / "r", "--e0", "average"), "--radial-hidden", "0"]) == 1
    assert "model.radial_hidden must be widths >= 1, got [0]" in error_line(capsys)


def test_config_values_of_the_wrong_type_are_all_reported_at_once(tmp_path, capsys):
    cfg = tmp_path / "run.json"
    opts = {"epochs": "ten", "lr": [1], "amsgrad": "yes", "model": {"channels": 2.5, "elements": "Cu"}}
    cfg.write_text(json.dumps(opts))
    assert main(["train", "--config", str(cfg)]) == 1
    line = error_line(capsys)
    for text in ("epochs must be an integer, got 'ten'", "lr must be a finite number, got [1]"):
        assert text in line
    assert "amsgrad must be true or false, got 'yes'" in line
    cfg.write_text(json.dumps({"model": {"channels": 2.5, "elements": "Cu"}}))
    assert main(["train", "--config", str(cfg)]) == 1
    line = error_line(capsys)
    assert "model.channels must be an integer, got 2.5" in line and "model.elements must be a list of strings" in line


def test_an_output_path_that_is_a_file_is_an_error_line(data, tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    assert main(train_args(data, tmp_path / "out", "--e0", "average")) == 1
    assert "is a file, not a folder" in error_line(capsys)


def test_a_data_path_that_is_a_folder_is_an_error_line(data, tmp_path, capsys):
    assert main(["train", "--train", str(data), "--output", str(tmp_path / "r")]) == 1
    assert "is a folder, not a file of structures" in error_line(capsys)


def test_a_read_only_output_folder_is_an_error_line(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert main(train_args(data, tmp_path / "r", "--e0", "average")) == 1
    assert "permission denied" in error_line(capsys)


def test_a_locked_output_folder_is_an_error_line(data, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{os.getpid()} {os.uname().nodename}\n")
    assert main(train_args(data, out, "--e0", "average")) == 1
    assert "in use by another training run" in error_line(capsys)
