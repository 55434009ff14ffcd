"""``mlip train`` flags derived from the TrainConfig / ModelConfig fields; the old spellings keep working."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from mlip.cli import build_parser, main
from mlip.model import ModelConfig
from mlip.training import TrainConfig
from mlip.training.config import MODEL_HELP

#: Every flag of ``mlip train`` before the flags were derived (spelling -> (config key, value, parsed)).
OLD_FLAGS = {
    "--train-file": ("train_file", "a.xyz", "a.xyz"),
    "--train": ("train_file", "a.xyz", "a.xyz"),
    "--valid-file": ("valid_file", "v.xyz", "v.xyz"),
    "--valid": ("valid_file", "v.xyz", "v.xyz"),
    "--valid-fraction": ("valid_fraction", "0.25", 0.25),
    "--isolated-atoms": ("isolated_atoms_file", "e0.xyz", "e0.xyz"),
    "--e0": ("isolated_atoms_file", "e0.xyz", "e0.xyz"),
    "--energy-key": ("energy_key", "E", "E"),
    "--forces-key": ("forces_key", "F", "F"),
    "--stress-key": ("stress_key", "S", "S"),
    "--output-dir": ("output_dir", "out", "out"),
    "--output": ("output_dir", "out", "out"),
    "--seed": ("seed", "7", 7),
    "--epochs": ("epochs", "9", 9),
    "--max-minutes": ("max_minutes", "1.5", 1.5),
    "--batch-size": ("batch_size", "3", 3),
    "--lr": ("lr", "0.002", 0.002),
    "--weight-decay": ("weight_decay", "0.001", 0.001),
    "--ema-decay": ("ema_decay", "0.5", 0.5),
    "--energy-weight": ("energy_weight", "2", 2.0),
    "--forces-weight": ("forces_weight", "3", 3.0),
    "--stress-weight": ("stress_weight", "4", 4.0),
    "--patience": ("patience", "6", 6),
    "--lr-factor": ("lr_factor", "0.5", 0.5),
    "--dtype": ("dtype", "float32", "float32"),
    "--device": ("device", "numpy", "numpy"),
    "--plot-every": ("plot_every", "2", 2),
}
OLD_MODEL_FLAGS = {
    "--elements": ("elements", "Cu,Au", ["Cu", "Au"]),
    "--channels": ("channels", "6", 6),
    "--lmax": ("lmax", "1", 1),
    "--hidden-lmax": ("hidden_lmax", "0", 0),
    "--correlation": ("correlation", "2", 2),
    "--num-layers": ("num_layers", "1", 1),
    "--cutoff": ("cutoff", "3.5", 3.5),
    "--num-bessel": ("num_bessel", "5", 5),
    "--radial-hidden": ("radial_hidden", "8,8", [8, 8]),
    "--products": ("products", "parity_complete", "parity_complete"),
}


def resolved(capsys, *flags: str) -> dict:
    assert main(["train", *flags, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("flag", sorted(OLD_FLAGS))
def test_every_old_training_flag_spelling_sets_its_key(flag, capsys):
    key, text, value = OLD_FLAGS[flag]
    assert resolved(capsys, flag, text)[key] == value


@pytest.mark.parametrize("flag", sorted(OLD_MODEL_FLAGS))
def test_every_old_model_flag_spelling_sets_its_model_key(flag, capsys):
    key, text, value = OLD_MODEL_FLAGS[flag]
    assert resolved(capsys, flag, text)["model"] == {key: value}


def test_every_config_field_has_a_flag_with_its_default_in_the_help():
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    by_flag = {s: a for a in train_parser._actions for s in a.option_strings}
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if not f.metadata.get("cli", True):
            assert flag not in by_flag, flag
            continue
        action = by_flag[flag]
        assert action.dest == f.name and action.default is None
        if f.default not in (None, dataclasses.MISSING) and not isinstance(f.default, bool):
            assert f"(default {f.default})" in action.help, (flag, action.help)
    for f in dataclasses.fields(ModelConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name != "dtype":  # --dtype is the training option (it sets the model's float type too)
            assert (flag in by_flag) == (f.name in MODEL_HELP), flag
            assert f.name not in MODEL_HELP or by_flag[flag].dest == "model." + f.name


def test_new_flags_from_fields(capsys):
    got = resolved(capsys, "--no-amsgrad", "--beta1", "0.8", "--min-lr", "1e-5", "--valid-batch-size", "4")
    assert got["amsgrad"] is False and got["beta1"] == 0.8 and got["min_lr"] == 1e-5 and got["valid_batch_size"] == 4
    assert resolved(capsys)["amsgrad"] is True  # not given: the default


def test_a_flag_of_the_wrong_type_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "ten"])
    assert info.value.code == 2 and "--epochs: invalid int value: 'ten'" in capsys.readouterr().err


def test_importing_the_cli_changes_no_environment_and_imports_no_numpy():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    code = "import os, sys, mlip.cli; print('numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "None"]


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("3", "3")])
def test_the_console_entry_sets_one_openblas_thread_unless_told(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = (
        "import os, sys\nfrom mlip.cli import entry\nsys.argv = ['mlip', 'train', '--print-config']\n"
        "try:\n    entry()\nexcept SystemExit:\n    print(os.environ['OPENBLAS_NUM_THREADS'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().splitlines()[-1] == expected
