"""PNG figures of training and evaluation: learning curves, parity plots, energy profiles, MD energies.

Each function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas (no pyplot, no
backend switch, no global state changed for the caller), writes a PNG of exactly
``figsize * dpi`` pixels (parent folders created) and returns the path written. Matplotlib is imported
only when a function is called. Inputs use ASE units (eV, eV/Å); plots show meV where differences are
small.

Bad input raises :class:`ValueError` with what is wrong: arrays of mismatched lengths, empty or
non-finite data, a training log with nothing to plot.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LOG_COLUMNS",
    "bar_chart",
    "best_epoch",
    "energy_profile",
    "learning_curve",
    "md_energy_plot",
    "parity_plot",
    "read_training_log",
]

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

PathArg = str | PathLike[str]


# ------------------------------------------------------------------------------------------- helpers


def _figure(figsize: tuple[float, float], dpi: float) -> Any:
    """A Figure with its own Agg canvas; nothing global is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, png_path: PathArg) -> Path:
    """Write ``fig`` as a PNG of exactly figsize * dpi pixels (whatever ``savefig.bbox`` says)."""
    from matplotlib.transforms import Bbox

    path = Path(png_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = fig.get_size_inches()
    fig.savefig(path, format="png", dpi=fig.dpi, bbox_inches=Bbox.from_bounds(0, 0, w, h))
    return path


def _vector(value: Any, name: str, allow_empty: bool = False) -> np.ndarray:
    """A finite 1-D float array (any input shape is flattened)."""
    try:
        a = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is not an array of numbers: {err}") from err
    if a.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has {int(np.count_nonzero(~np.isfinite(a)))} non-finite value(s)")
    return a


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: a.size for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("mismatched lengths: " + ", ".join(f"{n} has {k}" for n, k in lengths.items()))


def _rmse_mae(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    d = pred - ref
    return float(np.sqrt(np.mean(d * d))), float(np.mean(np.abs(d)))


def _parity_panel(ax: Any, ref: np.ndarray, pred: np.ndarray, what: str, unit: str, text: str) -> None:
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    lo = float(min(ref.min(), pred.min()))
    hi = float(max(ref.max(), pred.max()))
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--", zorder=1, label="y = x")
    size = 12 if ref.size < 1000 else 4
    ax.scatter(ref, pred, s=size, alpha=0.6, edgecolors="none", zorder=2, rasterized=ref.size > 5000)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
    for axis in (ax.xaxis, ax.yaxis):  # few, short tick labels: they never run into each other
        axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_powerlimits((-3, 4))
        axis.set_major_formatter(fmt)
    ax.set_xlabel(f"reference {what} ({unit})")
    ax.set_ylabel(f"predicted {what} ({unit})")
    ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", ha="left", fontsize=9, family="monospace")
    ax.grid(alpha=0.3)


# ------------------------------------------------------------------------------------- training log


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


# ------------------------------------------------------------------------------------------ parity


def parity_plot(
    ref_energy_per_atom: Any,
    pred_energy_per_atom: Any,
    ref_forces: Any,
    pred_forces: Any,
    png_path: PathArg,
    title: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    *,
    figsize: tuple[float, float] = (10.0, 5.0),
    dpi: float = 100,
) -> Path:
    """Predicted against reference values: energy per atom and force components (eV/Å).

    Energies are drawn in meV/atom relative to the mean reference energy per atom Ē (printed in the
    panel), so the tick labels stay short whatever the absolute energies are.

    Each panel has the y = x line and its RMSE and MAE (meV/atom, meV/Å) in the corner, computed from
    the arrays, or taken from ``metrics`` (keys ``energy_rmse_mev_atom``, ``energy_mae_mev_atom``,
    ``force_rmse_mev_A``, ``force_mae_mev_A`` of :func:`mlip.metrics.compute_metrics`) where it has
    them. With both force arguments ``None`` only the energy panel is drawn.

    Args:
        ref_energy_per_atom, pred_energy_per_atom: (S,) energies per atom (eV/atom).
        ref_forces, pred_forces: (N, 3) forces (eV/Å), or any shape with the same number of components;
            both ``None`` for no force panel.
        png_path: output PNG.
        title: figure title.
        metrics: values to print instead of the ones computed here.
        figsize: size in inches; the PNG is ``figsize * dpi`` pixels.
        dpi: pixels per inch.

    Returns:
        The path written.

    Raises:
        ValueError: mismatched lengths, empty or non-finite input, only one of the force arrays.
    """
    re = _vector(ref_energy_per_atom, "ref_energy_per_atom")
    pe = _vector(pred_energy_per_atom, "pred_energy_per_atom")
    _same_length(ref_energy_per_atom=re, pred_energy_per_atom=pe)
    if (ref_forces is None) != (pred_forces is None):
        raise ValueError("give both ref_forces and pred_forces, or neither")
    forces = None
    if ref_forces is not None:
        rf = _vector(ref_forces, "ref_forces")
        pf = _vector(pred_forces, "pred_forces")
        _same_length(ref_forces=rf, pred_forces=pf)
        forces = (rf, pf)
    m = dict(metrics or {})

    def stats(rmse_key: str, mae_key: str, pred: np.ndarray, ref: np.ndarray, unit: str) -> str:
        rmse, mae = _rmse_mae(pred * 1000.0, ref * 1000.0)
        rmse = float(m[rmse_key]) if m.get(rmse_key) is not None else rmse
        mae = float(m[mae_key]) if m.get(mae_key) is not None else mae
        return f"RMSE {rmse:.3g} {unit}\nMAE  {mae:.3g} {unit}\nn = {ref.size}"

    fig = _figure(figsize, dpi)
    axes = fig.subplots(1, 2 if forces else 1, squeeze=False)[0]
    # energies relative to the mean reference (meV/atom): absolute values such as -1042.1234 eV/atom would
    # need long tick labels that overlap, or an offset label that collides with the title
    e_ref = float(np.mean(re))
    _parity_panel(
        axes[0],
        (re - e_ref) * 1000.0,
        (pe - e_ref) * 1000.0,
        "E − Ē",
        "meV/atom",
        stats("energy_rmse_mev_atom", "energy_mae_mev_atom", pe, re, "meV/atom") + f"\nĒ = {e_ref:.6g} eV/atom",
    )
    axes[0].set_title("energy per atom")
    if forces:
        rf, pf = forces
        _parity_panel(axes[1], rf, pf, "force", "eV/Å", stats("force_rmse_mev_A", "force_mae_mev_A", pf, rf, "meV/Å"))
        axes[1].set_title("force components")
    if title:
        fig.suptitle(title)
    return _save(fig, png_path)


# ------------------------------------------------------------------------------------------ profiles


def energy_profile(
    x: Any,
    ref_energy: Any,
    pred_energy: Any,
    png_path: PathArg,
    xlabel: str,
    title: str | None = None,
    *,
    figsize: tuple[float, float] = (6.0, 4.5),
    dpi: float = 100,
) -> Path:
    """Reference and predicted energy along a coordinate, each in meV relative to its own minimum.

    The largest absolute difference of the two shifted curves (meV) is printed in the legend.

    Args:
        x: (K,) coordinate values (any unit; name it in ``xlabel``), drawn in the order given.
        ref_energy, pred_energy: (K,) total energies (eV).
        png_path: output PNG.
        xlabel: label of the coordinate axis, e.g. ``"strain (%)"`` or ``"d (Å)"``.
        title: axes title.
        figsize: size in inches; the PNG is ``figsize * dpi`` pixels.
        dpi: pixels per inch.

    Returns:
        The path written.

    Raises:
        ValueError: mismatched lengths, empty or non-finite input.
    """
    xs = _vector(x, "x")
    ref = _vector(ref_energy, "ref_energy")
    pred = _vector(pred_energy, "pred_energy")
    _same_length(x=xs, ref_energy=ref, pred_energy=pred)
    ref_mev = (ref - ref.min()) * 1000.0
    pred_mev = (pred - pred.min()) * 1000.0
    fig = _figure(figsize, dpi)
    ax = fig.subplots()
    ax.plot(xs, ref_mev, "o-", color="k", ms=4, lw=1.5, label="reference")
    ax.plot(xs, pred_mev, "s--", color="C1", ms=4, lw=1.5, label="predicted")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("E - E_min (meV)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best", title=f"max |Δ| = {np.abs(pred_mev - ref_mev).max():.3g} meV", title_fontsize=9)
    if title:
        ax.set_title(title)
    return _save(fig, png_path)


def md_energy_plot(
    times_ps: Any,
    total: Any,
    potential: Any,
    kinetic: Any,
    png_path: PathArg,
    title: str | None = None,
    *,
    figsize: tuple[float, float] = (7.0, 6.0),
    dpi: float = 100,
) -> Path:
    """Energies of an MD run: exchange between potential and kinetic energy, and total-energy drift.

    Top panel: the three energies minus their value at the first time (eV). Bottom panel: the total
    energy minus its first value (meV), with the slope of a least-squares line (meV/ps) and the
    standard deviation (meV) in the panel.

    Args:
        times_ps: (T,) times (ps).
        total, potential, kinetic: (T,) energies (eV).
        png_path: output PNG.
        title: figure title.
        figsize: size in inches; the PNG is ``figsize * dpi`` pixels.
        dpi: pixels per inch.

    Returns:
        The path written.

    Raises:
        ValueError: mismatched lengths, empty or non-finite input.
    """
    t = _vector(times_ps, "times_ps")
    etot = _vector(total, "total")
    epot = _vector(potential, "potential")
    ekin = _vector(kinetic, "kinetic")
    _same_length(times_ps=t, total=etot, potential=epot, kinetic=ekin)
    fig = _figure(figsize, dpi)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(t, epot - epot[0], color="C0", lw=1.2, label="potential")
    top.plot(t, ekin - ekin[0], color="C3", lw=1.2, label="kinetic")
    top.plot(t, etot - etot[0], color="k", lw=1.5, label="total")
    top.set_ylabel("E - E(t₀) (eV)")
    top.legend(fontsize=8, loc="best")
    top.grid(alpha=0.3)
    drift = (etot - etot[0]) * 1000.0
    bottom.plot(t, drift, color="k", lw=1.2)
    text = f"std {drift.std():.3g} meV"
    if t.size > 1 and np.ptp(t) > 0:
        slope = float(np.polyfit(t, drift, 1)[0])
        text = f"drift {slope:.3g} meV/ps\n" + text
    bottom.text(0.02, 0.95, text, transform=bottom.transAxes, va="top", fontsize=9)
    bottom.set_xlabel("time (ps)")
    bottom.set_ylabel("total E - E(t₀) (meV)")
    bottom.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, png_path)


def bar_chart(
    categories: Sequence[str],
    values: Sequence[float] | Mapping[str, Sequence[float]],
    png_path: PathArg,
    ylabel: str = "",
    title: str | None = None,
    *,
    logy: bool = False,
    figsize: tuple[float, float] = (7.0, 4.5),
    dpi: float = 100,
) -> Path:
    """Bars per category, or grouped bars of several named series (e.g. RMSEs of models per data set).

    Args:
        categories: (C,) names along the x axis.
        values: (C,) values, or ``{series name: (C,) values}`` for grouped bars.
        png_path: output PNG.
        ylabel: label of the value axis (give the unit, e.g. ``"force RMSE (meV/Å)"``).
        title: axes title.
        logy: logarithmic value axis (all values must then be positive).
        figsize: size in inches; the PNG is ``figsize * dpi`` pixels.
        dpi: pixels per inch.

    Returns:
        The path written.

    Raises:
        ValueError: no categories, a series of another length, non-finite values, or non-positive
        values with ``logy``.
    """
    cats = [str(c) for c in categories]
    if not cats:
        raise ValueError("no categories to plot")
    series = dict(values) if isinstance(values, Mapping) else {"": values}
    if not series:
        raise ValueError("no series to plot")
    arrays = {}
    for name, v in series.items():
        a = _vector(v, f"values[{name!r}]" if name else "values")
        if a.size != len(cats):
            raise ValueError(f"mismatched lengths: {len(cats)} categories but {a.size} values in series {name!r}")
        if logy and (a <= 0).any():
            raise ValueError(f"logy needs positive values; series {name!r} has {a.min():g}")
        arrays[str(name)] = a
    fig = _figure(figsize, dpi)
    ax = fig.subplots()
    pos = np.arange(len(cats), dtype=np.float64)
    width = 0.8 / len(arrays)
    for k, (name, a) in enumerate(arrays.items()):
        bars = ax.bar(pos + (k - (len(arrays) - 1) / 2) * width, a, width, label=name or None)
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=1)
    ax.set_xticks(pos, cats)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, axis="y")
    if len(arrays) > 1 or next(iter(arrays)):
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, png_path)
