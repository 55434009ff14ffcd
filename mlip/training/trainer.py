"""The training loop: :class:`Trainer` (parameters, one optimiser step, epochs, checkpoints) and :func:`train`.

The parts it uses live in their own modules: options (:mod:`.config`), data and statistics
(:mod:`.prepare`, :mod:`.energies`, :mod:`.collate`), loss (:mod:`.loss`), Adam/EMA/scheduler
(:mod:`.optimisers`), checkpoint file and resume checks (:mod:`.checkpoint`), log and plots
(:mod:`.log`), signals (:mod:`.control`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.backend import module_for_device

from .. import autodiff as ad
from ..archive import atomic_write_text
from ..data import Batch
from ..model import ModelConfig, Potential, init_params, save_model
from .checkpoint import (
    check_resumable_data,
    check_resumable_options,
    load_checkpoint,
    restore_trainer,
    save_checkpoint,
    trainer_state,
)
from .collate import collate
from .config import TrainConfig
from .control import stop_on_signals
from .errors import TrainingError
from .guards import DivergenceGuard, stop_message
from .log import ProgressBar, TrainResult, plot_learning_curve, write_log
from .loss import _loss_tensor, _loss_terms, _LossTerms, validation_metrics
from .optimisers import EMA, AdamW, PlateauScheduler
from .parameters import ParameterLayout
from .prepare import prepare_data
from .rundir import RunFolder, check_output_dir
from .testsets import evaluate_test_sets

__all__ = ["Callback", "TrainResult", "Trainer"]


Callback = Callable[["Trainer", str], None]


class Trainer:
    """Trains a :class:`~mlip.model.Potential` (see :mod:`mlip.training` for the method).

    Args:
        config: the options.
        train_structures, valid_structures, isolated_energies: data given directly instead of the
            files named in ``config``.
        resume: continue from ``output_dir/checkpoint.npz`` (checked against this config and data).
        overwrite: start afresh even if ``output_dir`` already holds a checkpoint.
        callbacks: called as ``callback(trainer, event)`` with event ``"batch_end"`` (after each
            optimiser step) or ``"epoch_end"`` (after validation and the checkpoint); raising
            ``KeyboardInterrupt`` there interrupts training like Ctrl-C.
        stream: where the per-epoch lines go (stdout by default).

    Raises:
        ValueError / DataError / TrainingError: bad data or an incompatible checkpoint, before any file
        of ``output_dir`` is changed.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_structures: Sequence[Atoms] | None = None,
        valid_structures: Sequence[Atoms] | None = None,
        isolated_energies: Mapping[str, float] | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        callbacks: Sequence[Callback] = (),
        stream: TextIO | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(config.output_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.npz"
        self.best_path = self.out_dir / "best.npz"
        self.log_path = self.out_dir / "log.csv"
        self.curve_path = self.out_dir / "learning_curve.png"
        self.callbacks = list(callbacks)
        self.stream = stream if stream is not None else sys.stdout
        self.xp = module_for_device(config.device)
        check_output_dir(self.out_dir)
        self.folder = RunFolder(self.out_dir)

        meta = arrays = None
        if resume:
            meta, arrays = load_checkpoint(self.checkpoint_path)
            check_resumable_options(meta, config, self.checkpoint_path)
        elif self.checkpoint_path.exists() and not overwrite:
            raise TrainingError(
                f"{self.out_dir} already holds a training checkpoint; continue it with --resume, "
                f"start afresh with --overwrite, or choose another --output-dir"
            )
        data_config = config
        if meta is not None and "atomic_energies" not in config.model:  # resumed: the checkpoint's E0, not a new fit
            stored = {k: meta.get("model_config", {}).get(k) for k in ("elements", "atomic_energies")}
            model = {**stored, **config.model} if all(stored.values()) else config.model
            data_config = config.replace(model=model, e0=None, e0_shift=False)
        self.data = prepare_data(data_config, train_structures, valid_structures, isolated_energies)
        if meta is not None:
            check_resumable_data(
                meta, self.data.model_config, config.model, self.data.fingerprint, self.checkpoint_path
            )
            self.model_config = ModelConfig.from_dict(meta["model_config"])
        else:
            self.model_config = self.data.model_config
        self._setup_parameters()
        # mutable state
        self.epoch = 0  # completed epochs
        self.batch_index = 0  # next batch of the current epoch
        self.scheduler = PlateauScheduler(config.patience, config.lr_factor, config.min_lr)
        self.best_metric = math.inf
        self.best_epoch = 0
        self.best_valid: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.elapsed_before = 0.0
        self.order = np.zeros(0, dtype=np.int64)
        self.epoch_loss_sum = 0.0
        self.epoch_seconds = 0.0  # time spent in the current epoch before an interruption
        self.rng = np.random.default_rng(config.seed)
        self._stop: str | None = None
        self.guard = DivergenceGuard()
        self._fresh = meta is None
        if meta is not None:
            assert arrays is not None
            restore_trainer(self, meta, arrays)
            stored_lr = meta.get("train_config", {}).get("lr", config.lr)
            if config.lr != stored_lr:  # --resume --lr: the new rate replaces the (scheduled) one
                self.data.notes.append(
                    f"the resumed run uses the learning rate {config.lr:g} (the checkpoint's: {self.lr:g})"
                )
                self.lr = config.lr

    # ------------------------------------------------------------------------------ parameters
    def _setup_parameters(self) -> None:
        cfg, c = self.model_config, self.config
        self.layout = ParameterLayout.of(cfg)
        self.names, self.shapes, self.offsets = self.layout.names, self.layout.shapes, self.layout.offsets
        init = self.data.init_params or init_params(cfg, c.seed)
        if self.layout.misfits(init):
            raise TrainingError(
                f"init_from {c.init_from}: its parameters do not fit the model config "
                f"(missing, differently shaped or unknown: {self.layout.misfits(init)[:5]})"
            )
        self.theta = self.xp.asarray(self.layout.flatten(init, cfg.dtype))
        self.adam = AdamW(
            self.theta,
            lr=c.lr,
            beta1=c.beta1,
            beta2=c.beta2,
            eps=c.eps,
            weight_decay=c.weight_decay,
            decay_mask=self.xp.asarray(self.layout.decay_mask(self.theta.dtype)),
            amsgrad=c.amsgrad,
        )
        self.ema_state = EMA(self.theta, c.ema_decay)
        self.params = self.layout.views(self.theta)
        self.ema_params = self.layout.views(self.ema)
        self.potential = Potential(cfg, self.params)

    @property
    def ema(self) -> Any:
        """The averaged parameters, a flat vector (views of it in :attr:`ema_params`)."""
        return self.ema_state.values

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.adam.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.adam.lr = float(value)

    @property
    def step(self) -> int:
        """Optimiser steps done (all sessions)."""
        return self.adam.step

    @property
    def vmax(self) -> Any:
        return self.adam.vmax

    # ---------------------------------------------------------------------------------- state
    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(meta, arrays)`` of the full training state (what :func:`save_checkpoint` writes)."""
        return trainer_state(self)

    _in_epoch = False
    _epoch_start = 0.0
    _session_start = 0.0
    epoch_of_checkpoint: int | None = None
    _updating = False
    _rng_before_order: dict[str, Any] | None = None
    _valid_terms: list[_LossTerms] | None = None

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._session_start if self._session_start else 0.0)

    def save(self) -> Path:
        """Write ``checkpoint.npz`` now (atomically)."""
        meta, arrays = self.state()
        path = save_checkpoint(self.checkpoint_path, meta, arrays)
        self.folder.discard_aside()  # this run has started: the previous one is not needed any more
        return path

    # ---------------------------------------------------------------------------------- steps
    @property
    def num_batches(self) -> int:
        """Optimiser steps per epoch."""
        n, b = len(self.data.train), self.config.batch_size
        return (n + b - 1) // b

    def _train_step(self, batch: Batch) -> float:
        """One optimiser step on ``batch``; returns its loss. Raises TrainingError if not finite."""
        cfg = self.config
        xp = self.xp
        terms = _loss_terms(batch, cfg)
        tensors = {n: ad.tensor(p, requires_grad=True) for n, p in self.params.items()}
        out = self.potential.evaluate(
            batch, forces=cfg.forces_weight > 0, stress=cfg.stress_weight > 0, params=tensors, create_graph=True
        )
        loss = _loss_tensor(out, terms)
        value = float(loss.data)
        if not math.isfinite(value):
            raise TrainingError(self._nan_message(f"the training loss is {value}"))
        diverged = self.guard.check_step(value / batch.num_structures)
        if diverged:
            raise TrainingError(self._nan_message(diverged, diverged=True))
        grads = ad.grad(loss, [tensors[n] for n in self.names], allow_unused=True)
        del out, loss, tensors
        g = xp.concatenate(
            [(gr.data if gr is not None else xp.zeros(s)).ravel() for gr, s in zip(grads, self.shapes)]
        ).astype(self.theta.dtype, copy=False)
        if not bool(xp.isfinite(g).all()):
            raise TrainingError(self._nan_message("the gradient has non-finite entries"))
        self._updating = True  # from here to the end the state changes: not a consistent point to save
        self._adam(g)
        if not self.adam.is_finite():
            what = "the optimiser state (parameters or Adam moments) is not finite after the update"
            raise TrainingError(self._nan_message(what, diverged=True))
        self.epoch_loss_sum += value
        self.batch_index += 1
        self._updating = False
        return value

    def _adam(self, g: Any) -> None:
        """In-place Adam/AMSGrad update of ``theta`` and the EMA (:mod:`.optimisers`)."""
        self.adam.update(g)
        self.ema_state.update()

    def _nan_message(self, what: str, diverged: bool = False) -> str:
        where = f"epoch {self.epoch + 1}, batch {min(self.batch_index + 1, self.num_batches)}/{self.num_batches}"
        kept = (
            f"the last good checkpoint {self.checkpoint_path} (epoch {self.epoch_of_checkpoint}) is kept"
            if self.epoch_of_checkpoint is not None
            else "no checkpoint was written yet"
        ) + (f", and {self.best_path} (epoch {self.best_epoch})" if self.best_epoch else "")
        return stop_message(what, where, self.lr, kept, diverged)

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Loss (per structure) and errors (meV/atom, meV/Å) of ``params`` (the EMA weights by default)."""
        if self._valid_terms is None:
            self._valid_terms = [_loss_terms(b, self.config) for b in self.data.valid_batches]
        res = validation_metrics(
            self.potential,
            self.data.valid_batches,
            self._valid_terms,
            self.ema_params if params is None else params,
            self.config.stress_weight > 0,
            len(self.data.valid),
        )
        if not math.isfinite(res["valid_loss"]):
            raise TrainingError(self._nan_message(f"the validation loss is {res['valid_loss']}"))
        return res

    # ----------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train until the epoch budget, the time budget or an interruption; see :class:`TrainResult`.

        Holds the lock of the output folder meanwhile; a previous run there (``overwrite``) is set aside
        and deleted once this run has written a checkpoint, or put back if it fails before
        (:class:`~mlip.training.rundir.RunFolder`).
        """
        for note in self.data.notes:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        with self.folder.locked():
            if self._fresh:  # a new run: no file of an older run may be mistaken for this one's
                self.folder.set_aside()
                self._fresh = False
            try:
                result = self._fit()
            except BaseException:
                if not self.checkpoint_path.exists():
                    self.folder.restore_aside()
                raise
            if self.checkpoint_path.exists():
                self.folder.discard_aside()
            else:
                self.folder.restore_aside()
        return result

    def _fit(self) -> TrainResult:
        cfg = self.config
        self._write_config()
        self._session_start = start = time.perf_counter()
        budget = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else math.inf
        epoch_times: list[float] = []
        status = "completed"
        if self.epoch >= cfg.epochs:
            self._print(f"already trained for {self.epoch} epochs (epochs = {cfg.epochs}); raise epochs to go on")
        elif self.epoch == 0 and self.batch_index == 0:
            self._print(
                f"training {int(self.theta.size)} parameters on {len(self.data.train)} structures "
                f"({self.num_batches} batches of <= {cfg.batch_size}), validating on {len(self.data.valid)}; "
                f"output in {self.out_dir}"
            )
        else:
            self._print(f"resuming at epoch {self.epoch + 1}, batch {self.batch_index + 1} from {self.checkpoint_path}")
        self.epoch_of_checkpoint = self.epoch if self.checkpoint_path.exists() else None
        with stop_on_signals(self._request_stop, lambda: bool(self._stop)):
            while self.epoch < cfg.epochs:
                used = time.perf_counter() - start
                if self.batch_index == 0 and epoch_times and used + float(np.mean(epoch_times)) > budget:
                    status = "time_budget"
                    break
                try:
                    seconds = self._run_epoch(start, budget)
                except KeyboardInterrupt:
                    self._request_stop("KeyboardInterrupt")
                    seconds = None
                    if self._updating:  # caught in the middle of an update: the state is not consistent
                        status = "interrupted"
                        self._print(
                            f"\ninterrupted during a parameter update; the last checkpoint {self.checkpoint_path} "
                            f"(epoch {self.epoch_of_checkpoint}) is kept; continue with --resume"
                        )
                        break
                if seconds is None:
                    self.save()
                    self._in_epoch = False
                    if self._stop:
                        status = "interrupted"
                        self._print(
                            f"\ninterrupted ({self._stop}) at epoch {self.epoch + 1}, batch {self.batch_index}; "
                            f"state saved to {self.checkpoint_path}; continue with --resume"
                        )
                    else:
                        status = "time_budget"
                    break
                epoch_times.append(seconds)
                self._callbacks("epoch_end")
                if self._stop:
                    status = "interrupted"
                    break
        self._in_epoch = False
        write_log(self.log_path, self.history)
        curve = self._plot()
        if status == "time_budget":
            self._print(f"time budget of {cfg.max_minutes:g} min reached after {self.epoch} epochs")
        tests = None
        if self.data.test_sets and status != "interrupted" and self.best_path.exists():
            tests = evaluate_test_sets(self.best_path, self.data.test_sets, self.out_dir, cfg)
        return TrainResult(
            status=status,
            epochs_done=self.epoch,
            best_epoch=self.best_epoch,
            best_valid=dict(self.best_valid),
            best_path=self.best_path,
            checkpoint_path=self.checkpoint_path,
            log_path=self.log_path,
            curve_path=curve,
            seconds=time.perf_counter() - start,
            seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else math.nan,
            history=[dict(r) for r in self.history],
            test_metrics=tests,
        )

    def _run_epoch(self, start: float, budget: float) -> float | None:
        """Train one epoch (or its remainder), validate, checkpoint; its wall time (s), None if stopped."""
        cfg = self.config
        n = len(self.data.train)
        nb = self.num_batches
        self._in_epoch = True
        self._epoch_start = time.perf_counter()
        if self.batch_index == 0:
            self._rng_before_order = self.rng.bit_generator.state
            self.order = self.rng.permutation(n).astype(np.int64)
            self.epoch_loss_sum = 0.0
            self.epoch_seconds = 0.0
        bar = ProgressBar(cfg.progress)
        while self.batch_index < nb:
            i = self.batch_index
            idx = self.order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            self._train_step(collate([self.data.train[int(k)] for k in idx]))
            done = self.batch_index
            bar.show(self.epoch + 1, done, nb, self.epoch_loss_sum / min(done * cfg.batch_size, n))
            self._callbacks("batch_end")
            if self._stop or (self.epoch >= 1 and time.perf_counter() - start > budget and self.batch_index < nb):
                bar.newline()
                return None
        bar.clear()
        return self._end_epoch(n)

    def _end_epoch(self, n: int) -> float:
        """Validation with the EMA weights, best model, scheduler, log row and checkpoint; the epoch's time (s)."""
        cfg = self.config
        train_loss = self.epoch_loss_sum / n
        lr_used = self.lr
        valid = self.validate()
        diverged = self.guard.check_epoch(train_loss, valid["valid_loss"])
        if diverged:
            self.batch_index = self.num_batches - 1
            raise TrainingError(self._nan_message(diverged, diverged=True))
        self._updating = True
        self.epoch += 1
        self.batch_index = 0
        metric = valid["valid_loss"]
        improved = metric < self.best_metric
        if improved:
            self.best_metric = metric
            self.best_epoch = self.epoch
            self.best_valid = {k: float(v) for k, v in valid.items()}
            save_model(
                self.best_path,
                self.model_config,
                self.ema_params,
                extra={"epoch": self.epoch, "valid": self.best_valid, "train_config": self.config.to_dict()},
            )
        self.lr = self.scheduler.step(metric, self.lr)
        seconds = self.epoch_seconds + time.perf_counter() - self._epoch_start
        self._in_epoch = False
        self.epoch_seconds = 0.0
        row = {"epoch": self.epoch, "time_s": round(self._elapsed(), 3), "lr": lr_used, "train_loss": train_loss}
        self.history.append({**row, **valid})
        self.save()
        self._updating = False
        self.epoch_of_checkpoint = self.epoch
        write_log(self.log_path, self.history)
        if self.epoch % cfg.plot_every == 0:
            self._plot()
        self._print(
            f"epoch {self.epoch:>4}/{cfg.epochs}  lr {lr_used:.2e}  train {train_loss:.4g}  valid {metric:.4g}  "
            f"E {valid['valid_energy_rmse_mev_atom']:.3g} meV/atom  F {valid['valid_force_rmse_mev_A']:.4g} meV/Å  "
            f"{seconds:.1f} s{'  *' if improved else ''}"
        )
        return seconds

    # --------------------------------------------------------------------------------- helpers
    def _request_stop(self, why: str) -> None:
        self._stop = self._stop or why

    def _callbacks(self, event: str) -> None:
        for cb in self.callbacks:
            try:
                cb(self, event)
            except KeyboardInterrupt:
                self._request_stop("KeyboardInterrupt")

    def _print(self, text: str) -> None:
        if self.config.progress:
            print(text, file=self.stream, flush=True)

    def _write_config(self) -> None:
        payload = {"train_config": self.config.to_dict(), "model_config": self.model_config.to_dict()}
        atomic_write_text(self.out_dir / "train_config.json", json.dumps(payload, indent=2) + "\n")

    def _plot(self) -> Path | None:
        return plot_learning_curve(self.log_path, self.curve_path, self._print) if self.history else None
