"""``mlip eval`` as a MACE user expects it, and every bad or partial-label case named.

Cases: unlabelled structures (predictions only), every info/arrays key kept with the reference keys
unrenamed, predictions under a prefix, forces missing in some structures (warning with counts, metrics
over the rest), a misspelled explicit --forces-key (error naming the keys present), errors per
config_type, --device cupy without CuPy, the backend line. References are independent: the model's own
:func:`mlip.evaluation.predict` and :func:`mlip.metrics.compute_metrics` on hand-picked subsets.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from mlip.cli import main
from mlip.data import read_structures
from mlip.evaluation import NO_LABELS, evaluate_file, evaluate_structures, predict
from mlip.metrics import compute_metrics
from mlip.model import ModelConfig, Potential
from mlip.reference_data import make_emt_dataset, write_dataset


@pytest.fixture(scope="module")
def pot() -> Potential:
    cfg = ModelConfig(elements=("Cu", "Au"), channels=3, lmax=1, correlation=2, cutoff=4.0, radial_hidden=(4,))
    return Potential.create(cfg, seed=3)


@pytest.fixture(scope="module")
def model_file(pot: Potential, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    pot.save(path)
    return path


@pytest.fixture(scope="module")
def structures() -> list[Atoms]:
    """6 labelled EMT structures of 8 atoms, config_type a/b/a/b/a/b, extra info and arrays keys."""
    out = make_emt_dataset(6, size=(1, 1, 2), seed=4, equilibration_steps=5, steps_between=2)
    for k, a in enumerate(out):
        a.info["config_type"] = "ab"[k % 2]
        a.info["temperature"] = 300.0 + k
        a.info["REF_energy"] = float(a.info.get("energy", k))
        a.arrays["tag_array"] = np.arange(len(a), dtype=float) + k
    return out


def _file(structures: list[Atoms], path: Path) -> Path:
    write_dataset(structures, path)
    return path


def _unlabelled(structures: list[Atoms]) -> list[Atoms]:
    return [Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc) for a in structures]


def test_unlabelled_structures_get_predictions_only(pot, structures, tmp_path):
    bare = _unlabelled(structures)
    for a in bare:
        a.info["config_type"] = "x"
    ref = predict(pot, bare)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is missing that was asked for: no warning
        res = evaluate_file(pot, bare, tmp_path, "u")
    assert res.metrics == {"n_structures": 6, "n_atoms": 48, "reference labels": NO_LABELS}
    assert not res.labelled and res.groups == {} and "parity" not in res.files
    back = read_structures(tmp_path / "u_predictions.extxyz")
    np.testing.assert_allclose([b.info["mlip_energy"] for b in back], ref.energy, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate([b.arrays["mlip_forces"] for b in back]), ref.forces, atol=1e-7)  # %.8f
    assert all(b.info["config_type"] == "x" for b in back)
    rows = (tmp_path / "u_predictions.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[1].split(",")[3] == ""  # no reference energy column value


def test_output_keeps_every_key_and_never_renames_the_reference(model_file, structures, tmp_path, capsys):
    data = _file(structures, tmp_path / "in.xyz")
    out = tmp_path / "out"
    args = ["eval", str(model_file), str(data), "--output", str(out), "--pred-prefix", "ict_", "--no-plot"]
    assert main(args) == 0
    inp, back = read_structures(data), read_structures(out / "eval_predictions.extxyz")
    assert len(back) == len(inp)
    for a, b in zip(inp, back):
        assert set(a.info) <= set(b.info) and set(a.arrays) <= set(b.arrays)
        for k, v in a.info.items():
            assert np.all(b.info[k] == v), k
        np.testing.assert_array_equal(b.arrays["tag_array"], a.arrays["tag_array"])
        # the reference labels keep their names and values (ASE holds them in the calculator)
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-12)
        assert "ict_energy" in b.info and b.arrays["ict_forces"].shape == (8, 3)
        assert "mlip_energy" not in b.info and "pred_energy" not in b.info


def test_forces_missing_in_some_structures_warns_with_counts(pot, structures):
    part = [a.copy() for a in structures]
    for a, src in zip(part, structures):
        a.info["energy"] = src.get_potential_energy()
        a.arrays["forces"] = src.get_forces()
    for k in (1, 4):
        del part[k].arrays["forces"]
    with pytest.warns(
        UserWarning, match=r"forces \('forces'\) missing in 2 of 6 structures; forces metrics over the other 4"
    ):
        res = evaluate_structures(pot, part)
    keep = [0, 2, 3, 5]
    pred = predict(pot, part)
    ref_e = compute_metrics(pred.energy, [a.info["energy"] for a in part], pred.n_atoms)
    ref = compute_metrics(
        pred.energy[keep],
        pred.energy[keep],
        pred.n_atoms[keep],
        np.concatenate([pred.forces_of(k) for k in keep]),
        np.concatenate([part[k].arrays["forces"] for k in keep]),
    )
    assert res.metrics["force_rmse_mev_A"] == pytest.approx(ref["force_rmse_mev_A"], rel=1e-12)
    assert res.metrics["energy_rmse_mev"] == pytest.approx(ref_e["energy_rmse_mev"], rel=1e-12)
    assert res.metrics["n_with_forces"] == 4 and res.metrics["n_with_energy"] == 6
    assert res.has_forces.tolist() == [True, False, True, True, False, True]


def test_misspelled_forces_key_is_an_error_naming_the_keys(model_file, structures, tmp_path, capsys):
    data = _file(structures, tmp_path / "in.xyz")
    args = ["eval", str(model_file), str(data), "--output", str(tmp_path / "o"), "--forces-key", "force"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: no structure has forces under the key 'force'; keys present:")
    assert "forces" in err[-1] and "config_type" in err[-1]
    assert not (tmp_path / "o").exists()  # nothing written


def test_default_forces_key_absent_everywhere_warns(pot, structures):
    only_e = _unlabelled(structures)
    for a, src in zip(only_e, structures):
        a.info["energy"] = src.get_potential_energy()
    with pytest.warns(UserWarning, match=r"missing in 6 of 6 structures; no forces metrics"):
        res = evaluate_structures(pot, only_e)
    assert res.metrics["force_rmse_mev_A"] is None and res.metrics["energy_rmse_mev"] > 0


def test_errors_per_config_type(pot, structures, model_file, tmp_path, capsys):
    res = evaluate_structures(pot, structures)
    assert res.group_key == "config_type" and list(res.groups) == ["a", "b"]
    for name, idx in (("a", [0, 2, 4]), ("b", [1, 3, 5])):
        alone = evaluate_structures(pot, [structures[k] for k in idx], group_key=None).metrics
        for key in ("energy_rmse_mev_atom", "force_rmse_mev_A", "force_mae_mev_A", "n_atoms"):
            assert res.groups[name][key] == pytest.approx(alone[key], rel=1e-12), (name, key)
    data = _file(structures, tmp_path / "in.xyz")
    assert main(["eval", str(model_file), str(data), "--output", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "errors per config_type:" in out
    saved = json.loads((tmp_path / "o" / "eval_metrics.json").read_text())
    assert set(saved["by_config_type"]) == {"a", "b"}
    assert (tmp_path / "o" / "eval_parity.png").stat().st_size > 0


def test_backend_line_is_printed(model_file, structures, tmp_path, capsys):
    data = _file(structures[:2], tmp_path / "in.xyz")
    assert main(["eval", str(model_file), str(data), "--output", str(tmp_path / "o"), "--no-plot"]) == 0
    assert capsys.readouterr().err.startswith("backend: numpy")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
@pytest.mark.parametrize("command", ["eval", "md"])
def test_device_cupy_without_cupy_is_one_line(command, model_file, structures, tmp_path, capsys):
    data = _file(structures[:1], tmp_path / "in.xyz")
    assert main([command, str(model_file), str(data), "--output", str(tmp_path / "o"), "--device", "cupy"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "CuPy" in err[0] and "pip install" in err[0]


def test_partial_forces_warning_on_the_command_line(model_file, structures, tmp_path, capsys):
    part = [a.copy() for a in structures]
    for k, (a, src) in enumerate(zip(part, structures)):
        a.info["energy"] = src.get_potential_energy()
        a.arrays["forces"] = src.get_forces()
        if k in (0, 3, 5):
            del a.arrays["forces"]
    data = tmp_path / "part.xyz"
    write_dataset(part, data)
    assert main(["eval", str(model_file), str(data), "--output", str(tmp_path / "o"), "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert "warning: forces ('forces') missing in 3 of 6 structures; forces metrics over the other 3" in captured.err
    assert "force_rmse_mev_A" in captured.out
    saved = json.loads((tmp_path / "o" / "eval_metrics.json").read_text())
    assert saved["n_with_forces"] == 3 and saved["force_rmse_mev_A"] > 0 and len(saved["warnings"]) == 1


def test_missing_kernels_are_announced(model_file, structures, tmp_path, capsys, monkeypatch):
    from cartesian_irreps.runtime import kernels

    monkeypatch.setattr(kernels, "_try_import", lambda name: (False, f"No module named {name!r}"))
    data = _file(structures[:1], tmp_path / "in.xyz")
    assert main(["eval", str(model_file), str(data), "--output", str(tmp_path / "o"), "--no-plot"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("backend: numpy reference (compiled kernels missing: fused: No module named")
    assert err[1].startswith("warning: compiled kernels fused, monomials are missing")
