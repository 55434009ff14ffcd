"""Training checkpoints: the file (:func:`save_checkpoint`, :func:`load_checkpoint`) and the resume checks.

``checkpoint.npz`` is an archive of :mod:`mlip.archive` (pickle-free ``.npz``, written atomically):
flat float arrays ``params``, ``ema``, ``adam_m``, ``adam_v``, ``adam_vmax``, the epoch's permutation
``order`` and a ``__meta__`` JSON with the configs, parameter layout, counters, learning-rate and
scheduler state, the RNG's ``bit_generator.state``, the best metric and the history.

A run continued with ``--resume`` must give the same parameters as an uninterrupted one, so
:func:`check_resumable` refuses training options (other than :data:`RESUMABLE_CHANGES`), model options
or data that differ from the checkpoint's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..archive import json_float, read_archive, write_archive
from ..model import ModelConfig
from .config import TrainConfig
from .errors import TrainingError

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "DERIVED_MODEL_FIELDS",
    "RESUMABLE_CHANGES",
    "check_resumable_data",
    "check_resumable_options",
    "load_checkpoint",
    "restore_trainer",
    "save_checkpoint",
    "trainer_state",
]

CHECKPOINT_FORMAT = "cartesian-irreps-mlip-checkpoint"
CHECKPOINT_VERSION = 1
#: Model-config fields computed from the training data (not chosen by the user).
DERIVED_MODEL_FIELDS = ("avg_num_neighbors", "atomic_energies", "energy_scale")
#: Training options that may change between an interrupted run and its ``--resume`` (a new ``lr`` sets the
#: learning rate of the resumed run).
RESUMABLE_CHANGES = frozenset(
    {"epochs", "max_minutes", "output_dir", "plot_every", "progress", "device", "train_file", "valid_file"}
    | {"isolated_atoms_file", "valid_batch_size", "test_files", "lr"}
)


def save_checkpoint(path: str | os.PathLike[str], meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> Path:
    """Atomically write a pickle-free ``.npz``: ``arrays`` plus ``__meta__`` (JSON bytes).

    The file is written to ``<path>.tmp``, flushed and fsynced, then renamed over ``path``
    (:func:`os.replace`), so a crash leaves either the old or the new checkpoint, never a partial one;
    the temporary file is removed when writing fails (:func:`mlip.archive.write_archive`).
    """
    return write_archive(path, meta, arrays)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_checkpoint`: ``(meta, arrays)``.

    Raises:
        FileNotFoundError: no file.
        TrainingError: not a readable checkpoint of this format and version.
    """
    path = Path(path)
    meta, arrays = read_archive(path, "checkpoint", error=TrainingError)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} has format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(
            f"{path} has checkpoint version {meta.get('version')}; this code reads version {CHECKPOINT_VERSION}"
        )
    return meta, arrays


def check_resumable_options(meta: Mapping[str, Any], config: TrainConfig, path: Path) -> None:
    """Raise :class:`TrainingError` when ``config`` differs from the checkpoint's in an option that matters."""
    stored = meta.get("train_config", {})
    diffs = []
    for k, v in config.to_dict().items():
        if k in RESUMABLE_CHANGES or k == "model":
            continue
        if k in stored and stored[k] != v:
            diffs.append(f"{k}: checkpoint {stored[k]!r}, now {v!r}")
    if diffs:
        raise TrainingError(
            f"{path} was made with other training options, so --resume could not continue "
            f"it exactly: {'; '.join(diffs)}"
        )


def check_resumable_data(
    meta: Mapping[str, Any], model_config: ModelConfig, user_model: Mapping[str, Any], fingerprint: str, path: Path
) -> None:
    """Raise :class:`TrainingError` when the model config or the data differ from the checkpoint's.

    Args:
        meta: the checkpoint's metadata.
        model_config: the model config this run would use (statistics from its data).
        user_model: the model options the user gave (statistics given there are compared too).
        fingerprint: SHA-256 of this run's training and validation data.
        path: the checkpoint (for the messages).
    """
    stored = meta.get("model_config", {})
    user = set(user_model) | {"elements", "dtype"}
    diffs = []
    for k, v in model_config.to_dict().items():
        if k in DERIVED_MODEL_FIELDS and k not in user:
            continue
        if stored.get(k) != v:
            diffs.append(f"{k}: checkpoint {stored.get(k)!r}, now {v!r}")
    if diffs:
        raise TrainingError(
            f"{path} holds a model with a different config, so it cannot be resumed "
            f"with these options: {'; '.join(diffs)}"
        )
    if meta.get("data_fingerprint") != fingerprint:
        raise TrainingError(
            f"{path} was trained on other data (training/validation structures differ), "
            "so --resume could not continue it exactly; use the same data or start afresh with --overwrite"
        )


def trainer_state(tr: Trainer) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, arrays)`` of the full training state of ``tr`` (what :func:`save_checkpoint` writes)."""
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": tr.model_config.to_dict(),
        "train_config": tr.config.to_dict(),
        "layout": tr.layout.to_json(),
        "data_fingerprint": tr.data.fingerprint,
        "epoch": tr.epoch,
        "batch_index": tr.batch_index,
        "step": tr.step,
        "ema_updates": tr.ema_state.updates,
        "lr": tr.lr,
        "scheduler": {"best": json_float(tr.scheduler.best), "bad_epochs": tr.scheduler.bad_epochs},
        "best": {"metric": json_float(tr.best_metric), "epoch": tr.best_epoch, "valid": tr.best_valid},
        # stopped before the first step of an epoch: the permutation is drawn again on resume
        "rng": tr._rng_before_order if tr._in_epoch and tr.batch_index == 0 else tr.rng.bit_generator.state,
        "history": tr.history,
        "guard": tr.guard.state(),
        "elapsed_s": tr._elapsed(),
        "epoch_loss_sum": tr.epoch_loss_sum,
        "epoch_seconds": tr.epoch_seconds + (time.perf_counter() - tr._epoch_start if tr._in_epoch else 0.0),
    }
    arrays = {"params": tr.theta, "ema": tr.ema, "adam_m": tr.adam.m, "adam_v": tr.adam.v, "order": tr.order}
    if tr.config.amsgrad:
        arrays["adam_vmax"] = tr.vmax
    return meta, arrays


def restore_trainer(tr: Trainer, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Set the state of ``tr`` from a checkpoint (checked against its parameter layout and data)."""
    path = tr.checkpoint_path
    if meta.get("layout") != tr.layout.to_json():
        raise TrainingError(f"{path}: its parameter layout does not match the model config")
    targets = {"params": tr.theta, "ema": tr.ema, "adam_m": tr.adam.m, "adam_v": tr.adam.v}
    if tr.config.amsgrad:
        targets["adam_vmax"] = tr.vmax
    missing = [k for k in [*targets, "order"] if k not in arrays]
    if missing:
        raise TrainingError(f"{path} lacks the arrays {missing}")
    for k, target in targets.items():
        if arrays[k].shape != tr.theta.shape:
            raise TrainingError(f"{path}: array {k} has shape {arrays[k].shape}")
        target[...] = tr.xp.asarray(arrays[k].astype(tr.theta.dtype))
    tr.order = np.asarray(arrays["order"], dtype=np.int64)
    tr.epoch = int(meta["epoch"])
    tr.batch_index = int(meta["batch_index"])
    tr.adam.step = int(meta["step"])
    tr.ema_state.updates = int(meta["ema_updates"])
    tr.lr = float(meta["lr"])
    tr.scheduler.best = float(meta["scheduler"]["best"])
    tr.scheduler.bad_epochs = int(meta["scheduler"]["bad_epochs"])
    tr.best_metric = float(meta["best"]["metric"])
    tr.best_epoch = int(meta["best"]["epoch"])
    tr.best_valid = dict(meta["best"].get("valid", {}))
    tr.history = [dict(r) for r in meta["history"]]
    guard = meta.get("guard") or {}
    tr.guard.first_batch = guard.get("first_batch")
    tr.guard.first_epoch = guard.get("first_epoch", tr.history[0]["train_loss"] if tr.history else None)
    tr.elapsed_before = float(meta["elapsed_s"])
    tr.epoch_loss_sum = float(meta["epoch_loss_sum"])
    tr.epoch_seconds = float(meta.get("epoch_seconds", 0.0))
    try:
        tr.rng.bit_generator.state = meta["rng"]
    except (TypeError, ValueError, KeyError) as err:
        raise TrainingError(f"{path}: unusable RNG state: {err}") from err
    if tr.batch_index and len(tr.order) != len(tr.data.train):
        raise TrainingError(f"{path}: its epoch order does not match the training set")
