"""Errors of a trained potential against reference labels, with predictions for unlabelled structures.

Units follow ASE: energies in eV, forces in eV/Å, stress in eV/Å³; errors in meV, meV/atom, meV/Å and
meV/Å³ (:mod:`mlip.metrics`).

* :func:`evaluate_structures` predicts every structure and compares with the labels it finds: energy
  and force metrics are computed over the structures that have that label, with a warning that counts
  the others ("forces missing in 3 of 10 structures; force metrics over the other 7"); structures
  without any label get predictions only, and a set with no labels at all gives predictions and the
  metrics entry ``reference labels: none (predictions only)``. A key the caller named explicitly (for
  example ``forces_key="REF_forces"``) that no structure has is an error naming the keys present.
  Errors per ``config_type`` (or another info key) are in :attr:`EvalResult.groups`.
* :func:`evaluate_file` does it for a file and writes ``<prefix>_predictions.csv``,
  ``<prefix>_predictions.extxyz`` (every input info/arrays key kept, predictions added as
  ``mlip_energy`` / ``mlip_forces`` / ``mlip_stress``), ``<prefix>_metrics.json`` and
  ``<prefix>_parity.png`` (:mod:`mlip.eval_output`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from .metrics import compute_metrics
from .model import Potential
from .predict import Predictions, load_potential, predict

__all__ = ["NO_LABELS", "EvalResult", "evaluate_file", "evaluate_structures", "group_metrics", "label_keys_present"]

#: Metrics entry of a set without reference labels.
NO_LABELS = "none (predictions only)"
#: Energy entries of :func:`mlip.metrics.compute_metrics` (``None`` when no structure has an energy).
_ENERGY_KEYS = ("energy_rmse_mev", "energy_mae_mev", "energy_rmse_mev_atom", "energy_mae_mev_atom")


@dataclass
class EvalResult:
    """Predictions of a potential and their errors against the labels found.

    Attributes:
        metrics: :func:`mlip.metrics.compute_metrics` output (meV, meV/atom, meV/Å, meV/Å³) over the
            labelled structures, plus ``ref_force_rms_mev_A`` (RMS of the reference force components,
            meV/Å: the scale a force error should be compared with), ``ref_energy_std_mev_atom`` (spread
            of the reference energies per atom, meV/atom), ``n_with_energy`` and ``n_with_forces``; for a
            set without labels ``{"n_structures", "n_atoms", "reference labels": NO_LABELS}``.
        predictions: the model outputs for every structure.
        ref_energy: (S,) reference energies (eV), NaN where a structure has none.
        ref_forces: (N, 3) reference forces (eV/Å), NaN rows for structures without forces; ``None``
            when no structure has forces.
        ref_stress: (S, 3, 3) reference stress (eV/Å³) or ``None``.
        has_energy, has_forces: (S,) which structures have that label.
        groups: ``{group: metrics}`` per value of :attr:`group_key` (empty when no structure has it).
        group_key: the info key that grouped the structures (``config_type`` by default).
        warnings: what was left out, in words (also emitted as :class:`UserWarning`).
        files: written files.
    """

    metrics: dict[str, Any]
    predictions: Predictions
    ref_energy: np.ndarray
    ref_forces: np.ndarray | None
    ref_stress: np.ndarray | None = None
    has_energy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    has_forces: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        """Whether any structure has a reference energy or forces."""
        return bool(self.has_energy.any() or self.has_forces.any())


def label_keys_present(structures: Sequence[Atoms]) -> list[str]:
    """Every info, per-atom array and stored calculator result key of the structures (sorted)."""
    keys: set[str] = set()
    for a in structures:
        keys.update(str(k) for k in a.info)
        keys.update(str(k) for k in a.arrays if k not in ("numbers", "positions"))
        if a.calc is not None:
            keys.update(str(k) for k in getattr(a.calc, "results", {}))
    return sorted(keys)


def _metrics(
    pred: Predictions,
    ref_e: np.ndarray,
    ref_f: np.ndarray | None,
    has_e: np.ndarray,
    has_f: np.ndarray,
    sel: np.ndarray,
    stress: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics over the structures ``sel`` (bool (S,)): energies where labelled, forces where labelled."""
    n = pred.n_atoms
    atom_of = np.repeat(np.arange(len(n)), n)
    e_sel, f_sel = sel & has_e, sel & has_f
    if not (e_sel.any() or f_sel.any()):
        return {"n_structures": int(sel.sum()), "n_atoms": int(n[sel].sum()), "reference labels": NO_LABELS}
    f_atoms = f_sel[atom_of]
    st = stress if stress is not None else (None, None)
    # energies over the structures with an energy, forces over those with forces (two calls: the sets differ)
    if e_sel.any():
        m = compute_metrics(pred.energy[e_sel], ref_e[e_sel], n[e_sel], None, None, *st)
    else:  # no energy labels: only the counts and stress of this call are used
        m = compute_metrics(pred.energy[f_sel], pred.energy[f_sel], n[f_sel], None, None, *st)
        m.update(dict.fromkeys(_ENERGY_KEYS))
    if f_sel.any() and ref_f is not None:
        fm = compute_metrics(pred.energy[f_sel], pred.energy[f_sel], n[f_sel], pred.forces[f_atoms], ref_f[f_atoms])
        m.update({k: v for k, v in fm.items() if k.startswith("force_")})
    m["n_structures"], m["n_atoms"] = int(sel.sum()), int(n[sel].sum())
    m["n_with_energy"], m["n_with_forces"] = int(e_sel.sum()), int(f_sel.sum())
    m["ref_energy_std_mev_atom"] = float(np.std(ref_e[e_sel] / n[e_sel]) * 1000.0) if e_sel.any() else None
    m["ref_force_rms_mev_A"] = float(np.sqrt(np.mean(ref_f[f_atoms] ** 2)) * 1000.0) if f_sel.any() else None
    return m


def group_metrics(result: EvalResult, structures: Sequence[Atoms], key: str = "config_type") -> dict[str, Any]:
    """``{value of info[key]: metrics of those structures}`` (``"(none)"`` for structures without it);
    empty when no structure has ``key``."""
    values = [a.info.get(key) for a in structures]
    if all(v is None for v in values):
        return {}
    names = np.array(["(none)" if v is None else str(v) for v in values], dtype=object)
    out = {}
    for name in dict.fromkeys(names):
        out[str(name)] = _metrics(
            result.predictions,
            result.ref_energy,
            result.ref_forces,
            result.has_energy,
            result.has_forces,
            names == name,
        )
    return out


def evaluate_structures(
    model: Potential | str | os.PathLike[str],
    structures: Sequence[Atoms],
    *,
    batch_size: int = 10,
    stress: bool | None = None,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    device: str = "numpy",
    group_key: str | None = "config_type",
) -> EvalResult:
    """Predict every structure and compare with the reference labels found.

    Args:
        model: a :class:`Potential` or a model file.
        structures: the structures, labelled or not.
        batch_size: structures per evaluation (memory only).
        stress: compare the stress; ``None``: when every structure has one and a 3D periodic cell.
        energy_key, forces_key, stress_key: label names; ``None`` means the default (``energy``,
            ``forces``, ``stress``) without insisting on it, a name given explicitly must be found on
            at least one structure.
        device: ``"numpy"`` or ``"cupy"``.
        group_key: info key whose values group the errors (:attr:`EvalResult.groups`); ``None``: none.

    Returns:
        :class:`EvalResult`; labels found on only some structures are compared there, with a warning
        that counts the rest (also in :attr:`EvalResult.warnings`).

    Raises:
        ValueError: no structures, an element unknown to the model, a malformed label, an explicitly
            named key that no structure has, ``stress=True`` without stress on every periodic structure.
        RuntimeError: ``device="cupy"`` without CuPy.
    """
    from .data import labels_from_atoms

    pot = load_potential(model, device)
    structures = list(structures)
    if not structures:
        raise ValueError("no structures to evaluate")
    keys = {"energy": energy_key or "energy", "forces": forces_key or "forces", "stress": stress_key or "stress"}
    labels = [
        labels_from_atoms(a, keys["energy"], keys["forces"], keys["stress"], index=k) for k, a in enumerate(structures)
    ]
    s_count = len(structures)
    has_e = np.array([lab.energy is not None for lab in labels])
    has_f = np.array([lab.forces is not None for lab in labels])
    for what, given, mask in (("energy", energy_key, has_e), ("forces", forces_key, has_f)):
        if given is not None and not mask.any():
            present = ", ".join(label_keys_present(structures)) or "none"
            raise ValueError(f"no structure has {what} under the key {given!r}; keys present: {present}")
    notes = []
    if has_e.any() or has_f.any():
        for what, key, mask in (("energy", keys["energy"], has_e), ("forces", keys["forces"], has_f)):
            if not mask.all():
                rest = f"{what} metrics over the other {int(mask.sum())}" if mask.any() else f"no {what} metrics"
                notes.append(f"{what} ({key!r}) missing in {int((~mask).sum())} of {s_count} structures; {rest}")
    all_stress = all(lab.stress is not None for lab in labels) and all(bool(np.all(a.pbc)) for a in structures)
    if stress is None:
        stress = all_stress
    elif stress and not all_stress:
        n_s = sum(lab.stress is not None and bool(np.all(a.pbc)) for lab, a in zip(labels, structures))
        raise ValueError(
            f"stress evaluation needs a stress label ({keys['stress']!r}) and a 3D periodic cell on every "
            f"structure; {n_s} of {s_count} have both"
        )
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    pred = predict(pot, structures, batch_size=batch_size, stress=bool(stress), device=device)
    ref_e = np.array([np.nan if lab.energy is None else lab.energy for lab in labels], dtype=np.float64)
    ref_f = None
    if has_f.any():
        blocks = [np.full((len(a), 3), np.nan) if b.forces is None else b.forces for b, a in zip(labels, structures)]
        ref_f = np.concatenate(blocks)
    ref_s = np.stack([lab.stress for lab in labels]) if stress else None
    every = np.ones(s_count, dtype=bool)
    m = _metrics(pred, ref_e, ref_f, has_e, has_f, every, (pred.stress, ref_s) if stress else None)
    res = EvalResult(
        metrics=m,
        predictions=pred,
        ref_energy=ref_e,
        ref_forces=ref_f,
        ref_stress=ref_s,
        has_energy=has_e,
        has_forces=has_f,
        warnings=notes,
    )
    if group_key is not None and res.labelled:
        res.groups = group_metrics(res, structures, group_key)
        res.group_key = group_key if res.groups else None
    return res


def evaluate_file(
    model: Potential | str | os.PathLike[str],
    data: str | os.PathLike[str] | Sequence[Atoms],
    out_dir: str | os.PathLike[str] = ".",
    prefix: str = "eval",
    *,
    batch_size: int = 10,
    stress: bool | None = None,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    device: str = "numpy",
    plot: bool = True,
    title: str | None = None,
    pred_prefix: str = "mlip_",
    group_key: str | None = "config_type",
) -> EvalResult:
    """Evaluate a potential on a file (or structures) and write predictions, metrics and a parity plot.

    Writes ``<out_dir>/<prefix>_predictions.csv``, ``<prefix>_predictions.extxyz`` (the input structures
    with every info/arrays key and reference label kept, predictions under ``<pred_prefix>energy``,
    ``<pred_prefix>forces``, ``<pred_prefix>stress``), ``<prefix>_metrics.json`` (with ``by_<group_key>``
    when grouped) and, with labels, ``<prefix>_parity.png`` (listed in ``result.files``). Arguments as
    :func:`evaluate_structures`.
    """
    from .eval_output import write_predictions_csv, write_predictions_extxyz
    from .training import read_labelled

    structures = read_labelled(data, "evaluation") if isinstance(data, (str, os.PathLike)) else list(data)
    res = evaluate_structures(
        model,
        structures,
        batch_size=batch_size,
        stress=stress,
        energy_key=energy_key,
        forces_key=forces_key,
        stress_key=stress_key,
        device=device,
        group_key=group_key,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res.files["csv"] = write_predictions_csv(out / f"{prefix}_predictions.csv", structures, res)
    res.files["extxyz"] = write_predictions_extxyz(
        out / f"{prefix}_predictions.extxyz", structures, res, pred_prefix=pred_prefix
    )
    payload: dict[str, Any] = dict(res.metrics)
    if res.groups:
        payload[f"by_{res.group_key}"] = res.groups
    if res.warnings:
        payload["warnings"] = res.warnings
    metrics_path = out / f"{prefix}_metrics.json"
    metrics_path.write_text(json.dumps(payload, indent=2) + "\n")
    res.files["metrics"] = metrics_path
    if plot and res.has_energy.any():
        from .plots import parity_plot

        e, n = res.has_energy, res.predictions.n_atoms
        atoms_f = np.repeat(res.has_forces, n)
        with_f = res.ref_forces is not None and atoms_f.any()
        res.files["parity"] = parity_plot(
            res.ref_energy[e] / n[e],
            res.predictions.energy[e] / n[e],
            res.ref_forces[atoms_f] if with_f else None,
            res.predictions.forces[atoms_f] if with_f else None,
            out / f"{prefix}_parity.png",
            title=title,
            metrics=res.metrics,
        )
    return res
