"""PNG figures of training and evaluation: learning curves, parity plots, energy profiles, MD energies.

Each function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas (no pyplot, no
backend switch, no global state changed for the caller), writes a PNG of exactly
``figsize * dpi`` pixels (parent folders created) and returns the path written. Matplotlib is imported
only when a function is called. Inputs use ASE units (eV, eV/Å); plots show meV where differences are
small.

Bad input raises :class:`ValueError` with what is wrong: arrays of mismatched lengths, empty or
non-finite data, a training log with nothing to plot. The learning curve lives in
:mod:`mlip.training_plots`, the shared helpers in :mod:`mlip.plot_base`; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plot_base import PathArg, _figure, _rmse_mae, _same_length, _save, _vector
from .training_plots import LOG_COLUMNS, best_epoch, learning_curve, read_training_log

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
