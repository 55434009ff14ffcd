"""What a run reports: the CSV log, the learning curve, the per-batch progress bar.

``log.csv`` has the columns :data:`LOG_COLUMNS` (``epoch,time_s,lr,train_loss,valid_loss,
valid_energy_rmse_mev_atom,valid_force_rmse_mev_A``; losses per structure, RMSEs in meV/atom and
meV/Å, times in s); it is rewritten atomically after every epoch.
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..archive import atomic_write_text

__all__ = ["LOG_COLUMNS", "ProgressBar", "TrainResult", "plot_learning_curve", "write_log"]

LOG_COLUMNS = (
    "epoch",
    "time_s",
    "lr",
    "train_loss",
    "valid_loss",
    "valid_energy_rmse_mev_atom",
    "valid_force_rmse_mev_A",
)


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def write_log(path: Path, history: Sequence[dict[str, float]]) -> None:
    """Write ``history`` (one dict per epoch) as ``log.csv`` (atomically; NaN as an empty cell)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOG_COLUMNS)
    for r in history:
        w.writerow([_csv_value(r.get(c)) for c in LOG_COLUMNS])
    atomic_write_text(path, buf.getvalue())


def plot_learning_curve(log_path: Path, curve_path: Path, warn: Callable[[str], None]) -> Path | None:
    """Draw the learning curve of ``log_path``; a failure is reported through ``warn``, never raised."""
    try:
        from ..plots import learning_curve

        return learning_curve(log_path, curve_path, title="training")
    except Exception as err:  # plotting must never stop training
        warn(f"warning: could not draw the learning curve: {err}")
        return None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """A one-line per-batch bar on stderr, shown only when ``enabled`` and stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.on = enabled and _isatty(sys.stderr)

    def show(self, epoch: int, done: int, total: int, loss: float) -> None:
        if self.on:
            width = 24
            fill = int(width * done / total)
            sys.stderr.write(
                f"\r  epoch {epoch:>4} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} loss {loss:.4g}  "
            )
            sys.stderr.flush()

    def newline(self) -> None:
        if self.on:
            sys.stderr.write("\n")

    def clear(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 78 + "\r")


@dataclass
class TrainResult:
    """What a call of :meth:`Trainer.fit` did.

    Attributes:
        status: ``"completed"`` (epoch budget reached), ``"time_budget"`` (``max_minutes`` reached),
            ``"interrupted"`` (Ctrl-C, SIGTERM or a callback raising ``KeyboardInterrupt``; resumable).
        epochs_done: completed epochs (all sessions).
        best_epoch: epoch of ``best.npz`` (0 if none yet).
        best_valid: validation metrics of the best epoch (loss, meV/atom, meV/Å).
        best_path, checkpoint_path, log_path, curve_path: files written.
        seconds: wall time of this call (s).
        seconds_per_epoch: mean wall time of the epochs of this call, validation included (s).
        history: one log row per epoch (all sessions).
        test_metrics: ``{test file: metrics}`` of the best model (``None`` without ``test_files``).
    """

    status: str
    epochs_done: int
    best_epoch: int
    best_valid: dict[str, float]
    best_path: Path
    checkpoint_path: Path
    log_path: Path
    curve_path: Path | None
    seconds: float
    seconds_per_epoch: float
    history: list[dict[str, float]]
    test_metrics: dict[str, dict[str, float]] | None = None
