"""Per-element reference energies ``E0_Z`` and the shifted ``mu_Z`` of the model's atomic energies.

``E0_Z`` comes from isolated-atom energies when given, else from least squares on the training set
(``E_b ≈ Σ_Z n_bZ E0_Z``); then ``mu_Z = E0_Z + δ_Z`` with ``δ`` the ridge (λ = 1) least-squares fit of
the residual energy per atom ``(E_b - Σ_Z n_bZ E0_Z) / N_b ≈ Σ_Z (n_bZ / N_b) δ_Z``
(:attr:`mlip.model.ModelConfig.atomic_energies`). Energies in eV.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cartesian_irreps.runtime.backend import to_host

from ..data import Batch, SpeciesTable
from .errors import DataError

__all__ = ["RIDGE_LAMBDA", "reference_energies"]

RIDGE_LAMBDA = 1.0


def reference_energies(
    batch: Batch, table: SpeciesTable, isolated: Mapping[str, float] | None = None, ridge: float = RIDGE_LAMBDA
) -> tuple[np.ndarray, np.ndarray]:
    """Per-species ``E0`` and the shifted ``mu = E0 + δ`` (eV), see the module docstring.

    Args:
        batch: the training set (energies needed).
        table: species table.
        isolated: ``{symbol: energy (eV)}`` of isolated atoms, or ``None`` for least squares.
        ridge: λ of the ridge fit of ``δ``.

    Returns:
        ``(E0, mu)``, each ``(len(table),)`` float64.

    Raises:
        DataError: an element of the table missing from ``isolated``.
    """
    S = len(table)
    species = to_host(batch.species)
    counts = np.zeros((batch.num_structures, S))
    np.add.at(counts, (to_host(batch.batch), species), 1.0)
    if batch.energy is None:
        return np.zeros(S), np.zeros(S)
    energy = to_host(batch.energy).astype(np.float64)
    mask = to_host(batch.energy_mask) if batch.energy_mask is not None else np.ones(len(energy), bool)
    counts, energy = counts[mask], energy[mask]
    if isolated is not None:
        missing = [s for s in table.symbols if s not in isolated]
        if missing:
            raise DataError(
                f"no isolated-atom energy for element(s) {', '.join(missing)} "
                f"(given for: {', '.join(isolated) or 'none'})"
            )
        e0 = np.array([float(isolated[s]) for s in table.symbols])
    else:
        e0 = np.linalg.lstsq(counts, energy, rcond=None)[0] if len(energy) else np.zeros(S)
    n = counts.sum(axis=1)
    if not len(energy):
        return e0, e0.copy()
    a = counts / n[:, None]
    y = (energy - counts @ e0) / n
    delta = np.linalg.solve(a.T @ a + ridge * np.eye(S), a.T @ y)
    return e0, e0 + delta
