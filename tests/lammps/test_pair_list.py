"""The model as a function of a pair list (no LAMMPS needed): energies, f_ij = dE/dr_ij, ghost exchange.

References: the ASE calculator (positions as variables, its own neighbour list) and exact symmetries.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from hypothesis import given, settings
from hypothesis import strategies as st

from mlip.calculator import ICTPCalculator
from mlip.lammps.pair_list import (
    Halo,
    PairGraph,
    compact_graph,
    evaluate_pairs,
    feature_width,
    species_of_elements,
)
from mlip.model import Potential

from .helpers import model_config, molecule_in_box, periodic_cell

TOL = 1e-10


@pytest.fixture(scope="module")
def potential() -> Potential:
    return Potential.create(model_config(), seed=1)


def ase_reference(atoms: Atoms, potential: Potential) -> tuple[dict, ICTPCalculator]:
    calc = ICTPCalculator(potential)
    props = ["energy", "forces", "energies"] + (["stress"] if atoms.pbc.all() else [])
    calc.calculate(atoms.copy(), props)
    return dict(calc.results), calc


def ase_graph(atoms: Atoms, calc: ICTPCalculator) -> tuple[PairGraph, np.ndarray]:
    batch = calc.build_batch(atoms)
    graph = PairGraph(batch.species, batch.senders, batch.receivers, batch.unit_shifts, len(atoms))
    return graph, batch.edge_vectors()


def forces_from_pairs(graph: PairGraph, f: np.ndarray, n: int) -> np.ndarray:
    """F_i = sum_{pairs with receiver i} f_ij - sum_{pairs with sender i} f_ji (F = -dE/dx)."""
    out = np.zeros((n, 3))
    np.add.at(out, graph.receivers, f)
    np.add.at(out, graph.senders, -f)
    return out


@pytest.mark.parametrize("make", [periodic_cell, molecule_in_box])
def test_pair_list_matches_ase(make, potential):
    atoms = make()
    ref, calc = ase_reference(atoms, potential)
    graph, vectors = ase_graph(atoms, calc)
    res = evaluate_pairs(potential, graph, vectors)
    assert abs(res.energies.sum() - ref["energy"]) < TOL
    np.testing.assert_allclose(res.energies, ref["energies"], rtol=0, atol=TOL)
    np.testing.assert_allclose(forces_from_pairs(graph, res.pair_forces, len(atoms)), ref["forces"], atol=TOL, rtol=0)
    if atoms.pbc.all():
        w = np.einsum("ea,eb->ab", vectors, res.pair_forces)  # dE/d(strain)
        sigma = 0.5 * (w + w.T) / atoms.get_volume()
        np.testing.assert_allclose(sigma.ravel()[[0, 4, 8, 5, 2, 1]], ref["stress"], rtol=0, atol=TOL)


def explicit_ghosts(atoms: Atoms, calc: ICTPCalculator) -> tuple[PairGraph, np.ndarray, np.ndarray, np.ndarray]:
    """The periodic graph with one ghost node per (atom, image) seen across the cell boundary, like an
    engine with ghost atoms: returns the graph, vectors, the owner of each ghost and the ghost positions."""
    batch = calc.build_batch(atoms)
    n = len(atoms)
    shifted = np.any(batch.unit_shifts != 0, axis=1)
    keys = np.concatenate([batch.senders[:, None], batch.unit_shifts], axis=1)[shifted]
    images, inverse = np.unique(keys, axis=0, return_inverse=True)
    senders = batch.senders.copy()
    senders[shifted] = n + inverse.reshape(-1)
    owners = images[:, 0]
    ghost_pos = atoms.positions[owners] + images[:, 1:] @ atoms.cell.array
    species = np.concatenate([batch.species, batch.species[owners]])
    graph = PairGraph(species, senders, batch.receivers, np.zeros_like(batch.unit_shifts), n)
    return graph, batch.edge_vectors(), owners, ghost_pos


def in_process_halo(n: int, owners: np.ndarray, forward_works: bool = True) -> Halo:
    """Rows 0..n-1 owned, row n + k a copy of row owners[k] (what LAMMPS's communication does)."""
    ghosts = n + np.arange(len(owners))

    def forward(buf: np.ndarray) -> None:
        if forward_works:
            buf[ghosts] = buf[owners]

    def reverse(buf: np.ndarray) -> None:
        np.add.at(buf, owners, buf[ghosts])
        buf[ghosts] = 0.0

    return Halo(n + len(owners), ghosts, forward, reverse)


def test_ghost_nodes_with_feature_exchange_match_ase(potential):
    atoms = periodic_cell()
    ref, calc = ase_reference(atoms, potential)
    graph, vectors, owners, _ = explicit_ghosts(atoms, calc)
    assert graph.num_nodes > len(atoms)
    res = evaluate_pairs(potential, graph, vectors, in_process_halo(len(atoms), owners))
    np.testing.assert_allclose(res.energies, ref["energies"], rtol=0, atol=TOL)
    np.testing.assert_allclose(forces_from_pairs_owned(graph, res.pair_forces, owners), ref["forces"], atol=TOL, rtol=0)


def forces_from_pairs_owned(graph: PairGraph, f: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Forces on the owned atoms, ghost forces added to their owners (LAMMPS's reverse communication)."""
    n = graph.n_local
    out = forces_from_pairs(graph, f, graph.num_nodes)
    np.add.at(out, owners, out[n:])
    return out[:n]


def test_missing_exchange_is_detected_and_matters(potential):
    atoms = periodic_cell()
    ref, calc = ase_reference(atoms, potential)
    graph, vectors, owners, _ = explicit_ghosts(atoms, calc)
    with pytest.raises(ValueError, match="ghost nodes but no halo exchange"):
        evaluate_pairs(potential, graph, vectors)
    # a halo that does not copy the owners' features gives other energies: the exchange is what makes them right
    wrong = evaluate_pairs(potential, graph, vectors, in_process_halo(len(atoms), owners, forward_works=False))
    assert np.abs(wrong.energies - ref["energies"]).max() > 1e-6


def test_compact_graph_folds_periodic_images(potential):
    """Ghost rows carrying local atom IDs fold onto the local nodes with their lattice image as shift."""
    atoms = periodic_cell()
    ref, calc = ase_reference(atoms, potential)
    graph, vectors, owners, ghost_pos = explicit_ghosts(atoms, calc)
    n = len(atoms)
    tags = np.concatenate([np.arange(1, n + 1), owners + 1])
    x = np.concatenate([atoms.positions, ghost_pos])
    c = atoms.cell.array
    h = np.array([c[0, 0], c[1, 1], c[2, 2], c[2, 1], c[2, 0], c[1, 0]])  # LAMMPS: xprd yprd zprd yz xz xy
    species = np.concatenate([graph.species[:n], graph.species[owners]])
    folded, remote = compact_graph(graph.receivers, graph.senders, species, tags, x, h, n)
    assert folded.num_nodes == n and remote.size == 0
    batch = calc.build_batch(atoms)
    np.testing.assert_array_equal(folded.senders, batch.senders)
    np.testing.assert_array_equal(folded.unit_shifts, batch.unit_shifts)
    res = evaluate_pairs(potential, folded, vectors)
    np.testing.assert_allclose(res.energies, ref["energies"], rtol=0, atol=TOL)


def test_compact_graph_keeps_one_node_per_remote_atom():
    """Two ghost copies of one remote atom (ID 9) become one remote node, held by the lower row."""
    tags = np.array([1, 2, 9, 9, 1])
    x = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [2, 10, 0], [0, 10, 0]], dtype=float)
    h = np.array([10.0, 10.0, 10.0, 0, 0, 0])
    pair_i, pair_j = np.array([0, 1, 1, 0]), np.array([1, 2, 3, 4])
    graph, remote = compact_graph(pair_i, pair_j, np.array([0, 1, 2, 2, 0]), tags, x, h, 2)
    np.testing.assert_array_equal(remote, [2])
    np.testing.assert_array_equal(graph.senders, [1, 2, 2, 0])
    np.testing.assert_array_equal(graph.unit_shifts, [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(graph.species, [0, 1, 2])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), reflect=st.booleans())
def test_energies_invariant_pair_forces_equivariant(seed, reflect, potential):
    atoms = molecule_in_box()
    _, calc = ase_reference(atoms, potential)
    graph, vectors = ase_graph(atoms, calc)
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    if reflect != (np.linalg.det(q) < 0):
        q = -q
    base = evaluate_pairs(potential, graph, vectors)
    moved = evaluate_pairs(potential, graph, vectors @ q.T)
    np.testing.assert_allclose(moved.energies, base.energies, rtol=0, atol=1e-11)
    np.testing.assert_allclose(moved.pair_forces, base.pair_forces @ q.T, rtol=0, atol=1e-11)


def test_pair_forces_are_the_energy_gradient(potential):
    """f_ij against central finite differences of E in r_ij (a few pairs)."""
    atoms = molecule_in_box()
    _, calc = ase_reference(atoms, potential)
    graph, vectors = ase_graph(atoms, calc)
    res = evaluate_pairs(potential, graph, vectors)
    eps = 1e-5
    for e in (0, len(vectors) // 2, len(vectors) - 1):
        for a in range(3):
            plus, minus = vectors.copy(), vectors.copy()
            plus[e, a] += eps
            minus[e, a] -= eps
            fd = (evaluate_pairs(potential, graph, plus).energies.sum()
                  - evaluate_pairs(potential, graph, minus).energies.sum()) / (2 * eps)  # fmt: skip
            assert abs(fd - res.pair_forces[e, a]) < 1e-7


def test_float32_close_to_float64(potential):
    atoms = periodic_cell()
    _, calc = ase_reference(atoms, potential)
    graph, vectors = ase_graph(atoms, calc)
    p32 = Potential(
        potential.config.replace(dtype="float32"), {k: v.astype(np.float32) for k, v in potential.params.items()}
    )
    r64 = evaluate_pairs(potential, graph, vectors)
    r32 = evaluate_pairs(p32, graph, vectors)
    np.testing.assert_allclose(r32.energies, r64.energies, rtol=0, atol=1e-4 * np.abs(r64.energies).max())
    np.testing.assert_allclose(r32.pair_forces, r64.pair_forces, rtol=0, atol=1e-4 * np.abs(r64.pair_forces).max())


def test_species_mapping_and_errors(potential):
    np.testing.assert_array_equal(species_of_elements(potential, ["Cu", "H", "Ni"]), [3, 0, 4])
    with pytest.raises(ValueError, match=r"atom type 2 is mapped to element 'Fe'.*model elements: H, C, O, Cu, Ni"):
        species_of_elements(potential, ["Cu", "Fe"])


def test_feature_width(potential):
    # 8 channels x (l=0: 1 + l=1: 3) hidden features exchanged after layer 1
    assert feature_width(potential) == 8 * 4
    one_layer = Potential.create(model_config(num_layers=1))
    assert feature_width(one_layer) == 0


@pytest.mark.gpu
def test_cupy_matches_numpy(potential):
    cupy = pytest.importorskip("cupy", reason="needs CuPy and a GPU")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:
        pytest.skip("needs CuPy and a GPU")
    atoms = periodic_cell()
    _, calc = ase_reference(atoms, potential)
    graph, vectors = ase_graph(atoms, calc)
    gpu = ICTPCalculator(potential, device="gpu").potential
    r_gpu = evaluate_pairs(gpu, graph, vectors, xp=cupy)
    r_cpu = evaluate_pairs(potential, graph, vectors)
    np.testing.assert_allclose(r_gpu.energies, r_cpu.energies, rtol=0, atol=1e-9)
    np.testing.assert_allclose(r_gpu.pair_forces, r_cpu.pair_forces, rtol=0, atol=1e-9)
