"""The built-in EMT data set: labels are EMT's, sampling is seeded and sane, files round-trip, splits."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import voigt_6_to_full_3x3_stress
from hypothesis import given
from hypothesis import strategies as st

from mlip.data import SpeciesTable, batch_structures, labels_from_atoms, read_structures
from mlip.reference_data import isolated_atom_energies, make_emt_dataset, split, write_dataset

SMALL = dict(
    n_structures=12,
    temperatures=(300.0, 900.0),
    seed=1,
    steps_between=5,
    equilibration_steps=40,
    strained_fraction=0.25,
)


@pytest.fixture(scope="module")
def small() -> list:
    return make_emt_dataset(**SMALL)


def _fingerprint(structures: list) -> list:
    return [(a.numbers.tolist(), a.positions.tolist(), a.cell.array.tolist(), a.info["energy"]) for a in structures]


# ----------------------------------------------------------------------------------- contents


def test_counts_composition_and_metadata(small):
    assert len(small) == 12
    for a in small:
        assert len(a) == 32 and a.pbc.all()
        assert Counter(a.get_chemical_symbols()) == {"Cu": 24, "Au": 8}
    by_t = Counter(a.info["temperature"] for a in small)
    assert by_t == {300.0: 6, 900.0: 6}
    # round(0.25 * 12) = 3 strained structures, shared 2 / 1 between the two runs
    strained = Counter(a.info["temperature"] for a in small if a.info["config_type"] == "md_strained")
    assert strained == {300.0: 2, 900.0: 1}
    assert {a.info["config_type"] for a in small} == {"md", "md_strained"}
    steps = [a.info["md_step"] for a in small if a.info["temperature"] == 300.0]
    assert steps == [40 + 5 * (k + 1) for k in range(6)]


def test_labels_are_emt_and_stored_both_ways(small):
    for a in small:
        assert isinstance(a.calc, SinglePointCalculator)
        ref = a.copy()
        ref.calc = EMT()
        e, f, s = ref.get_potential_energy(), ref.get_forces(), ref.get_stress(voigt=True)
        assert a.info["energy"] == pytest.approx(e, abs=1e-10)
        np.testing.assert_allclose(a.arrays["forces"], f, atol=1e-10)
        np.testing.assert_allclose(a.info["stress"], s, atol=1e-12)
        assert a.calc.results["energy"] == a.info["energy"]
        np.testing.assert_array_equal(a.calc.results["forces"], a.arrays["forces"])
        np.testing.assert_array_equal(a.calc.results["stress"], a.info["stress"])
        np.testing.assert_allclose(f.sum(axis=0), 0.0, atol=1e-10)  # EMT conserves momentum
        lab = labels_from_atoms(a)
        assert lab.energy == a.info["energy"]
        np.testing.assert_array_equal(lab.stress, voigt_6_to_full_3x3_stress(a.info["stress"]))


def test_strained_cells_are_isotropic_and_bounded(small):
    for a in small:
        a0 = a.info["lattice_constant"]
        ideal = np.diag([2 * a0] * 3)  # 2x2x2 cubic fcc cells
        strain = a.info["strain"]
        if a.info["config_type"] == "md_strained":
            assert 0 < abs(strain) <= 0.02
        else:
            assert strain == 0.0
        np.testing.assert_allclose(a.cell.array, ideal * (1 + strain), atol=1e-12)


def test_batches_with_all_labels(small):
    batch = batch_structures(small, 4.0, SpeciesTable(("Cu", "Au")), require_labels=("energy", "forces", "stress"))
    assert batch.num_structures == 12 and batch.num_atoms == 12 * 32
    np.testing.assert_array_equal(batch.energy, [a.info["energy"] for a in small])
    np.testing.assert_array_equal(batch.stress[3], voigt_6_to_full_3x3_stress(small[3].info["stress"]))


def test_hotter_runs_have_higher_energy(small):
    def mean_energy(t: float) -> float:
        return float(np.mean([a.info["energy"] / len(a) for a in small if a.info["temperature"] == t]))

    # equipartition: about 3/2 k_B (900 - 300) K = 78 meV/atom more potential energy
    assert 0.04 < mean_energy(900.0) - mean_energy(300.0) < 0.12


def test_langevin_reaches_the_target_temperature():
    data = make_emt_dataset(n_structures=30, temperatures=(600.0,), seed=3, strained_fraction=0.0)
    kinetic = np.array([a.info["kinetic_temperature"] for a in data])
    # 32 atoms fluctuate by ~14 % per snapshot; the mean over 30 snapshots is within ~5 %. A friction
    # mistaken for ASE time units (10x weaker) leaves the run still heating up, near 500 K here.
    assert 540 < kinetic.mean() < 700


def test_lattice_constant_is_emt_zero_pressure():
    a = make_emt_dataset(n_structures=1, temperatures=(300.0,), elements=("Cu",), equilibration_steps=0)[0]
    a0 = a.info["lattice_constant"]
    assert Counter(a.get_chemical_symbols()) == {"Cu": 32}
    ideal = bulk("Cu", "fcc", a=a0, cubic=True)
    ideal.calc = EMT()
    np.testing.assert_allclose(ideal.get_stress(voigt=True), 0.0, atol=1e-6)
    assert 3.55 < a0 < 3.62  # EMT's Cu, close to experiment (3.61 Å)


def test_alloy_lattice_constant_lies_between_the_elements(small):
    for a in small:
        assert 3.55 < a.info["lattice_constant"] < 4.10


def test_rattle_displaces_the_labelled_copy_only():
    args = dict(n_structures=1, temperatures=(300.0,), seed=5, strained_fraction=0.0, equilibration_steps=10)
    plain = make_emt_dataset(**args)[0]
    rattled = make_emt_dataset(**args, rattle=0.05)[0]
    d = rattled.positions - plain.positions  # same trajectory up to the first snapshot
    assert 0.035 < d.std() < 0.065
    assert rattled.info["energy"] != plain.info["energy"]


# ----------------------------------------------------------------------------------- randomness


def test_deterministic_for_a_seed_and_global_rng_untouched():
    # the legacy global state is what a careless np.random / ASE default would consume
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    args = dict(n_structures=4, temperatures=(500.0, 800.0), steps_between=3, equilibration_steps=5)
    first = make_emt_dataset(**args, seed=7, strained_fraction=0.5)
    second = make_emt_dataset(**args, seed=7, strained_fraction=0.5)
    other = make_emt_dataset(**args, seed=8, strained_fraction=0.5)
    assert _fingerprint(first) == _fingerprint(second)
    assert _fingerprint(first) != _fingerprint(other)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_progress_callback():
    calls = []
    make_emt_dataset(
        n_structures=5,
        temperatures=(300.0, 600.0),
        steps_between=1,
        equilibration_steps=0,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(k, 5) for k in range(1, 6)]


def test_more_temperatures_than_structures():
    data = make_emt_dataset(n_structures=2, temperatures=(300.0, 600.0, 900.0), steps_between=1, equilibration_steps=0)
    assert [a.info["temperature"] for a in data] == [300.0, 600.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_structures=0),
        dict(elements=("Fe", "Cu")),
        dict(elements=("Cu", "Cu")),
        dict(elements=("Cu", "Au", "Ag")),
        dict(composition=1.5),
        dict(size=(0, 1, 1)),
        dict(temperatures=()),
        dict(temperatures=(-5.0,)),
        dict(steps_between=0),
        dict(rattle=-0.1),
        dict(strained_fraction=2.0),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_emt_dataset(**kwargs)


@pytest.mark.slow
def test_default_dataset():
    data = make_emt_dataset()
    assert len(data) == 120
    assert Counter(a.info["temperature"] for a in data) == {300.0: 40, 600.0: 40, 900.0: 40}
    assert Counter(a.info["config_type"] for a in data) == {"md": 108, "md_strained": 12}
    assert len({a.info["energy"] for a in data}) == 120


# ----------------------------------------------------------------------------------- files


def test_write_and_read_back(small, tmp_path):
    path = write_dataset(small, tmp_path / "sub" / "emt.xyz")
    assert path.is_file()
    back = read_structures(path)
    assert len(back) == len(small)
    for a, b in zip(small, back):
        la, lb = labels_from_atoms(a), labels_from_atoms(b)
        assert lb.energy == pytest.approx(la.energy, abs=1e-10)
        np.testing.assert_allclose(lb.forces, la.forces, atol=1e-7)
        np.testing.assert_allclose(lb.stress, la.stress, atol=1e-10)
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-7)
        assert b.info["config_type"] == a.info["config_type"]
        assert b.info["temperature"] == a.info["temperature"]
    # the originals keep their calculator and labels
    assert isinstance(small[0].calc, SinglePointCalculator) and "energy" in small[0].info


def test_write_labels_held_by_a_calculator_only(tmp_path):
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a.calc = EMT()
    e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
    a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
    b = read_structures(write_dataset([a], tmp_path / "one.xyz"))[0]
    lab = labels_from_atoms(b)
    assert lab.energy == pytest.approx(e, abs=1e-10)
    np.testing.assert_allclose(lab.stress, voigt_6_to_full_3x3_stress(s), atol=1e-10)


# ----------------------------------------------------------------------------------- reference energies


def test_isolated_atom_energies():
    e = isolated_atom_energies(("Au", "Cu"))
    assert list(e) == ["Au", "Cu"]
    # EMT's zero is the fcc crystal, so a lone atom costs about the cohesive energy
    assert e["Cu"] == pytest.approx(3.51, abs=0.01)
    assert e["Au"] == pytest.approx(3.80, abs=0.01)
    assert isolated_atom_energies(("Cu",), box=30.0)["Cu"] == pytest.approx(e["Cu"], abs=1e-12)
    with pytest.raises(ValueError, match="EMT"):
        isolated_atom_energies(("Fe",))


# ----------------------------------------------------------------------------------- split


def test_split_sizes_and_partition():
    items = list(range(120))
    train, valid, test = split(items)
    assert (len(train), len(valid), len(test)) == (96, 12, 12)
    assert sorted(train + valid + test) == items
    assert train != items[:96]  # shuffled
    assert split(items) == (train, valid, test)
    assert split(items, seed=1) != (train, valid, test)


def test_split_small_sets_keep_every_part():
    assert [len(p) for p in split(list(range(5)))] == [3, 1, 1]
    assert [len(p) for p in split(list(range(2)), (0.5, 0.5))] == [1, 1]
    assert [len(p) for p in split([], (0.8, 0.2))] == [0, 0]
    assert [len(p) for p in split(list(range(10)), (1.0, 0.0))] == [10, 0]


@pytest.mark.parametrize("fractions", [(), (0.5, 0.4), (1.2, -0.2), (float("nan"), 1.0), (0.5, 0.5, 0.1)])
def test_split_bad_fractions(fractions):
    with pytest.raises(ValueError, match="fractions"):
        split(list(range(10)), fractions)


@given(
    n=st.integers(0, 300),
    weights=st.lists(st.integers(0, 10), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_properties(n, weights, seed):
    fractions = [w / sum(weights) for w in weights]
    parts = split(list(range(n)), fractions, seed=seed)
    assert len(parts) == len(fractions)
    assert sorted(x for p in parts for x in p) == list(range(n))
    positive = sum(f > 0 for f in fractions)
    for p, f in zip(parts, fractions):
        if f == 0:
            assert p == []
        elif n >= positive:
            assert p
        if n >= 10 * positive:
            assert abs(len(p) - f * n) <= positive


def test_fcc_cu_cell_is_the_rattled_fcc_supercell():
    from ase.build import bulk

    from mlip.reference_data import fcc_cu_cell

    ideal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 3))
    atoms = fcc_cu_cell((2, 1, 3), stdev=0.05, seed=3)
    assert len(atoms) == 4 * 2 * 1 * 3 and set(atoms.get_chemical_symbols()) == {"Cu"}
    np.testing.assert_allclose(atoms.cell.array, ideal.cell.array)
    assert atoms.pbc.all()
    d = atoms.positions - ideal.positions
    assert 0.02 < d.std() < 0.08  # rattled by ~0.05 Å, not left ideal
    np.testing.assert_array_equal(atoms.positions, fcc_cu_cell((2, 1, 3), stdev=0.05, seed=3).positions)
    np.testing.assert_allclose(
        fcc_cu_cell((1, 1, 1), stdev=0.0).positions, bulk("Cu", "fcc", a=3.61, cubic=True).positions
    )


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"repeat": (0, 1, 1)}, "repeat"),
        ({"repeat": (1, 1)}, "repeat"),
        ({"repeat": (1.5, 1, 1)}, "repeat"),
        ({"a": -3.6}, "lattice constant"),
        ({"stdev": -0.1}, "stdev"),
    ],
)
def test_fcc_cu_cell_rejects_bad_arguments(kw, match):
    from mlip.reference_data import fcc_cu_cell

    with pytest.raises(ValueError, match=match):
        fcc_cu_cell(**kw)
