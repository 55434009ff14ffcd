"""Structures to batched graphs: neighbour lists against brute force, batching, labels, bad input."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import assume, given
from hypothesis import strategies as st

from mlip.data import (
    Batch,
    SpeciesTable,
    batch_structures,
    edge_vectors,
    labels_from_atoms,
    neighbour_list,
    read_structures,
)

DATA = Path(os.environ.get("MLIP_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
TABLE = SpeciesTable(("H", "C", "N", "O"))
MIN_D = 0.1  # min_distance used in the random tests (Å)


# ----------------------------------------------------------------------------------------- brute force


def _full_box(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Cell with non-periodic rows replaced by an orthonormal complement of the periodic rows (SVD)."""
    box = np.array(cell, dtype=float)
    per, free = np.nonzero(pbc)[0], np.nonzero(~pbc)[0]
    if per.size == 0:
        return np.eye(3)
    _, _, vt = np.linalg.svd(box[per])
    box[free] = vt[per.size :]
    return box


def brute_force(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> dict:
    """{(i, j, shift): (vector, distance)} over every periodic image, O(N² · images)."""
    box = _full_box(cell, pbc)
    inv = np.linalg.inv(box)
    heights = 1.0 / np.linalg.norm(inv, axis=0)  # spacing of lattice planes
    frac = pos @ inv
    span = frac.max(axis=0) - frac.min(axis=0)
    reach = [int(np.ceil(cutoff / heights[k] + span[k])) + 1 if pbc[k] else 0 for k in range(3)]
    shifts = np.array(list(itertools.product(*[range(-r, r + 1) for r in reach])), dtype=np.int64)
    vec = pos[None, None, :, :] - pos[None, :, None, :] + (shifts @ cell)[:, None, None, :]  # (K, i, j, 3)
    dist = np.linalg.norm(vec, axis=-1)
    out = {}
    for s, i, j in zip(*np.nonzero(dist < cutoff + 1e-9)):
        if i == j and not shifts[s].any():
            continue
        out[(int(i), int(j), tuple(int(x) for x in shifts[s]))] = (vec[s, i, j], dist[s, i, j])
    return out


def min_pair_distance(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, reach: float) -> float:
    pairs = brute_force(pos, cell, pbc, reach)
    return min((d for _, d in pairs.values()), default=np.inf)


# ----------------------------------------------------------------------------------------- strategies


@st.composite
def systems(draw, max_atoms: int = 5) -> Atoms:
    """Small random systems: any pbc, skewed cells, zero cell rows along free axes, unwrapped positions."""
    pbc = np.array(draw(st.tuples(st.booleans(), st.booleans(), st.booleans())))
    lengths = [draw(st.floats(1.2, 4.0)) for _ in range(3)]
    cell = np.diag(lengths)
    for a, b in itertools.permutations(range(3), 2):
        cell[a, b] = draw(st.floats(-0.4, 0.4)) * lengths[a]
    if draw(st.booleans()):
        cell[~pbc] = 0.0  # ASE-style zero rows along non-periodic directions
    box = _full_box(cell, pbc)
    assume(abs(np.linalg.det(box)) > 0.3 * np.prod(np.linalg.norm(box, axis=1)))
    n = draw(st.integers(1, max_atoms))
    frac = np.array([[draw(st.floats(-0.5, 1.5)) for _ in range(3)] for _ in range(n)])
    scale = np.where(pbc, 1.0, 3.0)[None, :]  # spread along free axes
    positions = (frac * scale) @ box
    numbers = [draw(st.sampled_from([1, 6, 7, 8])) for _ in range(n)]
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)


def edge_dict(batch: Batch, k: int = 0) -> dict:
    """{(i, j, shift): vector} for structure k, local indices."""
    sel = np.nonzero(batch.edge_batch == k)[0]
    vec = batch.edge_vectors()
    off = batch.ptr[k]
    return {
        (int(batch.receivers[e] - off), int(batch.senders[e] - off), tuple(int(x) for x in batch.unit_shifts[e])): vec[
            e
        ]
        for e in sel
    }


# ----------------------------------------------------------------------------------------- neighbour lists


@given(atoms=systems(), cutoff=st.floats(0.5, 4.0))
def test_edges_match_brute_force(atoms, cutoff):
    pos, cell, pbc = atoms.positions, atoms.cell.array, atoms.pbc
    reach = max(cutoff, MIN_D)
    ref = brute_force(pos, cell, pbc, reach)
    dmin = min((d for _, d in ref.values()), default=np.inf)
    assume(abs(dmin - MIN_D) > 1e-6)
    if dmin < MIN_D:
        with pytest.raises(ValueError, match=r"structure 0: .* Å apart, closer than min_distance"):
            batch_structures([atoms], cutoff, TABLE, min_distance=MIN_D)
        return
    batch = batch_structures([atoms], cutoff, TABLE, min_distance=MIN_D)
    got = edge_dict(batch)
    # pairs within 1e-9 Å of the cutoff may land on either side
    sure = {key for key, (_, d) in ref.items() if d < cutoff - 1e-9}
    maybe = {key for key, (_, d) in ref.items() if d < cutoff + 1e-9}
    assert sure <= set(got) <= maybe
    for key, v in got.items():
        np.testing.assert_allclose(v, ref[key][0], atol=1e-10)
    lengths = batch.edge_lengths()
    assert np.all(lengths > 0) and np.all(lengths < cutoff + 1e-9)
    # full list: every edge has its reverse, with the opposite shift
    assert all((j, i, tuple(-x for x in s)) in got for i, j, s in got)
    # no shift along a non-periodic axis, no zero-shift self edge
    assert not batch.unit_shifts[:, ~pbc].any()
    assert not any(i == j and not any(s) for i, j, s in got)
    # sorted by receiver, deterministic
    assert np.all(np.diff(batch.receivers) >= 0)


@given(structures=st.lists(systems(max_atoms=4), min_size=1, max_size=4), cutoff=st.floats(0.5, 3.0))
def test_batching_equals_each_alone(structures, cutoff):
    for atoms in structures:
        assume(min_pair_distance(atoms.positions, atoms.cell.array, atoms.pbc, MIN_D) > MIN_D + 1e-6)
    batch = batch_structures(structures, cutoff, TABLE, min_distance=MIN_D)
    assert batch.num_structures == len(structures)
    np.testing.assert_array_equal(batch.ptr, np.concatenate([[0], np.cumsum([len(a) for a in structures])]))
    np.testing.assert_array_equal(batch.batch, np.repeat(np.arange(len(structures)), [len(a) for a in structures]))
    assert batch.n_edges.sum() == batch.num_edges
    for k, atoms in enumerate(structures):
        alone = batch_structures([atoms], cutoff, TABLE, min_distance=MIN_D)
        sel = batch.edge_batch == k
        np.testing.assert_array_equal(batch.receivers[sel] - batch.ptr[k], alone.receivers)
        np.testing.assert_array_equal(batch.senders[sel] - batch.ptr[k], alone.senders)
        np.testing.assert_array_equal(batch.unit_shifts[sel], alone.unit_shifts)
        np.testing.assert_allclose(batch.edge_vectors()[sel], alone.edge_vectors(), atol=1e-12)
        np.testing.assert_array_equal(batch.cell[k], atoms.cell.array)
        np.testing.assert_array_equal(batch.pbc[k], atoms.pbc)
        np.testing.assert_array_equal(batch.numbers[batch.ptr[k] : batch.ptr[k + 1]], atoms.numbers)
        # receivers and senders of an edge belong to the edge's structure
        assert np.all(batch.batch[batch.receivers[sel]] == k) and np.all(batch.batch[batch.senders[sel]] == k)


@pytest.mark.parametrize(("a", "cutoff", "expected"), [(2.0, 2.5, 6), (2.0, 3.0, 18), (2.0, 3.5, 26), (2.0, 1.9, 0)])
def test_single_atom_periodic_cell_gets_image_edges(a, cutoff, expected):
    atoms = Atoms("Cu", positions=[[0.3, 0.1, 0.0]], cell=np.eye(3) * a, pbc=True)
    batch = batch_structures([atoms], cutoff, SpeciesTable(["Cu"]))
    assert batch.num_edges == expected
    assert np.all(batch.receivers == 0) and np.all(batch.senders == 0)
    assert np.all(np.abs(batch.unit_shifts).sum(axis=1) > 0)
    np.testing.assert_allclose(batch.edge_vectors(), batch.unit_shifts * a, atol=1e-12)


def test_mixed_pbc_slab_with_zero_cell_row():
    atoms = Atoms("HH", positions=[[0, 0, 0], [0.0, 0.0, 1.0]], cell=[[1.5, 0, 0], [0, 1.5, 0], [0, 0, 0]])
    atoms.pbc = [True, True, False]
    batch = batch_structures([atoms], 1.6, TABLE)
    got = edge_dict(batch)
    assert (0, 1, (0, 0, 0)) in got and (0, 0, (1, 0, 0)) in got and (0, 0, (0, -1, 0)) in got
    assert not batch.unit_shifts[:, 2].any()
    assert set(got) == set(brute_force(atoms.positions, atoms.cell.array, atoms.pbc, 1.6))


def test_far_apart_atoms_give_zero_edges():
    atoms = Atoms("CHO", positions=[[0, 0, 0], [10, 0, 0], [0, 10, 0]])  # pbc False, zero cell
    batch = batch_structures([atoms], 5.0, TABLE)
    assert batch.num_edges == 0 and batch.n_edges.tolist() == [0]
    assert batch.receivers.dtype == np.int64 and batch.unit_shifts.shape == (0, 3)
    assert batch.edge_vectors().shape == (0, 3)
    # also inside a batch, between structures with edges
    water = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    mixed = batch_structures([water, atoms, water, Atoms("H")], 5.0, TABLE)
    assert mixed.n_edges.tolist() == [6, 0, 6, 0]
    assert mixed.edge_batch.tolist() == [0] * 6 + [2] * 6


def test_positions_far_outside_the_cell_are_not_wrapped():
    inside = Atoms("CO", positions=[[0.1, 0.2, 0.3], [1.2, 0.2, 0.3]], cell=np.eye(3) * 3.0, pbc=True)
    outside = inside.copy()
    outside.positions[1] += [30.0, -60.0, 9.0]
    b_in, b_out = batch_structures([inside], 2.5, TABLE), batch_structures([outside], 2.5, TABLE)
    np.testing.assert_array_equal(b_out.positions, outside.positions)
    np.testing.assert_allclose(np.sort(b_in.edge_lengths()), np.sort(b_out.edge_lengths()), atol=1e-12)


def test_min_distance_larger_than_cutoff():
    atoms = Atoms("HH", positions=[[0, 0, 0], [0.8, 0, 0]])
    assert batch_structures([atoms], 0.5, TABLE, min_distance=0.7).num_edges == 0
    with pytest.raises(ValueError, match=r"0\.8 Å apart"):
        batch_structures([atoms], 0.5, TABLE, min_distance=0.9)


# ----------------------------------------------------------------------------------------- edge vectors


def test_edge_vectors_follow_strain_and_positions_linearly():
    rng = np.random.default_rng(0)
    cell = np.array([[3.0, 0.2, 0.0], [0.1, 2.8, 0.3], [0.0, -0.2, 3.1]])
    crystal = Atoms("CHO", scaled_positions=rng.random((3, 3)), cell=cell, pbc=True)
    molecule = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    batch = batch_structures([molecule, crystal], 3.0, TABLE, min_distance=0.3)
    strain = rng.normal(scale=0.05, size=(2, 3, 3))
    deform = np.eye(3) + (strain + strain.transpose(0, 2, 1)) / 2
    pos = np.einsum("na,nab->nb", batch.positions, deform[batch.batch])
    cells = batch.cell @ deform
    v = batch.edge_vectors()
    np.testing.assert_allclose(edge_vectors(pos, cells, batch), np.einsum("ea,eab->eb", v, deform[batch.edge_batch]))
    # documented adjoint: +g at the sender, -g at the receiver, shiftᵀ g on the cell
    g = rng.normal(size=v.shape)
    grad_pos = np.zeros_like(batch.positions)
    np.add.at(grad_pos, batch.senders, g)
    np.add.at(grad_pos, batch.receivers, -g)
    grad_cell = np.zeros_like(batch.cell)
    np.add.at(grad_cell, batch.edge_batch, batch.unit_shifts[:, :, None] * g[:, None, :])
    dp, dc = rng.normal(size=pos.shape), rng.normal(size=cells.shape)
    lhs = np.sum(g * (edge_vectors(batch.positions + dp, batch.cell + dc, batch) - v))
    assert np.isclose(lhs, np.sum(grad_pos * dp) + np.sum(grad_cell * dc))


# ----------------------------------------------------------------------------------------- dtype, arrays


def test_float32_is_respected_without_global_state():
    water = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    water.calc = SinglePointCalculator(water, energy=-14.0, forces=np.ones((3, 3)))
    b32 = batch_structures([water], 3.0, TABLE, dtype=np.float32, require_labels=True)
    for name in ("positions", "cell", "energy", "forces", "weights"):
        assert getattr(b32, name).dtype == np.float32, name
    assert b32.edge_vectors().dtype == np.float32 and b32.dtype == np.float32
    for name in ("species", "numbers", "receivers", "senders", "unit_shifts", "batch", "edge_batch", "ptr"):
        assert getattr(b32, name).dtype == np.int64, name
    b64 = batch_structures([water], 3.0, TABLE)
    assert b64.positions.dtype == np.float64 and np.zeros(1).dtype == np.float64
    assert b32.astype(np.float64).positions.dtype == np.float64
    np.testing.assert_array_equal(b32.receivers, b64.receivers)
    with pytest.raises(ValueError, match="float32 or float64"):
        batch_structures([water], 3.0, TABLE, dtype=np.float16)


def test_to_numpy_and_no_cupy_import():
    water = Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    batch = batch_structures([water], 3.0, TABLE)
    again = batch.to(np)
    assert isinstance(again.positions, np.ndarray) and again.species_table == TABLE
    assert batch.to("numpy").num_edges == batch.num_edges
    with pytest.raises(ValueError, match="unknown array module"):
        batch.to("torch")
    code = (
        "import sys, numpy as np; from ase import Atoms; from mlip.data import SpeciesTable, batch_structures\n"
        "b = batch_structures([Atoms('H2', positions=[[0,0,0],[0.7,0,0]])], 2.0, SpeciesTable(['H']))\n"
        "b.to('numpy'); b.edge_vectors(); assert 'cupy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


class _DeviceArray(np.ndarray):
    """Stand-in for a device array type (the path ``Batch.to`` takes for CuPy)."""


class _FakeXp:
    @staticmethod
    def asarray(a):
        return np.asarray(a).view(_DeviceArray)


def test_to_other_array_module_and_back():
    crystal = Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]], cell=np.eye(3) * 3.0, pbc=True)
    batch = batch_structures([crystal, _water()], 3.0, TABLE)
    moved = batch.to(_FakeXp)
    assert all(type(a) is _DeviceArray for a in moved.arrays().values())
    assert moved.cutoff == batch.cutoff and moved.species_table is batch.species_table
    vec = moved.edge_vectors()
    assert type(vec) is _DeviceArray
    np.testing.assert_array_equal(vec, batch.edge_vectors())
    back = moved.to(np)
    assert all(type(a) is np.ndarray for a in back.arrays().values())


@pytest.mark.gpu
def test_to_cupy_round_trip():
    cp = pytest.importorskip("cupy")
    try:
        cp.cuda.runtime.getDeviceCount()
    except Exception:  # pragma: no cover - no driver
        pytest.skip("no GPU")
    crystal = Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]], cell=np.eye(3) * 3.0, pbc=True)
    batch = batch_structures([crystal, crystal], 3.0, TABLE, dtype=np.float32)
    gpu = batch.to(cp)
    assert isinstance(gpu.positions, cp.ndarray) and gpu.positions.dtype == cp.float32
    np.testing.assert_allclose(cp.asnumpy(gpu.edge_vectors()), batch.edge_vectors(), rtol=1e-6)
    back = gpu.to("numpy")
    assert isinstance(back.receivers, np.ndarray)
    np.testing.assert_array_equal(back.unit_shifts, batch.unit_shifts)


# ----------------------------------------------------------------------------------------- species table


def test_species_table():
    t = SpeciesTable(("O", 1, "C"))
    assert t.numbers == (8, 1, 6) and t.symbols == ("O", "H", "C") and len(t) == 3
    assert t.index([1, 6, 8, 8]).tolist() == [1, 2, 0, 0]
    assert "H" in t and 6 in t and "N" not in t
    assert SpeciesTable.from_structures([Atoms("OH2"), Atoms("CH4")]) == SpeciesTable(["H", "C", "O"])
    with pytest.raises(ValueError, match="unknown chemical symbol 'Xx'"):
        SpeciesTable(["H", "Xx"])
    with pytest.raises(ValueError, match="appears twice"):
        SpeciesTable(["H", 1])
    with pytest.raises(ValueError, match="out of range"):
        SpeciesTable([0])
    with pytest.raises(ValueError, match="at least one element"):
        SpeciesTable([])


# ----------------------------------------------------------------------------------------- labels


def test_labels_from_info_arrays_and_calculator():
    a = Atoms("CuCu", positions=[[0, 0, 0], [1.3, 1.3, 0]], cell=np.eye(3) * 2.6, pbc=True)
    voigt = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    a.calc = SinglePointCalculator(a, energy=-7.0, forces=np.zeros((2, 3)), stress=voigt)
    lab = labels_from_atoms(a)
    assert lab.energy == -7.0 and lab.forces.shape == (2, 3) and lab.weight is None and lab.virial is None
    np.testing.assert_array_equal(lab.stress, [[1, 6, 5], [6, 2, 4], [5, 4, 3]])
    # info / arrays take precedence, and custom keys are found there
    a.info["REF_energy"] = -8.0
    a.arrays["REF_forces"] = np.ones((2, 3))
    a.info["weight"] = 2.5
    lab = labels_from_atoms(a, energy_key="REF_energy", forces_key="REF_forces")
    assert lab.energy == -8.0 and lab.forces.sum() == 6.0 and lab.weight == 2.5
    assert labels_from_atoms(a, energy_key=None, forces_key="missing").energy is None
    # a virial becomes a stress: stress = -virial / volume
    b = a.copy()
    b.info["virial"] = np.eye(3) * 2.6**3
    batch = batch_structures([b], 2.0, SpeciesTable(["Cu"]), require_labels=("stress",), stress_key=None)
    np.testing.assert_allclose(batch.stress[0], -np.eye(3))
    assert batch.weights.tolist() == [2.5]


def test_label_masks_when_some_structures_lack_labels():
    h2 = Atoms("HH", positions=[[0, 0, 0], [0.74, 0, 0]])
    labelled = h2.copy()
    labelled.calc = SinglePointCalculator(labelled, energy=-31.0, forces=np.full((2, 3), 0.5))
    batch = batch_structures([h2, labelled, h2], 2.0, TABLE)
    assert batch.energy.tolist() == [0.0, -31.0, 0.0] and batch.energy_mask.tolist() == [False, True, False]
    assert batch.forces_mask.tolist() == [False, True, False]
    np.testing.assert_array_equal(batch.forces[2:4], 0.5)
    assert batch.stress is None and batch.stress_mask is None
    assert batch_structures([h2], 2.0, TABLE).energy is None


# ----------------------------------------------------------------------------------------- bad input


def _water(**kw) -> Atoms:
    return Atoms("OHH", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], **kw)


def _bad(atoms: Atoms, pattern: str, **kw) -> None:
    with pytest.raises(ValueError, match=pattern):
        batch_structures([_water(), atoms], kw.pop("cutoff", 3.0), kw.pop("table", TABLE), **kw)


def test_nan_or_infinite_positions_or_cell():
    a = _water()
    a.positions[2, 1] = np.nan
    _bad(a, r"structure 1 has a non-finite \(NaN or infinite\) position: atom 2")
    a = _water(cell=np.eye(3) * 5, pbc=True)
    a.cell[0, 0] = np.inf
    _bad(a, r"structure 1 has a non-finite .* cell")


def test_unknown_element():
    _bad(Atoms("XeH", positions=[[0, 0, 0], [2, 0, 0]]), r"structure 1 contains element\(s\) Xe \(Z=54\) not in")


def test_atoms_too_close():
    _bad(Atoms("CH", positions=[[0, 0, 0], [0.3, 0, 0]]), r"structure 1: atom 0 \(C\) and atom 1 \(H\) are 0.3 Å apart")
    _bad(Atoms("HH", positions=[[0, 0, 0], [0, 0, 0]]), "0 Å apart, coincident atoms", min_distance=None)


def test_periodic_images_too_close():
    _bad(Atoms("H", cell=np.eye(3) * 0.3, pbc=True), r"atom 0 and its periodic image .* 0.3 Å apart")
    # long lattice vectors, but a - b is short: the image is found by the neighbour search
    skew = Atoms("H", cell=[[5.0, 0, 0], [5.0, 0.2, 0], [0, 0, 5.0]], pbc=True)
    _bad(skew, r"structure 1: atom 0 \(H\) and its own periodic image \(shift .*\) are 0.2 Å apart")
    pair = Atoms("HH", positions=[[0, 0, 0], [2.8, 0, 0]], cell=np.eye(3) * 3.0, pbc=True)
    _bad(pair, r"atom 0 \(H\) and the periodic image \(shift \(-1, 0, 0\)\) of atom 1 \(H\) are 0.2 Å apart")


def test_degenerate_periodic_cell():
    _bad(_water(cell=np.zeros((3, 3)), pbc=True), "structure 1 is periodic along abc but its cell is degenerate")
    flat = [[3.0, 0, 0], [0, 3.0, 0], [1.5, 1.5, 0]]
    _bad(_water(cell=flat, pbc=True), "periodic along abc but its cell is degenerate")
    parallel = [[3.0, 0, 0], [6.0, 0, 0], [0, 0, 0]]
    _bad(_water(cell=parallel, pbc=[True, True, False]), "periodic along ab but its cell is degenerate")
    # the same flat cell is fine when the dependent direction is not periodic
    assert batch_structures([_water(cell=flat, pbc=[True, True, False])], 3.0, TABLE).num_structures == 1


def test_cell_too_small_for_cutoff():
    _bad(Atoms("H", cell=np.eye(3) * 1e-3, pbc=True), "too small for the cutoff", min_distance=None)


def test_empty_and_malformed_inputs():
    with pytest.raises(ValueError, match="list of structures is empty"):
        batch_structures([], 3.0, TABLE)
    _bad(Atoms(), "structure 1 has no atoms")
    with pytest.raises(ValueError, match="cutoff must be a positive"):
        batch_structures([_water()], -1.0, TABLE)
    with pytest.raises(ValueError, match="structure 0 is a str"):
        batch_structures(["H2O"], 3.0, TABLE)
    with pytest.raises(ValueError, match="unknown label"):
        batch_structures([_water()], 3.0, TABLE, require_labels=["charges"])
    assert batch_structures(_water(), 3.0, TABLE).num_structures == 1  # a single Atoms is a list of one


def test_missing_or_malformed_labels():
    labelled = _water()
    labelled.calc = SinglePointCalculator(labelled, energy=-14.0, forces=np.zeros((3, 3)))
    only_energy = _water()
    only_energy.info["energy"] = -14.0
    structures = [labelled, labelled, labelled, only_energy]
    with pytest.raises(ValueError, match="structure 3 has no forces"):
        batch_structures(structures, 3.0, TABLE, require_labels=True)
    assert batch_structures(structures, 3.0, TABLE, require_labels=["energy"]).energy_mask.all()
    with pytest.raises(ValueError, match="structure 0 has no stress or virial"):
        batch_structures(structures, 3.0, TABLE, require_labels=["stress"])
    with pytest.raises(ValueError, match="structure 1 has no energy"):
        batch_structures([labelled, _water()], 3.0, TABLE, require_labels=True)
    bad = _water()
    bad.arrays["forces"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"structure 0 has forces \('forces'\) of shape \(3, 2\)"):
        batch_structures([bad], 3.0, TABLE)
    bad = _water()
    bad.info["energy"] = np.nan
    with pytest.raises(ValueError, match="structure 0 has a non-finite energy"):
        batch_structures([bad], 3.0, TABLE)
    bad = _water()
    bad.info["virial"] = np.eye(3)
    with pytest.raises(ValueError, match="structure 0 has a virial but no 3D periodic cell"):
        batch_structures([bad], 3.0, TABLE)


def test_neighbour_list_direct_call():
    i, j, s = neighbour_list(np.array([[0.0, 0, 0], [1.0, 0, 0]]), np.zeros((3, 3)), False, 1.5)
    assert i.tolist() == [0, 1] and j.tolist() == [1, 0] and s.shape == (2, 3) and s.dtype == np.int64


# ----------------------------------------------------------------------------------------- speed


def test_500_molecules_batch_quickly():
    rng = np.random.default_rng(1)
    base = Atoms("C5H8O2", positions=np.concatenate([np.zeros((1, 3)), rng.normal(scale=1.5, size=(14, 3))]))
    while min_pair_distance(base.positions, base.cell.array, base.pbc, 1.0) < 0.8:
        base.positions = rng.normal(scale=1.5, size=(15, 3))
    molecules = []
    for _ in range(500):
        m = base.copy()
        m.positions += rng.normal(scale=0.02, size=(15, 3))
        m.calc = SinglePointCalculator(m, energy=-1.0, forces=np.zeros((15, 3)))
        molecules.append(m)
    table = SpeciesTable(["H", "C", "O"])
    batch_structures(molecules[:5], 5.0, table)  # warm up imports
    start = time.perf_counter()
    batch = batch_structures(molecules, 5.0, table, require_labels=True)
    elapsed = time.perf_counter() - start
    assert batch.num_atoms == 7500 and batch.num_edges > 0
    assert elapsed < 1.0, f"batching 500 molecules took {elapsed:.2f} s"


def test_large_structures_are_not_refused():
    grid = np.stack(np.meshgrid(*[np.arange(20)] * 3, indexing="ij"), axis=-1).reshape(-1, 3) * 1.5
    cluster = Atoms(numbers=np.ones(len(grid), dtype=int), positions=grid)
    bulk = Atoms(numbers=np.ones(len(grid), dtype=int), positions=grid, cell=np.eye(3) * 30.0, pbc=True)
    b = batch_structures([cluster, bulk], 2.0, TABLE)
    assert b.n_edges.tolist() == [6 * 8000 - 6 * 400, 6 * 8000]


# ----------------------------------------------------------------------------------------- shared data


@pytest.mark.parametrize(
    ("path", "n_atoms", "elements"),
    [("acac/train_300K.xyz", 15, ("H", "C", "O")), ("3bpa/train_300K.xyz", 27, ("H", "C", "N", "O"))],
)
def test_shared_benchmark_files(path, n_atoms, elements):
    if not (DATA / path).exists():
        pytest.skip(f"shared benchmark data not found at {DATA / path}")
    structures = read_structures(DATA / path)
    assert len(structures) == 500 and all(len(a) == n_atoms for a in structures)
    table = SpeciesTable.from_structures(structures)
    assert table.symbols == elements
    batch = batch_structures(structures, 5.0, table, require_labels=True)
    assert batch.energy.shape == (500,) and batch.forces.shape == (500 * n_atoms, 3)
    assert batch.energy_mask.all() and batch.forces_mask.all()
    assert np.all(batch.energy < 0) and np.isfinite(batch.forces).all()
    assert not batch.pbc.any() and not batch.unit_shifts.any()
    first = labels_from_atoms(structures[0])
    assert first.energy == batch.energy[0] and np.array_equal(first.forces, batch.forces[:n_atoms])
    assert 0 < batch.edge_lengths().min() and batch.edge_lengths().max() < 5.0


@pytest.mark.parametrize("path", ["acac/isolated_atoms.xyz", "3bpa/iso_atoms.xyz", "ethanol/isolated_atoms.xyz"])
def test_shared_isolated_atoms(path):
    if not (DATA / path).exists():
        pytest.skip(f"shared benchmark data not found at {DATA / path}")
    atoms = read_structures(DATA / path)
    batch = batch_structures(atoms, 5.0, SpeciesTable.from_structures(atoms), require_labels=["energy"])
    assert batch.num_edges == 0 and batch.energy_mask.all() and batch.forces is None
    assert len(read_structures(DATA / path, index=0)) == 1


def test_reverse_edge_pairs_group_each_edge_with_its_reverse():
    """Pairs share one length; members and group agree; an edge without a reverse stands alone."""
    from ase.build import bulk

    from mlip.data import edge_vectors, reverse_edge_pairs

    atoms = bulk("Cu", "fcc", a=3.61)  # one atom: all edges are periodic self-images
    atoms2 = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))
    atoms2.rattle(0.05, seed=1)
    for at in (atoms, atoms2):
        table = SpeciesTable(sorted(set(at.numbers.tolist())))
        b = batch_structures([at], 5.0, table)
        members, group = reverse_edge_pairs(b.senders, b.receivers, b.unit_shifts)
        assert len(members) * 2 == b.num_edges and (members >= 0).all()
        r = np.linalg.norm(edge_vectors(b.positions, b.cell, b), axis=1)
        np.testing.assert_array_equal(r[members[:, 0]][group], r)
        assert (group[members[:, 0]] == np.arange(len(members))).all()
        assert (group[members[:, 1]] == np.arange(len(members))).all()
        np.testing.assert_array_equal(np.sort(members.ravel()), np.arange(b.num_edges))
        # reverse edges: same atoms swapped, opposite shift
        i, j = members[:, 0], members[:, 1]
        assert (b.senders[i] == b.receivers[j]).all() and (b.unit_shifts[i] == -b.unit_shifts[j]).all()
    # a hand-made graph where one edge lacks its reverse
    members, group = reverse_edge_pairs(np.array([0, 1, 2]), np.array([1, 0, 0]), np.zeros((3, 3), int))
    assert members.tolist() == [[0, 1], [2, -1]] and group.tolist() == [0, 0, 1]


def test_concatenated_batches_equal_one_batch_and_reuse_the_parts_edge_pairs():
    """Batch.concatenate of single-structure batches gives the arrays of batch_structures on all of
    them, and edge pairs equal to reverse_edge_pairs of the joined edge list (without recomputing)."""
    from ase.build import bulk

    from mlip.data import reverse_edge_pairs

    crystal = bulk("NaCl", "rocksalt", a=5.64)
    crystal.rattle(0.05, seed=3)
    crystal.numbers[:] = [6, 8]
    structures = [_water(), crystal, Atoms("H"), Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]])]
    together = batch_structures(structures, 4.0, TABLE)
    parts = [batch_structures([s], 4.0, TABLE) for s in structures]
    pairs = [p.edge_pairs() for p in parts]
    joined = Batch.concatenate(parts)
    for name, value in together.arrays().items():
        np.testing.assert_array_equal(getattr(joined, name), value, err_msg=name)
    members, group = reverse_edge_pairs(together.senders, together.receivers, together.unit_shifts)
    np.testing.assert_array_equal(joined.edge_pairs().members, members)
    np.testing.assert_array_equal(joined.edge_pairs().group, group)
    assert all(p.edge_pairs() is q for p, q in zip(parts, pairs))  # each part's pairs computed once
    assert Batch.concatenate(parts[:1]) is parts[0]
    with pytest.raises(ValueError, match="at least one batch"):
        Batch.concatenate([])


def test_set_edge_pairs_refuses_pairs_of_another_edge_list():
    batch = batch_structures([_water()], 3.0, TABLE)
    other = batch_structures([_water(), _water()], 3.0, TABLE)
    with pytest.raises(ValueError, match="do not fit a batch"):
        batch.set_edge_pairs(other.edge_pairs())
