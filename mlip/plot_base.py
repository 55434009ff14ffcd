"""Shared pieces of the PNG figures (:mod:`mlip.plots`, :mod:`mlip.training_plots`).

Each figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas (no pyplot, no backend
switch, no global state changed for the caller), saved as a PNG of exactly ``figsize * dpi`` pixels.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PathArg"]

PathArg = str | PathLike[str]


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
