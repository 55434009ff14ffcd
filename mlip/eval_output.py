"""Files of an evaluation: one CSV row per structure, and the structures with predictions (extxyz).

Units: energies eV, forces eV/Å, stress eV/Å³ (Voigt order xx yy zz yz xz xy); per-structure errors in
meV/atom and meV/Å.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from .evaluate import EvalResult

__all__ = ["write_predictions_csv", "write_predictions_extxyz"]


def _fmt(value: float, spec: str) -> str:
    return "" if not np.isfinite(value) else format(float(value), spec)


def write_predictions_csv(
    path: str | os.PathLike[str], structures: Sequence[Atoms], result: EvalResult, group_key: str | None = None
) -> Path:
    """One row per structure: index, formula, n_atoms, ref/pred energy (eV), energy error (meV/atom),
    force RMSE of the structure (meV/Å); reference columns are empty where a structure has no label.
    A ``config_type`` column (``result.group_key``, or ``group_key``) is added when the structures are grouped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = result.predictions
    ptr = p.offsets
    group = group_key or result.group_key
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        header = ["index", "formula", "n_atoms", "ref_energy_eV", "pred_energy_eV", "energy_error_meV_atom"]
        w.writerow([*header, "force_rmse_meV_A", *([group] if group else [])])
        for s, atoms in enumerate(structures):
            n = int(p.n_atoms[s])
            err = (p.energy[s] - result.ref_energy[s]) / n * 1000.0
            frmse = np.nan
            if result.ref_forces is not None and (len(result.has_forces) == 0 or result.has_forces[s]):
                d = p.forces[ptr[s] : ptr[s + 1]] - result.ref_forces[ptr[s] : ptr[s + 1]]
                frmse = float(np.sqrt(np.mean(d * d)) * 1000.0)
            row = [
                s,
                atoms.get_chemical_formula(),
                n,
                _fmt(result.ref_energy[s], ".10g"),
                f"{p.energy[s]:.10g}",
                _fmt(err, ".6g"),
                _fmt(frmse, ".6g"),
            ]
            if group:
                row.append(atoms.info.get(group, ""))
            w.writerow(row)
    return path


def _with_predictions(atoms: Atoms, s: int, result: EvalResult, pred_prefix: str) -> Atoms:
    """A copy of ``atoms`` keeping every info/arrays key and stored reference result, plus predictions."""
    from ase.calculators.singlepoint import SinglePointCalculator

    p = result.predictions
    ptr = p.offsets
    a = atoms.copy()  # info and arrays are copied; the calculator is not
    results = dict(getattr(atoms.calc, "results", {}) or {}) if atoms.calc is not None else {}
    results = {k: v for k, v in results.items() if k not in a.info and k not in a.arrays}  # info/arrays win
    if results:  # reference labels that ASE moved into a calculator keep their names in the output
        a.calc = SinglePointCalculator(a, **results)
    a.info[f"{pred_prefix}energy"] = float(p.energy[s])
    a.arrays[f"{pred_prefix}forces"] = p.forces[ptr[s] : ptr[s + 1]].copy()
    if p.stress is not None:
        st = p.stress[s]
        a.info[f"{pred_prefix}stress"] = np.array([st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]])
    return a


def write_predictions_extxyz(
    path: str | os.PathLike[str], structures: Sequence[Atoms], result: EvalResult, pred_prefix: str = "mlip_"
) -> Path:
    """The input structures with every info/arrays key and reference label unchanged, and the predictions
    ``info[<pred_prefix>energy]`` (eV), ``arrays[<pred_prefix>forces]`` (eV/Å) and, when computed,
    ``info[<pred_prefix>stress]`` (Voigt, eV/Å³)."""
    import ase.io

    if not pred_prefix or not pred_prefix.replace("_", "").isalnum():
        raise ValueError(f"the prediction prefix must be letters, digits and underscores, got {pred_prefix!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [_with_predictions(a, s, result, pred_prefix) for s, a in enumerate(structures)]
    ase.io.write(path, out, format="extxyz")
    return path
