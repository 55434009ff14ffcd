"""ASE calculator for :class:`mlip.model.Potential`.

>>> from mlip.calculator import ICTPCalculator
>>> atoms.calc = ICTPCalculator(model="model.npz")          # doctest: +SKIP
>>> atoms.get_potential_energy(), atoms.get_forces()         # doctest: +SKIP

Units and conventions are ASE's:

* ``energy`` / ``free_energy``: total energy (eV), a Python float; ``free_energy`` equals ``energy``
  (no electronic entropy in a potential);
* ``energies``: site energies ``E_i`` (eV), shape (N,), summing to ``energy``;
* ``forces``: ``F = -dE/dr`` (eV/Å), shape (N, 3);
* ``stress``: ``sigma = (1/V) dE/d(strain)`` (eV/Å³), 6 Voigt components in ASE order
  ``xx, yy, zz, yz, xz, xy``; negative when the system is compressed (positive pressure
  ``p = -trace(sigma)/3``). This is exactly what :meth:`Potential.evaluate` returns, and what
  :func:`ase.calculators.fd.calculate_numerical_stress` computes by finite differences. Only for
  structures periodic along all three cell vectors; otherwise ``PropertyNotImplementedError``.

Every call builds a one-structure :class:`mlip.data.Batch` (a fresh neighbour list with
:func:`mlip.data.batch_structures`) and calls :meth:`Potential.evaluate`; results come back as
float64 NumPy arrays whatever the model's dtype and device. Bad input (an element the model does
not know, NaN positions, atoms closer than ``min_distance``) raises the ``ValueError`` of
:mod:`mlip.data`, whose message names the atoms and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from cartesian_irreps.runtime.backend import import_cupy, is_cupy, to_host

from . import autodiff as ad
from .data import Batch, SpeciesTable, batch_structures
from .model import Potential

__all__ = ["ICTPCalculator"]

_DEVICES = {"cpu": "cpu", "numpy": "cpu", "gpu": "gpu", "cuda": "gpu", "cupy": "gpu"}


class ICTPCalculator(Calculator):
    """ASE calculator evaluating an irreducible-Cartesian-tensor potential.

    Args:
        model: a :class:`~mlip.model.Potential` or the path of a model file written by
            :meth:`Potential.save`.
        device: ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy; ``"cuda"`` is an alias). The parameters are
            moved to that device once, here; the potential passed in is not modified.
        dtype: ``"float32"`` or ``"float64"`` to evaluate in that precision (the parameters are cast
            once); ``None`` keeps the model's own dtype.
        min_distance: smallest allowed distance between two atoms, periodic images included (Å);
            closer atoms raise ``ValueError`` (``0`` or ``None`` only refuses coincident atoms).
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator` (``label``, ``atoms``, ...).

    Attributes:
        potential: the :class:`Potential` evaluated (parameters on ``device``, in ``dtype``).
        species_table: the model's elements, in species order.
        cutoff: the model's cutoff radius (Å).
        last_batch: the :class:`~mlip.data.Batch` of the last calculation (NumPy arrays), or ``None``.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]  # noqa: RUF012 (ASE API)
    default_parameters: dict[str, Any] = {}  # noqa: RUF012 (ASE API)

    def __init__(
        self,
        model: Potential | str | os.PathLike[str],
        device: str = "cpu",
        dtype: str | np.dtype | type | None = None,
        min_distance: float | None = 0.5,
        **kwargs: Any,
    ) -> None:
        Calculator.__init__(self, **kwargs)
        if device not in _DEVICES:
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        self.device = _DEVICES[device]
        if isinstance(model, Potential):
            pot = model
        elif isinstance(model, (str, os.PathLike)):
            pot = Potential.load(model)
        else:
            raise TypeError(f"model must be a Potential or the path of a model file, got {type(model).__name__}")
        if dtype is not None:
            name = np.dtype(dtype).name
            if name not in ("float32", "float64"):
                raise ValueError(f"dtype must be float32 or float64, got {name}")
        else:
            name = pot.config.dtype
        self.potential = self._place(pot, name)
        self.dtype = np.dtype(name)
        self.min_distance = min_distance
        self.species_table = SpeciesTable(self.potential.config.elements)
        self.cutoff = float(self.potential.config.cutoff)
        self.last_batch: Batch | None = None

    # ------------------------------------------------------------------ setup
    def _place(self, pot: Potential, dtype: str) -> Potential:
        """``pot`` with its parameters on ``self.device`` in ``dtype`` (the same object if nothing changes)."""
        has_tensors = any(isinstance(v, ad.Tensor) for v in pot.params.values())
        params = {k: (v.data if isinstance(v, ad.Tensor) else v) for k, v in pot.params.items()}
        on_gpu = any(is_cupy(v) for v in params.values())
        want_gpu = self.device == "gpu"
        same_dtype = dtype == pot.config.dtype and all(np.dtype(v.dtype) == np.dtype(dtype) for v in params.values())
        if on_gpu == want_gpu and same_dtype and not has_tensors:
            return pot
        if want_gpu:
            cupy = import_cupy("device='gpu'")
            params = {k: cupy.asarray(v, dtype=dtype) for k, v in params.items()}
        else:
            params = {k: np.ascontiguousarray(to_host(v), dtype=dtype) for k, v in params.items()}
        config = pot.config if dtype == pot.config.dtype else pot.config.replace(dtype=dtype)
        return Potential(config, params)

    @property
    def xp(self) -> Any:
        """The array module of the parameters: ``numpy`` or ``cupy``."""
        return import_cupy("device='gpu'") if self.device == "gpu" else np

    def build_batch(self, atoms: Atoms) -> Batch:
        """A one-structure batch of ``atoms`` for this model (NumPy arrays, the model's dtype).

        Raises:
            ValueError: from :func:`mlip.data.batch_structures`: an element not in the model, non-finite
                positions or cell, a degenerate periodic cell, atoms closer than ``min_distance`` (Å).
        """
        return batch_structures(
            [atoms],
            self.cutoff,
            self.species_table,
            dtype=self.dtype,
            min_distance=self.min_distance,
            energy_key=None,
            forces_key=None,
            stress_key=None,
            virial_key=None,
            weight_key=None,
        )

    # ------------------------------------------------------------------ ASE entry point
    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Compute ``properties`` for ``atoms`` into ``self.results``.

        Energy, free energy and forces are always computed (one energy + gradient pass); stress only
        when asked for (it needs the strain gradient too), and site energies only when asked for (one
        extra forward pass).

        Raises:
            PropertyNotImplementedError: stress asked for a structure that is not periodic along all
                three cell vectors.
            ValueError: bad structure (see :meth:`build_batch`).
        """
        properties = list(properties) if properties is not None else ["energy"]
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        assert atoms is not None
        want_stress = "stress" in properties
        if want_stress and not bool(np.all(atoms.pbc)):
            raise PropertyNotImplementedError(
                f"stress needs a structure periodic along all three cell vectors; this one has pbc={atoms.pbc.tolist()}"
            )
        if system_changes:
            self.results = {}
        batch = self.build_batch(atoms)
        self.last_batch = batch
        if self.device == "gpu":
            batch = batch.to(self.xp)
        out = self.potential.evaluate(batch, forces=True, stress=want_stress)
        energy = float(to_host(out["energy"], np.float64)[0])
        results: dict[str, Any] = {
            "energy": energy,
            "free_energy": energy,
            "forces": to_host(out["forces"], np.float64),
        }
        if want_stress:
            results["stress"] = full_3x3_to_voigt_6_stress(to_host(out["stress"], np.float64)[0])
        if "energies" in properties:
            vectors = ad.constant(batch.edge_vectors())
            results["energies"] = to_host(self.potential.site_energies(batch, vectors).data, np.float64)
        self.results.update(results)
