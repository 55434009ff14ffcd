"""Training: loss, optimiser, statistics, checkpoints, exact resume, NaN stop and bad input."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
from ase import Atoms

from mlip import autodiff as ad
from mlip.data import SpeciesTable, batch_structures
from mlip.model import Potential, load_model
from mlip.reference_data import make_emt_dataset, write_dataset
from mlip.training import (
    DataError,
    TrainConfig,
    Trainer,
    TrainingError,
    _loss_tensor,
    _loss_terms,
    _loss_value,
    collate,
    load_checkpoint,
    prepare_data,
    reference_energies,
    save_checkpoint,
    split_batch,
    train,
)

TINY_MODEL = {
    "channels": 4,
    "lmax": 1,
    "hidden_lmax": 1,
    "correlation": 2,
    "num_layers": 2,
    "cutoff": 4.0,
    "num_bessel": 4,
    "radial_hidden": [8],
}


@pytest.fixture(scope="module")
def structures() -> list[Atoms]:
    """10 labelled Cu-Au structures of 8 atoms (EMT)."""
    return make_emt_dataset(10, size=(1, 1, 2), seed=3, equilibration_steps=20, steps_between=5)


def config(tmp_path, name: str = "run", **kw) -> TrainConfig:
    base = dict(
        model=dict(TINY_MODEL),
        epochs=3,
        batch_size=2,
        valid_fraction=0.3,
        output_dir=str(tmp_path / name),
        progress=False,
        seed=1,
        e0="average",  # one composition (Cu6Au2) throughout: least squares cannot separate Cu and Au
    )
    base.update(kw)
    return TrainConfig(**base)


def final_arrays(path) -> dict[str, np.ndarray]:
    return load_checkpoint(path)[1]


# ------------------------------------------------------------------------------------ resume


def test_interrupt_then_resume_gives_the_same_parameters(tmp_path, structures):
    ref = train(config(tmp_path, "ref"), structures)
    assert ref.status == "completed" and ref.epochs_done == 3

    def interrupt(trainer: Trainer, event: str) -> None:
        if event == "batch_end" and trainer.step == 6:  # in the middle of epoch 2 (4 batches per epoch)
            raise KeyboardInterrupt

    cut = train(config(tmp_path, "cut"), structures, callbacks=[interrupt])
    assert cut.status == "interrupted" and cut.epochs_done == 1
    meta, _ = load_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    assert meta["batch_index"] == 2 and meta["step"] == 6
    again = train(config(tmp_path, "cut"), structures, resume=True)
    assert again.status == "completed" and again.epochs_done == 3
    a, b = final_arrays(ref.checkpoint_path), final_arrays(again.checkpoint_path)
    for key in ("params", "ema", "adam_m", "adam_v", "adam_vmax", "order"):
        assert np.array_equal(a[key], b[key]), key
    drop = ("time_s",)
    strip = lambda h: [{k: v for k, v in r.items() if k not in drop} for r in h]  # noqa: E731
    assert strip(ref.history) == strip(again.history)
    best_a, best_b = load_model(ref.best_path)[1], load_model(again.best_path)[1]
    assert all(np.array_equal(best_a[k], best_b[k]) for k in best_a)


def test_epoch_budget_then_resume_with_a_bigger_one(tmp_path, structures):
    ref = train(config(tmp_path, "ref"), structures)
    first = train(config(tmp_path, "two", epochs=2), structures)
    assert first.epochs_done == 2
    rows = (tmp_path / "two" / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,time_s,lr,train_loss,valid_loss,valid_energy_rmse_mev_atom,valid_force_rmse_mev_A"
    assert len(rows) == 3
    more = train(config(tmp_path, "two", epochs=3), structures, resume=True)
    assert more.epochs_done == 3
    assert np.array_equal(final_arrays(ref.checkpoint_path)["params"], final_arrays(more.checkpoint_path)["params"])
    assert len((tmp_path / "two" / "log.csv").read_text().splitlines()) == 4


def test_sigterm_finishes_the_batch_saves_and_resumes_exactly(tmp_path, structures):
    ref = train(config(tmp_path, "ref", epochs=2), structures)

    def term(trainer: Trainer, event: str) -> None:
        if event == "batch_end" and trainer.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    cut = train(config(tmp_path, "cut", epochs=2), structures, callbacks=[term])
    assert signal.getsignal(signal.SIGTERM) == before  # handler restored
    assert cut.status == "interrupted"
    assert load_checkpoint(cut.checkpoint_path)[0]["step"] == 3
    again = train(config(tmp_path, "cut", epochs=2), structures, resume=True)
    assert np.array_equal(final_arrays(ref.checkpoint_path)["params"], final_arrays(again.checkpoint_path)["params"])


def test_same_seed_same_run_and_outputs(tmp_path, structures):
    a = train(config(tmp_path, "a", epochs=1), structures)
    b = train(config(tmp_path, "b", epochs=1), structures)
    assert np.array_equal(final_arrays(a.checkpoint_path)["params"], final_arrays(b.checkpoint_path)["params"])
    out = tmp_path / "a"
    assert {"checkpoint.npz", "best.npz", "log.csv", "learning_curve.png", "train_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert not list(out.glob("*.tmp"))
    meta, _ = load_checkpoint(a.checkpoint_path)
    assert meta["rng"]["bit_generator"] == "PCG64"
    assert math.isfinite(a.best_valid["valid_force_rmse_mev_A"])


# ---------------------------------------------------------------------------------- NaN stop


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, structures):
    def poison(trainer: Trainer, event: str) -> None:
        if event == "epoch_end" and trainer.epoch == 1:
            trainer.theta[0] = np.nan

    cfg = config(tmp_path)
    with pytest.raises(TrainingError, match=r"non-finite|nan") as info:
        train(cfg, structures, callbacks=[poison])
    assert "epoch 2, batch 1" in str(info.value) and "last good checkpoint" in str(info.value)
    meta, arrays = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert meta["epoch"] == 1 and meta["batch_index"] == 0
    assert np.isfinite(arrays["params"]).all()
    # the run can be resumed from there
    again = train(config(tmp_path, epochs=2), structures, resume=True)
    assert again.epochs_done == 2


# ------------------------------------------------------------------------------- checkpoints


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, {"format": "x", "n": 1}, {"a": np.arange(3.0)})
    good = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"format": "x", "n": 2}, {"a": np.arange(5.0)})
    assert path.read_bytes() == good
    assert not list(tmp_path.glob("*.tmp"))


def test_unreadable_checkpoint_is_a_clear_error(tmp_path, structures):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"not a zip file")
    with pytest.raises(TrainingError, match="not a readable checkpoint"):
        Trainer(config(tmp_path), structures, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(config(tmp_path, "none"), structures, resume=True)


# --------------------------------------------------------------------------- loss, optimiser


def test_loss_matches_the_formula(structures):
    table = SpeciesTable(["Cu", "Au"])
    cfg = TrainConfig(model=dict(TINY_MODEL), energy_weight=2.0, forces_weight=3.0, stress_weight=5.0, e0="average")
    batch = batch_structures(structures[:3], 4.0, table)
    pot = Potential.create(prepare_data(cfg, structures[:6], structures[6:]).model_config)
    out = pot.evaluate(batch, stress=True)
    terms = _loss_terms(batch, cfg)
    n = batch.n_atoms
    expected = (
        2.0 * np.sum(((out["energy"] - batch.energy) / n) ** 2)
        + 3.0 * np.sum((out["forces"] - batch.forces) ** 2)
        + 5.0 * np.sum((out["stress"] - batch.stress) ** 2)
    )
    assert np.isclose(_loss_value(out, terms), expected, rtol=1e-12)
    tensors = {k: ad.tensor(v, requires_grad=True) for k, v in pot.params.items()}
    t_out = pot.evaluate(batch, stress=True, params=tensors, create_graph=True)
    assert np.isclose(float(_loss_tensor(t_out, terms).data), expected, rtol=1e-10)


def test_adam_amsgrad_ema_and_weight_decay_follow_the_reference_formulas(tmp_path, structures):
    tr = Trainer(config(tmp_path, weight_decay=0.1, ema_decay=0.5), structures)
    names = tr.names
    mask = np.concatenate(
        [np.full(int(np.prod(s)), float(".product." in n or ".linear." in n)) for n, s in zip(names, tr.shapes)]
    )
    assert 0 < mask.sum() < mask.size
    theta0 = tr.theta.copy()
    rng = np.random.default_rng(0)
    g1, g2 = rng.normal(size=theta0.size), rng.normal(size=theta0.size)
    tr._adam(g1.copy())
    tr._adam(g2.copy())
    b1, b2, lr, eps, wd = 0.9, 0.999, 0.01, 1e-8, 0.1
    theta, m, v, vmax, ema = theta0.copy(), 0 * theta0, 0 * theta0, 0 * theta0, theta0.copy()
    for t, g in enumerate((g1, g2), start=1):
        g = g + wd * mask * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        theta = theta - lr / (1 - b1**t) * m / (np.sqrt(vmax) / np.sqrt(1 - b2**t) + eps)
        d = min(0.5, (1 + t) / (10 + t))
        ema = d * ema + (1 - d) * theta
    assert np.allclose(tr.theta, theta, rtol=1e-12, atol=1e-15)
    assert np.allclose(tr.ema, ema, rtol=1e-12, atol=1e-15)
    assert np.allclose(tr.vmax, vmax)
    # parameter dict entries are views of the flat vector
    assert np.shares_memory(tr.params[names[0]], tr.theta)


def test_plateau_scheduler_reduces_the_learning_rate(tmp_path, structures):
    tr = Trainer(config(tmp_path, epochs=3, patience=1, lr_factor=0.5, ema_decay=0.0), structures)
    tr.validate = lambda params=None: {  # constant validation loss: never improves after epoch 1
        "valid_loss": 1.0,
        "valid_energy_rmse_mev_atom": 1.0,
        "valid_force_rmse_mev_A": 1.0,
    }
    res = tr.fit()
    # the log shows the rate used during each epoch; epochs 2 and 3 bring no gain (patience 1)
    assert [r["lr"] for r in res.history] == [0.01, 0.01, 0.005]
    assert tr.lr == 0.0025
    assert res.best_epoch == 1


# -------------------------------------------------------------------------------- statistics


def test_collate_of_split_graphs_equals_a_direct_batch(structures):
    table = SpeciesTable(["Cu", "Au"])
    full = batch_structures(structures[:4], 4.0, table)
    again = collate(split_batch(full)[1:3])
    direct = batch_structures(structures[1:3], 4.0, table)
    for name, value in direct.arrays().items():
        assert np.array_equal(getattr(again, name), value), name
    pairs = collate([batch_structures(structures[0:2], 4.0, table), batch_structures(structures[2:4], 4.0, table)])
    for name, value in full.arrays().items():
        assert np.array_equal(getattr(pairs, name), value), name


def test_statistics_from_the_training_set(tmp_path, structures):
    iso = {"Cu": 3.5, "Au": 3.8}
    cfg = config(tmp_path, e0=None)
    exact = prepare_data(cfg, structures[:7], structures[7:], iso).model_config
    assert exact.atomic_energies == (3.5, 3.8)  # isolated-atom energies are used exactly as given
    cfg = config(tmp_path, e0=None, e0_shift=True)
    data = prepare_data(cfg, structures[:7], structures[7:], iso)
    table = SpeciesTable(["Cu", "Au"])
    full = batch_structures(structures[:7], 4.0, table)
    mc = data.model_config
    assert mc.elements == ("Cu", "Au")
    assert np.isclose(mc.avg_num_neighbors, full.num_edges / full.num_atoms)
    assert np.isclose(mc.energy_scale, np.sqrt(np.mean(full.forces**2)))
    counts = np.array([[np.sum(a.numbers == 29), np.sum(a.numbers == 79)] for a in structures[:7]], float)
    n = counts.sum(1)
    e = np.array([a.info["energy"] for a in structures[:7]])
    a = counts / n[:, None]
    y = (e - counts @ np.array([3.5, 3.8])) / n
    delta = np.linalg.solve(a.T @ a + np.eye(2), a.T @ y)
    assert np.allclose(mc.atomic_energies, np.array([3.5, 3.8]) + delta)
    assert mc.dtype == "float64"
    # one composition: least squares cannot determine E0 (an error), "average" gives the mean energy per atom
    with pytest.raises(DataError, match=r"rank 1 < 2 elements.*--e0 FILE.*--e0 average"):
        reference_energies(full, table)
    notes = []
    e0, mu = reference_energies(full, table, mode="average", notes=notes)
    assert np.array_equal(e0, mu) and np.allclose(e0, np.mean(e / n)) and "mean energy per atom" in notes[0]


# -------------------------------------------------------------------------------- bad input


def test_training_file_without_forces(tmp_path, structures):
    bare = []
    for a in structures:
        b = Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=True)
        b.info["energy"] = a.info["energy"]
        bare.append(b)
    path = write_dataset(bare, tmp_path / "noforces.xyz")
    from mlip.reference_data import split

    first = split(bare, (0.7, 0.3), seed=1)[0][0]  # the first training structure after the shuffle
    k = next(i for i, b in enumerate(bare) if b is first)  # named by its position in the file
    with pytest.raises(DataError, match=rf"structure {k} of .*noforces\.xyz has no forces.*forces_weight"):
        Trainer(config(tmp_path, train_file=str(path)))
    assert not (tmp_path / "run").exists()  # failed before any file was written
    res = train(config(tmp_path, train_file=str(path), forces_weight=0.0, epochs=1))  # energies only: fine
    assert res.epochs_done == 1


def test_elements_missing_from_the_reference_energies(tmp_path, structures):
    with pytest.raises(DataError, match=r"Au.*no isolated-atom energy"):
        Trainer(config(tmp_path, e0=None), structures, isolated_energies={"Cu": 3.5})
    iso = tmp_path / "iso.xyz"
    write_dataset([Atoms("Cu", cell=[10] * 3, info={"energy": 3.5})], iso)
    with pytest.raises(DataError, match=r"Au.*no isolated-atom energy"):
        Trainer(config(tmp_path, isolated_atoms_file=str(iso), e0=None), structures)
    with pytest.raises(DataError, match=r"Au.*not in the species table"):
        Trainer(config(tmp_path, model={**TINY_MODEL, "elements": ["Cu"]}), structures)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        Trainer(config(tmp_path, train_file=str(empty)))
    with pytest.raises(DataError, match="does not exist"):
        Trainer(config(tmp_path, train_file=str(tmp_path / "missing.xyz")))
    with pytest.raises(DataError, match="no training data"):
        Trainer(config(tmp_path))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_sise": 5}, "unknown training config keys.*batch_sise"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be > 0"),
        ({"valid_fraction": 1.5}, "valid_fraction must lie strictly between 0 and 1"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"energy_weight": 0, "forces_weight": 0}, "nothing to train on"),
        ({"dtype": "float16"}, "dtype"),
        ({"model": {"chanels": 8}}, "unknown model keys.*chanels"),
        ({"model": {"hidden_lmax": 3, "lmax": 1}}, "hidden_lmax"),
        ({"max_minutes": 0}, "max_minutes must be > 0"),
    ],
)
def test_bad_config_values(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({"model": dict(TINY_MODEL), **changes})


def test_resume_with_another_model_config_is_refused_before_anything_changes(tmp_path, structures):
    first = train(config(tmp_path, epochs=1), structures)
    before = first.checkpoint_path.read_bytes()
    with pytest.raises(TrainingError, match=r"different config.*channels: checkpoint 4, now 6"):
        Trainer(config(tmp_path, model={**TINY_MODEL, "channels": 6}), structures, resume=True)
    with pytest.raises(TrainingError, match=r"other training options.*batch_size"):
        Trainer(config(tmp_path, batch_size=3), structures, resume=True)
    with pytest.raises(TrainingError, match="other data"):
        Trainer(config(tmp_path), structures[:-1], resume=True)
    with pytest.raises(TrainingError, match="already holds a training checkpoint"):
        Trainer(config(tmp_path), structures)
    assert first.checkpoint_path.read_bytes() == before
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["model_config"]["channels"] == 4


def test_float32_training_runs(tmp_path, structures):
    res = train(config(tmp_path, epochs=1, dtype="float32"), structures)
    config32, params = load_model(res.best_path)
    assert config32.dtype == "float32" and all(v.dtype == np.float32 for v in params.values())
