"""Shared test helpers for the model and the calculator: a small config and cached small potentials."""

from __future__ import annotations

from functools import cache

from mlip.data import SpeciesTable
from mlip.model import ModelConfig, Potential

#: the elements of :func:`small_config`, in species order
TABLE = SpeciesTable(["H", "C", "O"])


def small_config(**kw) -> ModelConfig:
    """A fast H/C/O model (4 channels, lmax 2, correlation 2, two layers, cutoff 3 Å); ``kw`` overrides."""
    base = dict(
        elements=("H", "C", "O"),
        channels=4,
        lmax=2,
        hidden_lmax=1,
        correlation=2,
        num_layers=2,
        cutoff=3.0,
        radial_hidden=(8,),
        readout_hidden=4,
        avg_num_neighbors=3.0,
        atomic_energies=(-1.0, -2.0, -3.0),
        energy_scale=0.7,
    )
    base.update(kw)
    return ModelConfig(**base)


@cache
def small_potential(products: str = "even", seed: int = 1) -> Potential:
    """``Potential.create(small_config(products=products), seed)``, built once per session (treat as read-only)."""
    return Potential.create(small_config(products=products), seed=seed)
