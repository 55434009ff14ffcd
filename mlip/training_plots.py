"""The learning-curve figure of a training log (CSV or rows): losses, validation RMSEs, learning rate.

Inputs and outputs as in :mod:`mlip.plots` (which re-exports these names): one PNG of exactly
``figsize * dpi`` pixels; a malformed log or one with nothing to plot raises :class:`ValueError`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from .plot_base import PathArg, _figure, _save

__all__ = ["LOG_COLUMNS", "best_epoch", "learning_curve", "read_training_log"]

#: Columns of the training CSV log that :func:`learning_curve` knows (any may be missing or empty).
LOG_COLUMNS = (
    "epoch",
    "time_s",
    "lr",
    "train_loss",
    "valid_loss",
    "valid_energy_rmse_mev_atom",
    "valid_force_rmse_mev_A",
)

_LOSS_COLUMNS = (("train_loss", "train loss"), ("valid_loss", "valid loss"))
_RMSE_COLUMNS = (
    ("valid_energy_rmse_mev_atom", "energy RMSE (meV/atom)"),
    ("valid_force_rmse_mev_A", "force RMSE (meV/Å)"),
)
#: Order in which columns pick the best validation epoch.
_BEST_KEYS = ("valid_loss", "valid_energy_rmse_mev_atom", "valid_force_rmse_mev_A")


def _parse(value: Any, column: str, row: int) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"training log: column {column!r}, row {row}: {value!r} is not a number") from err


def read_training_log(csv_path_or_rows: PathArg | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> dict:
    """Read a training log into ``{column: float array}``.

    Args:
        csv_path_or_rows: a CSV file with a header row (columns such as :data:`LOG_COLUMNS`), a sequence
            of row dicts (``csv.DictReader`` style), or a mapping ``{column: sequence of values}``.
            Empty cells, ``None`` and missing keys become NaN.

    Returns:
        ``{column: (n_rows,) float64 array}`` for every column seen, in order of first appearance.

    Raises:
        ValueError: a value that is not a number, or columns of different lengths in a mapping.
    """
    if isinstance(csv_path_or_rows, (str, PathLike)):
        with open(csv_path_or_rows, newline="") as fh:
            reader = csv.DictReader(fh)
            rows: Sequence[Mapping[str, Any]] = list(reader)
            header = [c for c in (reader.fieldnames or []) if c is not None]
    elif isinstance(csv_path_or_rows, Mapping):
        columns = {str(k): list(np.ravel(np.asarray(v, dtype=object))) for k, v in csv_path_or_rows.items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"training log columns have mismatched lengths: {lengths}")
        return {k: np.array([_parse(x, k, i) for i, x in enumerate(v)], dtype=np.float64) for k, v in columns.items()}
    else:
        rows = list(csv_path_or_rows)
        header = []
    for r in rows:
        if not isinstance(r, Mapping):
            raise ValueError(f"training log rows must be mappings of column to value, got {type(r).__name__}")
        header.extend(str(k) for k in r if k is not None and str(k) not in header)
    return {c: np.array([_parse(r.get(c), c, i) for i, r in enumerate(rows)], dtype=np.float64) for c in header}


def _has_data(log: Mapping[str, np.ndarray], key: str) -> bool:
    return key in log and bool(np.isfinite(log[key]).any())


def _epochs(log: Mapping[str, np.ndarray]) -> np.ndarray:
    n = len(next(iter(log.values()))) if log else 0
    if "epoch" in log and np.isfinite(log["epoch"]).all():
        return log["epoch"]
    return np.arange(1, n + 1, dtype=np.float64)


def best_epoch(log: Mapping[str, np.ndarray] | PathArg | Sequence[Mapping[str, Any]]) -> tuple[float, str] | None:
    """The epoch with the lowest validation value, and the column that decided it.

    The column is the first with data among ``valid_loss``, ``valid_energy_rmse_mev_atom``,
    ``valid_force_rmse_mev_A``; ties go to the earliest epoch. Epochs come from the ``epoch`` column, or
    count from 1 when it is missing or incomplete.

    Args:
        log: a log as returned by :func:`read_training_log`, or anything it reads.

    Returns:
        ``(epoch, column)``, or ``None`` when no validation column has a value.
    """
    if not (isinstance(log, Mapping) and all(isinstance(v, np.ndarray) for v in log.values())):
        log = read_training_log(log)
    x = _epochs(log)
    for key in _BEST_KEYS:
        if _has_data(log, key):
            values = np.where(np.isfinite(log[key]), log[key], np.inf)
            return float(x[int(np.argmin(values))]), key
    return None


def learning_curve(
    csv_path_or_rows: PathArg | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    png_path: PathArg,
    title: str | None = None,
    *,
    figsize: tuple[float, float] = (10.0, 4.0),
    dpi: float = 100,
) -> Path:
    """Plot a training log: losses on one panel, validation RMSEs on another, log-scale y.

    The loss panel shows ``train_loss`` and ``valid_loss``; the RMSE panel ``valid_energy_rmse_mev_atom``
    (meV/atom) and ``valid_force_rmse_mev_A`` (meV/Å); ``lr`` (when logged) goes in a strip of its own
    under them, log scale, sharing the epoch axis. Only the columns with values are drawn and a panel
    with none is left out. The best validation epoch
    (:func:`best_epoch`) is marked by a dotted vertical line on every panel.

    Args:
        csv_path_or_rows: the log, as accepted by :func:`read_training_log`.
        png_path: output PNG.
        title: figure title.
        figsize: size in inches; the PNG is ``figsize * dpi`` pixels.
        dpi: pixels per inch.

    Returns:
        The path written.

    Raises:
        ValueError: no rows, or no loss or validation RMSE value to plot (or a malformed log).
    """
    log = read_training_log(csv_path_or_rows)
    if not log or len(next(iter(log.values()))) == 0:
        raise ValueError("the training log has no rows")
    groups = [[(k, lab) for k, lab in cols if _has_data(log, k)] for cols in (_LOSS_COLUMNS, _RMSE_COLUMNS)]
    panels = [(i, g) for i, g in enumerate(groups) if g]
    if not panels:
        found = ", ".join(log) or "none"
        raise ValueError(
            "nothing to plot: the training log has no value in train_loss, valid_loss, "
            f"valid_energy_rmse_mev_atom or valid_force_rmse_mev_A (columns found: {found})"
        )
    from matplotlib.ticker import LogLocator, NullFormatter

    x = _epochs(log)
    best = best_epoch(log)
    fig = _figure(figsize, dpi)
    lr_ok = np.isfinite(log["lr"]) & (log["lr"] > 0) if "lr" in log else np.zeros(len(x), dtype=bool)
    names = [f"p{kind}" for kind, _ in panels]
    if lr_ok.any():  # the learning rate gets its own strip under the first panel (no twin axis to collide)
        grid = fig.subplot_mosaic([names, ["lr", *names[1:]]], height_ratios=[3.0, 1.0])
        grid[names[0]].sharex(grid["lr"])
    else:
        grid = fig.subplot_mosaic([names])
    for name, (kind, cols) in zip(names, panels):
        ax = grid[name]
        for key, lab in cols:
            y = log[key]
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], marker="o" if ok.sum() < 30 else None, ms=3, lw=1.5, label=lab)
        values = np.concatenate([log[k][np.isfinite(log[k])] for k, _ in cols])
        if (values > 0).any():
            ax.set_yscale("log", nonpositive="mask")
        ax.set_ylabel("loss" if kind == 0 else "validation RMSE")
        ax.grid(alpha=0.3, which="both")
        if best is not None:
            ax.axvline(best[0], color="0.3", ls=":", lw=1.2, label=f"best epoch {best[0]:g}")
        ax.legend(fontsize=8)
        if lr_ok.any() and name == names[0]:
            ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel("epoch")
    if lr_ok.any():
        ax = grid["lr"]
        lr = log["lr"][lr_ok]
        ax.plot(x[lr_ok], lr, color="0.4", lw=1.2, drawstyle="steps-post", label=f"lr {lr[0]:.3g} → {lr[-1]:.3g}")
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels would overlap
        ax.yaxis.set_major_locator(LogLocator(numticks=3))
        ax.set_ylabel("learning rate")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3, which="major")
        if best is not None:
            ax.axvline(best[0], color="0.3", ls=":", lw=1.2)
    if title:
        fig.suptitle(title)
    return _save(fig, png_path)
