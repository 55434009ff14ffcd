"""Per-element reference energies (E0) and the data checks of training: each bad-input case by name."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from mlip.data import SpeciesTable, batch_structures
from mlip.reference_data import make_emt_dataset, write_dataset
from mlip.training import DataError, TrainConfig, Trainer, prepare_data, reference_energies
from mlip.training.energies import fit_e0

TINY_MODEL = {"channels": 4, "lmax": 1, "hidden_lmax": 1, "correlation": 2, "cutoff": 4.0, "num_bessel": 4}
TINY_MODEL["radial_hidden"] = [8]


@pytest.fixture(scope="module")
def mixed() -> list[Atoms]:
    """Cu6Au2 and Cu4Au4 structures (two compositions: least squares separates Cu and Au)."""
    a = make_emt_dataset(5, size=(1, 1, 2), seed=3, equilibration_steps=10, steps_between=3)
    b = make_emt_dataset(5, size=(1, 1, 2), seed=4, composition=0.5, equilibration_steps=10, steps_between=3)
    return a + b


def config(tmp_path, **kw) -> TrainConfig:
    base = dict(model=dict(TINY_MODEL), epochs=1, batch_size=2, output_dir=str(tmp_path / "run"), progress=False)
    return TrainConfig(**{**base, **kw})


def with_energies(structures: list[Atoms], e0: dict[str, float], noise: float = 0.0) -> list[Atoms]:
    """Copies whose energy is exactly Σ_i e0[Z_i] (+ a known per-structure offset)."""
    out = []
    for k, a in enumerate(structures):
        b = Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=True)
        b.info["energy"] = sum(e0[s] for s in b.get_chemical_symbols()) + noise * (-1) ** k
        b.arrays["forces"] = a.arrays["forces"] if "forces" in a.arrays else a.get_forces()
        out.append(b)
    return out


def test_least_squares_recovers_known_per_element_energies_on_two_compositions(tmp_path, mixed):
    labelled = with_energies(mixed, {"Cu": -3.25, "Au": -1.5})
    data = prepare_data(config(tmp_path), labelled[::2], labelled[1::2])  # default: least squares
    assert np.allclose(data.model_config.atomic_energies, (-3.25, -1.5), atol=1e-9)
    same = prepare_data(config(tmp_path, e0="average"), labelled[::2], labelled[1::2])  # MACE's: the same fit
    assert np.allclose(same.model_config.atomic_energies, (-3.25, -1.5), atol=1e-9) and not same.notes


def test_least_squares_on_a_single_composition_is_an_error_naming_the_way_out(tmp_path, mixed):
    one = [a for a in mixed if a.get_chemical_formula() == mixed[0].get_chemical_formula()]
    with pytest.raises(DataError, match=r"rank 1 < 2 elements \(1 distinct composition.*--e0 FILE.*--e0 average"):
        prepare_data(config(tmp_path), one[:3], one[3:])


def test_average_on_a_single_composition_gives_every_element_the_mean_energy_per_atom_with_a_warning(tmp_path, mixed):
    one = [a for a in mixed if a.get_chemical_formula() == mixed[0].get_chemical_formula()]
    data = prepare_data(config(tmp_path, e0="average"), one[:3], one[3:])
    mean = np.mean([a.info["energy"] / len(a) for a in one[:3]])
    assert np.allclose(data.model_config.atomic_energies, (mean, mean), rtol=1e-12)
    assert len(data.notes) == 1 and "mean energy per atom of the 3 training structures" in data.notes[0]


def test_isolated_atom_energies_are_used_exactly_as_given_and_shifted_only_when_asked(tmp_path, mixed):
    labelled = with_energies(mixed, {"Cu": -3.25, "Au": -1.5}, noise=0.01)
    iso = {"Cu": -3.0, "Au": -1.0}
    given = prepare_data(config(tmp_path), labelled[::2], labelled[1::2], iso)
    assert given.model_config.atomic_energies == (-3.0, -1.0)
    shifted = prepare_data(config(tmp_path, e0_shift=True), labelled[::2], labelled[1::2], iso)
    train = labelled[::2]
    table = SpeciesTable(["Cu", "Au"])
    counts = np.array([[np.sum(a.numbers == 29), np.sum(a.numbers == 79)] for a in train], float)
    n = counts.sum(1)
    e = np.array([a.info["energy"] for a in train])
    a = counts / n[:, None]
    delta = np.linalg.solve(a.T @ a + np.eye(2), a.T @ ((e - counts @ np.array([-3.0, -1.0])) / n))
    assert np.allclose(shifted.model_config.atomic_energies, np.array([-3.0, -1.0]) + delta)
    assert not np.allclose(delta, 0)
    e0, mu = reference_energies(batch_structures(train, 4.0, table), table, iso)
    assert np.array_equal(e0, mu)


def test_isolated_atoms_file_and_e0_mode_together_is_an_error():
    with pytest.raises(ValueError, match=r"either isolated_atoms_file .* or e0 = 'average', not both"):
        TrainConfig(isolated_atoms_file="iso.xyz", e0="average")
    with pytest.raises(ValueError, match=r"e0 must be one of \['average', 'least-squares'\] or null"):
        TrainConfig(e0="mean")


def test_an_element_absent_from_the_training_energies_is_an_error_not_zero(tmp_path, mixed):
    table = SpeciesTable(["Cu", "Au", "Ag"])
    batch = batch_structures(mixed, 4.0, table)
    with pytest.raises(DataError, match="no training structure with an energy contains Ag"):
        reference_energies(batch, table)
    counts = np.array([[6.0, 2.0, 0.0], [4.0, 4.0, 0.0]])
    e0, note = fit_e0(counts, np.array([1.0, 2.0]), table, "average")  # "average" falls back, with a warning
    assert np.allclose(e0, np.mean([1.0 / 8, 2.0 / 8])) and "Ag" in note


def test_an_element_seen_only_in_validation_data_is_an_error_naming_it_and_the_file(tmp_path, mixed):
    train = write_dataset(mixed[:6], tmp_path / "train.xyz")
    odd = mixed[6].copy()
    odd.numbers[0] = 47  # Ag
    valid = write_dataset([mixed[7], odd], tmp_path / "valid.xyz")
    with pytest.raises(
        DataError, match=r"structure 1 of .*valid\.xyz contains element\(s\) Ag .*not in.*training data"
    ):
        Trainer(config(tmp_path, train_file=str(train), valid_file=str(valid)))
    assert not (tmp_path / "run").exists()


def test_an_element_of_a_test_file_outside_the_model_is_an_error_naming_it_and_the_file(tmp_path, mixed):
    odd = mixed[8].copy()
    odd.numbers[:] = 78  # Pt
    test = write_dataset([mixed[9], odd], tmp_path / "test.xyz")
    with pytest.raises(DataError, match=r"structure 1 of .*test\.xyz contains element\(s\) Pt"):
        prepare_data(config(tmp_path, test_files=[str(test)]), mixed[:6], mixed[6:8])
    bare = Atoms(numbers=mixed[9].numbers, positions=mixed[9].positions, cell=mixed[9].cell, pbc=True)
    write_dataset([mixed[9], bare], tmp_path / "nolabel.xyz")
    with pytest.raises(DataError, match=r"structure 1 of .*nolabel\.xyz has no energy"):
        prepare_data(config(tmp_path, test_files=[str(tmp_path / "nolabel.xyz")]), mixed[:6], mixed[6:8])


def test_a_training_set_without_edges_is_an_error_with_the_smallest_distance(tmp_path, mixed):
    cfg = config(tmp_path, model={**TINY_MODEL, "cutoff": 1.0})
    d = min(float(np.min(a.get_all_distances(mic=True)[~np.eye(len(a), dtype=bool)])) for a in mixed[:6])
    with pytest.raises(DataError, match=rf"within the cutoff 1 Å.*smallest interatomic distance is {d:.4g} Å"):
        prepare_data(cfg, mixed[:6], mixed[6:])


def test_error_messages_name_the_position_in_the_file_after_the_shuffle(tmp_path, mixed):
    structures = with_energies(mixed, {"Cu": -3.0, "Au": -1.0})
    del structures[6].arrays["forces"]  # only the 7th structure of the file (position 6) lacks forces
    path = write_dataset(structures, tmp_path / "train.xyz")
    for seed in (0, 1, 2):  # wherever the shuffle puts it (training or validation part)
        with pytest.raises(DataError, match=r"structure 6 of .*train\.xyz has no forces"):
            Trainer(config(tmp_path, train_file=str(path), valid_fraction=0.3, seed=seed))


def test_a_data_path_that_is_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="is a folder, not a file of structures"):
        Trainer(config(tmp_path, train_file=str(tmp_path)))
