"""The training loss of a batch, as an autodiff graph (training) and as a number (validation).

Summed over the structures b of a batch, as in the paper::

    L = w_E Σ_b ω_b (ΔE_b / N_b)²  +  w_F Σ_b ω_b Σ_{i∈b} |ΔF_i|²  +  w_S Σ_b ω_b |Δσ_b|²

with ``ΔX = X_pred - X_ref``, ``N_b`` atoms, per-structure weights ``ω_b`` (``info["weight"]``, 1 by
default), ``|Δσ|²`` the squared Frobenius norm of the (3, 3) stress error; units eV/atom, eV/Å, eV/Å³.
A label a structure lacks is masked out of its term.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cartesian_irreps.runtime.backend import to_host

from .. import autodiff as ad
from ..data import Batch
from .config import TrainConfig

__all__ = ["_LossTerms", "_loss_tensor", "_loss_terms", "_loss_value", "validation_metrics"]


@dataclass(frozen=True)
class _LossTerms:
    """Constant arrays of the loss of one batch (device arrays in the model dtype)."""

    energy_ref: Any
    energy_coef: Any  # (S,) w_E ω_b mask / N_b²
    forces_ref: Any
    forces_coef: Any  # (N, 1) w_F ω_b mask
    stress_ref: Any
    stress_coef: Any  # (S, 1, 1) w_S ω_b mask


def _loss_terms(batch: Batch, config: TrainConfig) -> _LossTerms:
    dt = batch.positions.dtype
    w = batch.weights.astype(np.float64)

    def mask(name: str) -> Any:
        m = getattr(batch, f"{name}_mask")
        return w * m if m is not None else w

    e_ref = e_coef = f_ref = f_coef = s_ref = s_coef = None
    if config.energy_weight > 0 and batch.energy is not None:
        n = batch.n_atoms.astype(np.float64)
        e_ref = batch.energy
        e_coef = (config.energy_weight * mask("energy") / (n * n)).astype(dt)
    if config.forces_weight > 0 and batch.forces is not None:
        f_ref = batch.forces
        f_coef = (config.forces_weight * mask("forces"))[batch.batch].astype(dt)[:, None]
    if config.stress_weight > 0 and batch.stress is not None:
        s_ref = batch.stress
        s_coef = (config.stress_weight * mask("stress")).astype(dt)[:, None, None]
    return _LossTerms(e_ref, e_coef, f_ref, f_coef, s_ref, s_coef)


def _loss_tensor(out: Mapping[str, Any], t: _LossTerms) -> ad.Tensor:
    """The batch loss as an autodiff Tensor (``out`` from ``evaluate(..., create_graph=True)``)."""
    total = None
    if t.energy_coef is not None:
        de = out["energy"] - t.energy_ref
        total = ad.sum(de * de * t.energy_coef)
    if t.forces_coef is not None:
        df = out["forces"] - t.forces_ref
        term = ad.sum(df * df * t.forces_coef)
        total = term if total is None else total + term
    if t.stress_coef is not None:
        ds = out["stress"] - t.stress_ref
        term = ad.sum(ds * ds * t.stress_coef)
        total = term if total is None else total + term
    assert total is not None
    return total


def _loss_value(out: Mapping[str, Any], t: _LossTerms) -> float:
    """The same loss from plain arrays (validation), as a Python float (float64 sums)."""
    total = 0.0
    if t.energy_coef is not None:
        de = (out["energy"] - t.energy_ref).astype(np.float64)
        total += float((de * de * t.energy_coef).sum())
    if t.forces_coef is not None:
        df = (out["forces"] - t.forces_ref).astype(np.float64)
        total += float((df * df * t.forces_coef).sum())
    if t.stress_coef is not None:
        ds = (out["stress"] - t.stress_ref).astype(np.float64)
        total += float((ds * ds * t.stress_coef).sum())
    return total


def validation_metrics(
    potential: Any,
    batches: Sequence[Batch],
    terms: Sequence[_LossTerms],
    params: Mapping[str, Any],
    stress: bool,
    n_structures: int,
) -> dict[str, float]:
    """Loss per structure and RMSEs of ``params`` on the validation batches.

    Returns:
        ``valid_loss`` (the loss summed over the set / ``n_structures``), ``valid_energy_rmse_mev_atom``
        (meV/atom) and ``valid_force_rmse_mev_A`` (meV/Å); ``nan`` for a label no structure has.
    """
    from ..metrics import compute_metrics

    total = 0.0
    pe, re, na, pf, rf = [], [], [], [], []
    for b, t in zip(batches, terms):
        out = potential.evaluate(b, forces=b.forces is not None, stress=stress and b.stress is not None, params=params)
        total += _loss_value(out, t)
        if b.energy is not None:
            mask = to_host(b.energy_mask) if b.energy_mask is not None else slice(None)
            pe.append(to_host(out["energy"])[mask])
            re.append(to_host(b.energy)[mask])
            na.append(to_host(b.n_atoms)[mask])
        if b.forces is not None:
            am = np.repeat(to_host(b.forces_mask), to_host(b.n_atoms)) if b.forces_mask is not None else slice(None)
            pf.append(to_host(out["forces"])[am])
            rf.append(to_host(b.forces)[am])
    res = {"valid_loss": total / n_structures}
    if pe:
        m = compute_metrics(np.concatenate(pe), np.concatenate(re), np.concatenate(na))
        res["valid_energy_rmse_mev_atom"] = m["energy_rmse_mev_atom"]
    else:
        res["valid_energy_rmse_mev_atom"] = math.nan
    if pf:
        d = (np.concatenate(pf).astype(np.float64) - np.concatenate(rf)) * 1000.0
        res["valid_force_rmse_mev_A"] = float(np.sqrt(np.mean(d * d))) if d.size else math.nan
    else:
        res["valid_force_rmse_mev_A"] = math.nan
    return res
