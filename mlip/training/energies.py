"""Per-element reference energies ``E0_Z`` and the model's atomic energies ``mu_Z`` (eV).

The model predicts ``E = Σ_i mu_{Z_i} + (interaction energy)``; ``mu_Z`` is set before training:

* **isolated atoms** (``isolated_atoms_file`` / ``--e0 FILE``): ``E0_Z`` = the given energy of the
  isolated atom, used exactly as given;
* **least squares** (``e0 = "least-squares"``, the default without a file): ``E0`` minimises
  ``Σ_b (E_b - Σ_Z n_bZ E0_Z)²`` over the training structures b (``n_bZ`` atoms of element Z). It is
  only used when the compositions determine it: the composition matrix ``n`` (structures x elements)
  must have full column rank (singular values above ``1e-8`` times the largest); otherwise (one
  composition for all structures, as in the molecule sets, or an element in no training structure)
  any split of the energy among the elements fits equally well and the fit is an error;
* **average** (``e0 = "average"``, MACE's ``--E0s=average``, documented by MACE as a least-squares
  regression): the least-squares ``E0`` when the compositions determine it, else the same energy for
  every element, the mean energy per atom ``E0_Z = (1/B) Σ_b E_b / N_b`` (with a warning).

``mu_Z = E0_Z``, or with ``e0_shift`` ``mu_Z = E0_Z + δ_Z``, ``δ`` the ridge (λ = 1) least-squares fit
of the residual energy per atom ``(E_b - Σ_Z n_bZ E0_Z) / N_b ≈ Σ_Z (n_bZ / N_b) δ_Z``
(:attr:`mlip.model.ModelConfig.atomic_energies`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cartesian_irreps.runtime.backend import to_host

from ..data import Batch, SpeciesTable
from .errors import DataError

__all__ = ["RANK_TOLERANCE", "RIDGE_LAMBDA", "composition_matrix", "fit_e0", "reference_energies"]

RIDGE_LAMBDA = 1.0
#: Relative singular-value threshold below which the composition matrix counts as rank-deficient.
RANK_TOLERANCE = 1e-8


def composition_matrix(batch: Batch, table: SpeciesTable) -> tuple[np.ndarray, np.ndarray | None]:
    """``(counts, energy)``: ``(B, S)`` atoms per element of the structures with an energy, and their energies."""
    counts = np.zeros((batch.num_structures, len(table)))
    np.add.at(counts, (to_host(batch.batch), to_host(batch.species)), 1.0)
    if batch.energy is None:
        return counts[:0], None
    energy = to_host(batch.energy).astype(np.float64)
    mask = to_host(batch.energy_mask) if batch.energy_mask is not None else np.ones(len(energy), bool)
    return counts[mask], energy[mask]


def _rank_problem(counts: np.ndarray, table: SpeciesTable) -> str | None:
    """Why least squares cannot determine ``E0`` from these compositions (``None`` when it can)."""
    S = len(table)
    absent = [s for s, c in zip(table.symbols, counts.sum(axis=0)) if c == 0]
    if absent:
        return f"no training structure with an energy contains {', '.join(absent)}"
    sv = np.linalg.svd(counts, compute_uv=False) if counts.size else np.zeros(0)
    rank = int(np.sum(sv > RANK_TOLERANCE * sv.max())) if sv.size else 0
    if rank < S:
        distinct = np.unique(counts, axis=0)
        return (
            f"the composition matrix of the training structures has rank {rank} < {S} elements "
            f"({len(distinct)} distinct composition{'s' if len(distinct) != 1 else ''} among {len(counts)} structures)"
        )
    return None


def fit_e0(counts: np.ndarray, energy: np.ndarray, table: SpeciesTable, mode: str) -> tuple[np.ndarray, str | None]:
    """``E0`` (``(S,)``, eV) by ``"least-squares"`` or ``"average"`` and a warning (or ``None``).

    Raises:
        DataError: no energies, or ``"least-squares"`` on compositions that do not determine it.
    """
    if not len(energy):
        raise DataError("no training structure has an energy: E0 cannot be fitted; give isolated-atom energies")
    problem = _rank_problem(counts, table)
    if problem is None:
        return np.linalg.lstsq(counts, energy, rcond=None)[0], None
    if mode == "average":
        mean = float(np.mean(energy / counts.sum(axis=1)))
        return np.full(len(table), mean), (
            f"E0 'average': {problem}, so least squares cannot separate the elements; every element gets "
            f"the mean energy per atom of the {len(energy)} training structures, {mean:.6g} eV"
        )
    raise DataError(
        f"the per-element reference energies E0 cannot be fitted by least squares: {problem}. "
        "Give isolated-atom energies (--e0 FILE, isolated_atoms_file), or use --e0 average "
        "(one mean energy per atom for every element)"
    )


def reference_energies(
    batch: Batch,
    table: SpeciesTable,
    isolated: Mapping[str, float] | None = None,
    ridge: float = RIDGE_LAMBDA,
    *,
    mode: str = "least-squares",
    shift: bool = False,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-species ``E0`` and the model's atomic energies ``mu`` (eV), see the module docstring.

    Args:
        batch: the training set (energies needed unless ``isolated`` is given and ``shift`` is false).
        table: species table.
        isolated: ``{symbol: energy (eV)}`` of isolated atoms, or ``None`` to fit ``E0`` (``mode``).
        ridge: λ of the ridge fit of ``δ``.
        mode: ``"least-squares"`` or ``"average"`` (without ``isolated``).
        shift: add the ridge fit ``δ`` (``mu = E0 + δ``); else ``mu = E0``.
        notes: warnings are appended here.

    Returns:
        ``(E0, mu)``, each ``(len(table),)`` float64.

    Raises:
        DataError: an element of the table missing from ``isolated``; a fit the data cannot determine.
    """
    S = len(table)
    counts, energy = composition_matrix(batch, table)
    if isolated is not None:
        missing = [s for s in table.symbols if s not in isolated]
        if missing:
            raise DataError(
                f"no isolated-atom energy for element(s) {', '.join(missing)} "
                f"(given for: {', '.join(isolated) or 'none'})"
            )
        e0 = np.array([float(isolated[s]) for s in table.symbols])
    elif energy is None or not len(energy):  # nothing to fit (forces-only training): energies are relative
        e0 = np.zeros(S)
        if notes is not None:
            notes.append("no training structure has an energy: E0 = 0 for every element (energies are relative)")
    else:
        e0, note = fit_e0(counts, energy, table, mode)
        if note and notes is not None:
            notes.append(note)
    if not shift:
        return e0, e0.copy()
    if energy is None or not len(energy):
        raise DataError("e0_shift needs training structures with energies")
    n = counts.sum(axis=1)
    a = counts / n[:, None]
    y = (energy - counts @ e0) / n
    delta = np.linalg.solve(a.T @ a + ridge * np.eye(S), a.T @ y)
    return e0, e0 + delta
