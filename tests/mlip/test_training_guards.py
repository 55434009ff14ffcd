"""Runs that go wrong stop cleanly: divergence, non-finite optimiser state, the output folder (lock, old run,
file-system errors). Each case by name."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from ase import Atoms

from mlip.model import load_model
from mlip.reference_data import make_emt_dataset
from mlip.training import TrainConfig, Trainer, TrainingError, load_checkpoint, train
from mlip.training.guards import EPOCH_FACTOR, STEP_FACTOR, DivergenceGuard
from mlip.training.rundir import LOCK_NAME

TINY_MODEL = {"channels": 4, "lmax": 1, "hidden_lmax": 1, "correlation": 2, "cutoff": 4.0, "num_bessel": 4}
TINY_MODEL["radial_hidden"] = [8]


@pytest.fixture(scope="module")
def structures() -> list[Atoms]:
    return make_emt_dataset(8, size=(1, 1, 2), seed=3, equilibration_steps=10, steps_between=3)


def config(tmp_path, name: str = "run", **kw) -> TrainConfig:
    base = dict(model=dict(TINY_MODEL), epochs=2, batch_size=2, valid_fraction=0.25, output_dir=str(tmp_path / name))
    return TrainConfig(**{**base, "progress": False, "e0": "average", **kw})


# -------------------------------------------------------------------------------------- divergence


def test_divergence_guard_thresholds():
    g = DivergenceGuard()
    assert g.check_step(2.0) is None and g.reference == 2.0  # the first batch sets the reference
    assert g.check_step(2.0 * STEP_FACTOR) is None
    assert "times its start" in g.check_step(2.0 * STEP_FACTOR * 1.01)
    assert g.check_epoch(3.0, 2.0 * EPOCH_FACTOR) is None and g.reference == 3.0  # then the first epoch's mean
    assert "validation loss" in g.check_epoch(1.0, 3.0 * EPOCH_FACTOR * 1.01)
    assert "training loss" in g.check_epoch(3.0 * EPOCH_FACTOR * 1.01, 1.0)


def test_a_huge_learning_rate_stops_with_the_epoch_the_loss_and_a_hint_and_saves_no_model(tmp_path, structures):
    with pytest.raises(TrainingError, match=r"diverged at epoch 1, batch \d/3: .*times its start.*--lr 100") as info:
        train(config(tmp_path, lr=1000.0), structures)
    assert "no checkpoint was written yet" in str(info.value)
    assert not (tmp_path / "run" / "best.npz").exists() and not (tmp_path / "run" / "checkpoint.npz").exists()
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # the lock is released


def test_divergence_after_a_good_epoch_keeps_best_and_checkpoint_unchanged(tmp_path, structures):
    def blow_up(trainer: Trainer, event: str) -> None:
        if event == "epoch_end" and trainer.epoch == 1:
            trainer.lr = 1000.0

    with pytest.raises(TrainingError, match=r"diverged at epoch 2.*best\.npz \(epoch 1\).*--resume"):
        train(config(tmp_path, epochs=3), structures, callbacks=[blow_up])
    meta, arrays = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] == 1 and np.isfinite(arrays["params"]).all()
    ref = train(config(tmp_path, "ref", epochs=1), structures)  # the same first epoch, undisturbed
    kept, expected = load_model(tmp_path / "run" / "best.npz")[1], load_model(ref.best_path)[1]
    assert all(np.array_equal(kept[k], expected[k]) for k in expected)
    # and it goes on from the checkpoint with a lower learning rate
    again = train(config(tmp_path, epochs=2, lr=0.001), structures, resume=True)
    assert again.epochs_done == 2 and again.history[-1]["lr"] == 0.001


def test_an_overflowing_optimiser_state_is_divergence_even_when_the_loss_stays_finite(tmp_path, structures):
    def overflow(trainer: Trainer, event: str) -> None:
        if event == "epoch_end" and trainer.epoch == 1:
            trainer.vmax[3] = np.inf  # what Adam's second moment does under a huge learning rate

    with pytest.raises(TrainingError, match=r"diverged at epoch 2, batch 1/3: the optimiser state .* not finite"):
        train(config(tmp_path), structures, callbacks=[overflow])
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz")[0]["epoch"] == 1


def test_an_epoch_loss_far_above_the_first_epoch_is_divergence(tmp_path, structures):
    def lower_reference(trainer: Trainer, event: str) -> None:
        if event == "epoch_end" and trainer.epoch == 1:  # as if the first epoch had been 10^4 times better
            trainer.guard.first_epoch = trainer.history[0]["train_loss"] / 1e4

    with pytest.raises(
        TrainingError, match=r"diverged at epoch 2, batch 3/3: the (training|validation) loss of the ep"
    ):
        train(config(tmp_path, lr=1e-12), structures, callbacks=[lower_reference])


# ---------------------------------------------------------------------------------- output folder


def test_a_second_run_into_a_locked_output_folder_is_refused(tmp_path, structures):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{os.getpid()} {os.uname().nodename}\n")  # a live process holds it
    with pytest.raises(TrainingError, match=rf"in use by another training run \(pid {os.getpid()}"):
        train(config(tmp_path), structures)
    assert (out / LOCK_NAME).exists() and not (out / "checkpoint.npz").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, structures, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{dead.pid} {os.uname().nodename}\n")
    res = train(config(tmp_path, epochs=1), structures)
    assert res.epochs_done == 1 and not (out / LOCK_NAME).exists()
    assert f"taking over the stale lock {out / LOCK_NAME}" in capsys.readouterr().err


def test_overwrite_with_a_bad_configuration_leaves_the_old_run_untouched(tmp_path, structures):
    first = train(config(tmp_path, epochs=1), structures)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(Exception, match="not in the species table"):  # fails while reading the data
        Trainer(config(tmp_path, model={**TINY_MODEL, "elements": ["Cu"]}), structures, overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before
    assert first.best_path.exists()


def test_overwrite_by_a_run_that_fails_before_its_first_checkpoint_puts_the_old_run_back(tmp_path, structures):
    train(config(tmp_path, epochs=1), structures)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    with pytest.raises(TrainingError, match="diverged"):
        train(config(tmp_path, epochs=1, lr=1000.0), structures, overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before
    assert not list(tmp_path.glob("run.old-*"))


def test_overwrite_that_starts_replaces_the_old_run(tmp_path, structures, capsys):
    train(config(tmp_path, epochs=1, seed=1), structures)
    old = (tmp_path / "run" / "best.npz").read_bytes()
    res = train(config(tmp_path, epochs=1, seed=2), structures, overwrite=True)
    assert res.best_path.read_bytes() != old and len(res.history) == 1
    assert not list(tmp_path.glob("run.old-*"))  # set aside at the start, deleted after the first checkpoint
    err = capsys.readouterr().err
    assert "set aside in" in err and "removed the previous run" in err


def test_an_output_path_that_is_a_file_is_a_clear_error(tmp_path, structures):
    (tmp_path / "run").write_text("a file")
    with pytest.raises(TrainingError, match=r"output folder .*run is a file, not a folder"):
        Trainer(config(tmp_path), structures)
    (tmp_path / "f").write_text("a file")
    with pytest.raises(TrainingError, match=r"cannot be made: .*f is a file"):
        Trainer(config(tmp_path, "f/sub"), structures)


def test_a_read_only_output_folder_is_a_clear_error(tmp_path, structures, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user without write permission
    with pytest.raises(TrainingError, match=r"cannot write into .*ro \(permission denied\)"):
        Trainer(config(tmp_path, "ro"), structures)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_output_folder_is_a_clear_error_for_real(tmp_path, structures):
    out = tmp_path / "ro"
    out.mkdir(mode=0o500)
    with pytest.raises(TrainingError, match="permission denied"):
        Trainer(config(tmp_path, "ro/run"), structures)


def test_a_failing_folder_write_is_a_training_error_naming_the_folder(tmp_path, structures, monkeypatch):
    tr = Trainer(config(tmp_path), structures)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "run"))

    monkeypatch.setattr("mlip.training.rundir.os.open", refuse)
    with pytest.raises(TrainingError, match=r"cannot write into the output folder .*run: Permission denied"):
        tr.fit()


def test_resuming_a_checkpoint_of_an_older_version_does_not_refit_e0(tmp_path, structures):
    """A checkpoint written before the ``e0`` options existed (one composition, no isolated atoms) resumes:
    its atomic energies are the checkpoint's, the least-squares fit (impossible here) is not redone."""
    from mlip.training import save_checkpoint

    first = train(config(tmp_path, epochs=1), structures)
    meta, arrays = load_checkpoint(first.checkpoint_path)
    for key in ("e0", "e0_shift", "test_files", "init_from"):
        del meta["train_config"][key]
    del meta["guard"]
    save_checkpoint(first.checkpoint_path, meta, arrays)
    again = train(config(tmp_path, epochs=2, e0=None), structures, resume=True)
    assert again.epochs_done == 2
    assert load_checkpoint(again.checkpoint_path)[0]["model_config"] == meta["model_config"]
