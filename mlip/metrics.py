"""Error metrics of predicted energies, forces and stresses against reference labels.

Inputs are in ASE units (energies eV, forces eV/Å, stress eV/Å³); the metrics come out in meV,
meV/atom, meV/Å and meV/Å³ (1 meV/Å³ = 0.1602 GPa). Metric names match the columns of the training
log (``valid_energy_rmse_mev_atom`` is the ``energy_rmse_mev_atom`` of the validation set).

Definitions, for S structures with ``n_s`` atoms, N = Σ n_s atoms, energy errors
``ΔE_s = E_pred - E_ref``:

* ``energy_rmse_mev`` = 1000 · sqrt(mean_s ΔE_s²), ``energy_mae_mev`` = 1000 · mean_s |ΔE_s|;
* ``energy_rmse_mev_atom`` = 1000 · sqrt(mean_s (ΔE_s / n_s)²), ``energy_mae_mev_atom`` likewise;
* ``force_rmse_mev_A`` / ``force_mae_mev_A`` over all 3N force components;
* ``force_norm_rmse_mev_A`` = 1000 · sqrt(mean_i (|F_pred,i| - |F_ref,i|)²), the error of force
  magnitudes (blind to direction errors, so it can be zero while the forces differ);
* ``stress_rmse_mev_A3`` / ``stress_mae_mev_A3`` over the 6 independent (Voigt) components of each
  stress given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["METRIC_UNITS", "ErrorMetrics", "compute_metrics", "format_table"]

#: Unit of each metric (as printed in table headers and plot labels).
METRIC_UNITS = {
    "n_structures": "",
    "n_atoms": "",
    "energy_rmse_mev": "meV",
    "energy_mae_mev": "meV",
    "energy_rmse_mev_atom": "meV/atom",
    "energy_mae_mev_atom": "meV/atom",
    "force_rmse_mev_A": "meV/Å",
    "force_mae_mev_A": "meV/Å",
    "force_norm_rmse_mev_A": "meV/Å",
    "stress_rmse_mev_A3": "meV/Å³",
    "stress_mae_mev_A3": "meV/Å³",
}


@dataclass(frozen=True)
class ErrorMetrics:
    """Errors of one set of predictions; see the module docstring for the definitions.

    Attributes:
        n_structures: number of structures S.
        n_atoms: total number of atoms N.
        energy_rmse_mev, energy_mae_mev: per-structure total energy errors (meV).
        energy_rmse_mev_atom, energy_mae_mev_atom: per-atom energy errors (meV/atom).
        force_rmse_mev_A, force_mae_mev_A: force component errors (meV/Å), ``None`` without forces.
        force_norm_rmse_mev_A: force magnitude error (meV/Å), ``None`` without forces.
        stress_rmse_mev_A3, stress_mae_mev_A3: stress component errors (meV/Å³), ``None`` without stress.
    """

    n_structures: int
    n_atoms: int
    energy_rmse_mev: float
    energy_mae_mev: float
    energy_rmse_mev_atom: float
    energy_mae_mev_atom: float
    force_rmse_mev_A: float | None = None
    force_mae_mev_A: float | None = None
    force_norm_rmse_mev_A: float | None = None
    stress_rmse_mev_A3: float | None = None
    stress_mae_mev_A3: float | None = None

    def as_dict(self, drop_none: bool = False) -> dict[str, Any]:
        """The metrics by name (every field; ``drop_none`` leaves out the absent ones)."""
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None} if drop_none else d

    @classmethod
    def from_arrays(
        cls,
        pred_energy: Any,
        ref_energy: Any,
        n_atoms: Any,
        pred_forces: Any = None,
        ref_forces: Any = None,
        pred_stress: Any = None,
        ref_stress: Any = None,
    ) -> ErrorMetrics:
        """The metrics of the given arrays; arguments as for :func:`compute_metrics`."""
        pe = _finite_array(pred_energy, "pred_energy")
        re = _finite_array(ref_energy, "ref_energy")
        if pe.ndim != 1 or pe.shape != re.shape:
            raise ValueError(
                f"pred_energy and ref_energy must be 1-D arrays of one energy per structure with the same "
                f"shape; got {pe.shape} and {re.shape}"
            )
        if pe.size == 0:
            raise ValueError("no structures: pred_energy and ref_energy are empty")
        counts = np.asarray(n_atoms)
        if counts.shape != pe.shape:
            raise ValueError(f"n_atoms must have one count per structure, shape {pe.shape}; got {counts.shape}")
        if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
            raise ValueError(f"n_atoms must hold integers, got dtype {counts.dtype}")
        if not np.isfinite(counts).all() or (counts != np.round(counts)).any() or (counts < 1).any():
            raise ValueError(f"n_atoms must be positive integers, got {counts.tolist()}")
        counts = counts.astype(np.int64)
        total = int(counts.sum())

        de = (pe - re) * 1000.0  # meV
        de_atom = de / counts
        fields: dict[str, Any] = {
            "n_structures": int(pe.size),
            "n_atoms": total,
            "energy_rmse_mev": _rmse(de),
            "energy_mae_mev": _mae(de),
            "energy_rmse_mev_atom": _rmse(de_atom),
            "energy_mae_mev_atom": _mae(de_atom),
        }

        if (pred_forces is None) != (ref_forces is None):
            raise ValueError("give both pred_forces and ref_forces, or neither")
        if pred_forces is not None:
            pf = _finite_array(pred_forces, "pred_forces")
            rf = _finite_array(ref_forces, "ref_forces")
            if pf.shape != rf.shape:
                raise ValueError(f"pred_forces and ref_forces have different shapes {pf.shape} and {rf.shape}")
            if pf.shape != (total, 3):
                raise ValueError(
                    f"forces must be ({total}, 3): one row per atom of the {pe.size} structures "
                    f"(sum of n_atoms = {total}), concatenated; got {pf.shape}"
                )
            df = (pf - rf) * 1000.0
            dnorm = (np.linalg.norm(pf, axis=1) - np.linalg.norm(rf, axis=1)) * 1000.0
            fields.update(force_rmse_mev_A=_rmse(df), force_mae_mev_A=_mae(df), force_norm_rmse_mev_A=_rmse(dnorm))

        if (pred_stress is None) != (ref_stress is None):
            raise ValueError("give both pred_stress and ref_stress, or neither")
        if pred_stress is not None:
            ps = _voigt(_finite_array(pred_stress, "pred_stress"), "pred_stress")
            rs = _voigt(_finite_array(ref_stress, "ref_stress"), "ref_stress")
            if ps.shape != rs.shape:
                raise ValueError(f"pred_stress and ref_stress hold {ps.shape[0]} and {rs.shape[0]} stresses")
            if ps.shape[0] == 0:
                raise ValueError("pred_stress and ref_stress are empty")
            ds = (ps - rs) * 1000.0
            fields.update(stress_rmse_mev_A3=_rmse(ds), stress_mae_mev_A3=_mae(ds))
        return cls(**fields)


def _finite_array(value: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} is not an array of numbers: {err}") from err
    if not np.isfinite(a).all():
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf)")
    return a


def _voigt(s: np.ndarray, name: str) -> np.ndarray:
    """(K, 6) Voigt components (xx, yy, zz, yz, xz, xy) from (K, 6), (K, 3, 3), (6,) or (3, 3)."""
    if s.shape in ((6,), (3, 3)):
        s = s[None]
    if s.ndim == 2 and s.shape[1] == 6:
        return s
    if s.ndim == 3 and s.shape[1:] == (3, 3):
        return np.stack(
            [
                s[:, 0, 0],
                s[:, 1, 1],
                s[:, 2, 2],
                0.5 * (s[:, 1, 2] + s[:, 2, 1]),
                0.5 * (s[:, 0, 2] + s[:, 2, 0]),
                0.5 * (s[:, 0, 1] + s[:, 1, 0]),
            ],
            axis=1,
        )
    raise ValueError(f"{name} must have shape (K, 6) (Voigt) or (K, 3, 3); got {s.shape}")


def _rmse(d: np.ndarray) -> float:
    """Root mean square, scaled by the largest magnitude so that tiny errors do not underflow to 0."""
    scale = float(np.max(np.abs(d)))
    if scale == 0.0 or not math.isfinite(scale):
        return scale
    return scale * float(np.sqrt(np.mean(np.square(d / scale))))


def _mae(d: np.ndarray) -> float:
    """Mean absolute value, scaled like :func:`_rmse` (no overflow of the sum)."""
    scale = float(np.max(np.abs(d)))
    if scale == 0.0 or not math.isfinite(scale):
        return scale
    return scale * float(np.mean(np.abs(d) / scale))


def compute_metrics(
    pred_energy: Any,
    ref_energy: Any,
    n_atoms: Any,
    pred_forces: Any = None,
    ref_forces: Any = None,
    pred_stress: Any = None,
    ref_stress: Any = None,
) -> dict[str, Any]:
    """Energy, force and stress errors of predictions against references.

    Args:
        pred_energy, ref_energy: (S,) total energies (eV), one per structure.
        n_atoms: (S,) positive atom counts.
        pred_forces, ref_forces: (N, 3) forces (eV/Å) of all atoms, structures concatenated in order
            (N = sum of ``n_atoms``); both or neither.
        pred_stress, ref_stress: (K, 6) Voigt or (K, 3, 3) stresses (eV/Å³) of the K structures that
            have one (K may differ from S); both or neither.

    Returns:
        ``{name: value}`` with every field of :class:`ErrorMetrics` (see the module docstring for the
        definitions): ``n_structures``, ``n_atoms``, energy errors in meV and meV/atom, force errors in
        meV/Å and stress errors in meV/Å³; the force and stress entries are ``None`` when not given.

    Raises:
        ValueError: mismatched shapes, no structures, NaN or infinite values, non-positive atom counts,
        or only one of a prediction / reference pair.

    Example:
        >>> m = compute_metrics([1.0, 2.0], [1.0, 2.004], [2, 4])
        >>> round(m["energy_mae_mev"], 6), round(m["energy_mae_mev_atom"], 6)
        (2.0, 0.5)
    """
    return ErrorMetrics.from_arrays(
        pred_energy, ref_energy, n_atoms, pred_forces, ref_forces, pred_stress, ref_stress
    ).as_dict()


def _format_value(value: Any, precision: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if abs(v) >= 1e6 or (v != 0 and abs(v) < 0.5 * 10.0 ** (-precision)):  # would not show as a decimal
            return f"{v:.{precision}e}"
        return f"{v:.{precision}f}"
    return str(value)


def format_table(
    rows: Mapping[str, Mapping[str, Any]], precision: int = 3, transpose: bool = False, units: bool = False
) -> str:
    """A small aligned text table, e.g. of :func:`compute_metrics` results per data set.

    Args:
        rows: ``{row name: {column name: value}}``, e.g. ``{"train": {...}, "valid": {...}}``. Columns
            are the union of the keys, in order of first appearance; a missing or ``None`` value prints
            as ``-``. Floats print with ``precision`` decimals (scientific notation from 10⁶ up, or when so
            small it would print as zero), integers as they are, anything else with ``str``.
        precision: decimals of floats.
        transpose: one row per column name instead (metrics down, data sets across), better for many
            metrics.
        units: append the unit from :data:`METRIC_UNITS` to known metric names, ``[meV/atom]`` (the names
            already end in their unit, so this is off by default).

    Returns:
        The table, lines joined by newlines, no trailing newline; the first column is left-aligned,
        the others right-aligned. An empty ``rows`` gives ``""``.
    """
    if not rows:
        return ""
    columns: list[str] = []
    for r in rows.values():
        for k in r:
            if k not in columns:
                columns.append(k)

    def label(name: str) -> str:
        unit = METRIC_UNITS.get(name, "") if units else ""
        return f"{name} [{unit}]" if unit else name

    header = ["", *[label(c) for c in columns]]
    body = [[str(name), *[_format_value(r.get(c), precision) for c in columns]] for name, r in rows.items()]
    if transpose:
        header, body = (
            ["", *[str(name) for name in rows]],
            [[label(c), *[_format_value(r.get(c), precision) for r in rows.values()]] for c in columns],
        )
    widths = [max(len(line[j]) for line in [header, *body]) for j in range(len(header))]

    def fmt(line: list[str]) -> str:
        cells = [line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *[fmt(line) for line in body]])
