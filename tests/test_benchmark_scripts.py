"""Smoke tests of the accuracy benchmark script ``benchmarks/acac.py`` (acetylacetone and 3BPA).

The end-to-end tests train a tiny model (4 channels, L = 1) for one epoch on a handful of structures of
the shared BOTNet data and are skipped when ``../shared/data`` (relative to the repository root) is
absent; the helpers are tested without data.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
needs_data = pytest.mark.skipif(
    not ((DATA / "acac" / "train_300K.xyz").is_file() and (DATA / "3bpa" / "train_mixedT.xyz").is_file()),
    reason=f"benchmark data not found in {DATA}",
)

#: A model and budget small enough for a few seconds per run.
TINY = [
    "--n-train", "6", "--n-valid", "3", "--test-limit", "8", "--epochs", "1", "--channels", "4", "--lmax", "1",
    "--hidden-lmax", "1", "--correlation", "2", "--num-bessel", "4", "--radial-hidden", "8", "--quiet",
]  # fmt: skip


def _load(name: str) -> ModuleType:
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def acac() -> ModuleType:
    return _load("acac")


@pytest.fixture(scope="module")
def helper(acac: ModuleType) -> ModuleType:
    return acac._molecule_benchmark  # the module the script itself uses


def test_replace_section_keeps_the_rest(helper: ModuleType) -> None:
    text = "# Benchmarks\n\nintro\n<!-- acac:start -->\nold\n<!-- acac:end -->\ntail\n"
    out = helper.replace_section(text, "acac", "new")
    assert out == "# Benchmarks\n\nintro\n<!-- acac:start -->\nnew\n<!-- acac:end -->\ntail\n"
    added = helper.replace_section(out, "3bpa", "b")
    assert added.startswith(out.rstrip()) and added.endswith("<!-- 3bpa:start -->\nb\n<!-- 3bpa:end -->\n")
    assert helper.replace_section(added, "3bpa", "c").count("3bpa:start") == 1


def test_binned_profile(helper: ModuleType) -> None:
    x = np.array([-7.0, -6.0, -1.0, 1.0, 2.0, 12.0])
    ref = np.array([1.0, 3.0, 0.0, 2.0, 4.0, 9.0])
    prof = helper.binned_profile(x, ref, ref + 0.5, 5.0, 2, "angle")
    assert prof.centres.tolist() == [-7.5, 2.5]  # bins [-10, -5) and [0, 5); [-5, 0) and [10, 15) hold one each
    assert prof.counts.tolist() == [2, 2]
    assert np.allclose(prof.ref, [2.0, 3.0])
    m = prof.metrics()
    assert m["profile_rmse_mev"] == pytest.approx(0.0, abs=1e-9) and m["profile_ref_span_mev"] == pytest.approx(1000)
    assert helper.binned_profile(x, ref, ref, 5.0, 3, "angle") is None


def test_missing_data_is_a_clean_error(acac: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = acac.main(["--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out"), "--no-docs"])
    assert code == 1
    assert "does not exist" in capsys.readouterr().err


@needs_data
def test_acac_end_to_end_and_resume(acac: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "acac"
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- inference:start -->\nkeep me\n<!-- inference:end -->\n")
    args = [*TINY, "--data-dir", str(DATA), "--output-dir", str(out), "--docs-file", str(docs)]
    assert acac.main([*args, "--profile-min-count", "1"]) == 0
    for name in ("checkpoint.npz", "best.npz", "log.csv", "learning_curve.png"):
        assert (out / "run" / name).is_file(), name
    for name in ("test_metrics.json", "test_predictions.csv", "parity.png", "energy_profile.png", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and summary["status"] == "completed"
    assert summary["backend"]["description"].startswith("numpy") and "compiled_kernels" in summary["backend"]
    assert summary["data"]["n_train"] == 6 and summary["data"]["n_valid"] == 3 and summary["data"]["n_test"] == 8
    assert summary["model"]["channels"] == 4 and summary["training"]["forces_weight"] == 10.0
    test = summary["test_metrics"]["all"]
    for key in ("energy_rmse_mev", "energy_mae_mev", "energy_rmse_mev_atom", "force_rmse_mev_A", "force_mae_mev_A"):
        assert np.isfinite(test[key]) and test[key] > 0, key
    assert summary["seconds_per_epoch"] > 0
    assert summary["profile"]["metrics"]["profile_bins"] >= 2
    text = docs.read_text()
    assert "keep me" in text and text.count("<!-- acac:start -->") == 1
    # the figures are copied next to the docs, so the links hold wherever --output-dir is
    assert "](img/acac_parity.png)" in text and "](img/acac_learning_curve.png)" in text
    for key in ("parity", "learning_curve", "energy_profile"):
        assert (tmp_path / "img" / f"acac_{key}.png").read_bytes()[:4] == b"\x89PNG", key

    assert acac.main([*args, "--resume", "--epochs", "2"]) == 0  # continues the same run to epoch 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_done"] == 2 and len(summary["history"]) == 2 and len(summary["commands"]) == 2
    assert docs.read_text().count("<!-- acac:start -->") == 1
    assert acac.main([*args, "--epochs", "2"]) == 1  # a run is there: neither --resume nor --overwrite
    assert acac.main([*args, "--eval-only"]) == 0  # tests the kept model again without training
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "evaluated only" and summary["epochs_done"] == 2


@needs_data
def test_3bpa_excludes_training_structures_and_skips_the_profile(
    acac: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "3bpa"
    docs = tmp_path / "benchmarks.md"
    code = acac.main(
        [*TINY, "--molecule", "3bpa", "--data-dir", str(DATA), "--output-dir", str(out), "--docs-file", str(docs)]
    )
    assert code == 0
    assert "no energy profile for 3BPA" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["n_test_excluded"] > 0  # train_mixedT.xyz repeats some train_300K.xyz structures
    assert summary["profile"]["skipped"] and not (out / "energy_profile.png").exists()
    assert (out / "parity.png").is_file() and (out / "run" / "best.npz").is_file()
    assert docs.read_text().startswith("# Benchmarks") and "<!-- 3bpa:start -->" in docs.read_text()
    img = tmp_path / "img"
    assert (img / "3bpa_parity.png").is_file() and not (img / "3bpa_energy_profile.png").exists()


# ------------------------------------------------------------------ the installed package, never the tree


@pytest.mark.parametrize("name", ["inference.py", "acac.py", "_molecule_benchmark.py", "gpu_benchmark.py", "tensor_products.py"])
def test_scripts_do_not_put_the_source_tree_on_sys_path(name: str) -> None:
    """An uncompiled checkout must never shadow the installed package (950 ms instead of 134 ms, silently)."""
    text = (ROOT / "benchmarks" / name).read_text()
    assert "sys.path.insert(0, str(ROOT))" not in text and "sys.path.append(str(ROOT))" not in text


_FAKE_MISSING = (
    "import runpy, sys\n"
    "from cartesian_irreps.runtime import kernels\n"
    "kernels._try_import = lambda name: (False, 'No module named ' + repr(name))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.mark.parametrize("name", ["inference.py", "acac.py"])
def test_benchmarks_refuse_to_time_the_reference(name: str, tmp_path: Path) -> None:
    """Without compiled kernels a benchmark stops with the reason and the fix (or --allow-reference)."""
    script = str(ROOT / "benchmarks" / name)
    args = [sys.executable, "-c", _FAKE_MISSING, script, "--output-dir" if name == "acac.py" else "--output"]
    args.append(str(tmp_path / "out"))
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "NumPy reference" in last and "No module named" in last
    assert not (tmp_path / "out").exists()


def test_inference_json_records_the_backend(tmp_path: Path) -> None:
    out = tmp_path / "inference.json"
    args = ["--systems", "cu256", "--dtypes", "float64", "--repeats", "1", "--warmup", "0", "--no-scaling"]
    args += ["--no-docs", "--output", str(out), "--threads", "1", "--allow-reference"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inference.py"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    backend = json.loads(out.read_text())["backend"]
    assert backend["array_module"] == "numpy" and backend["description"].startswith("numpy")
    assert set(backend["compiled_kernels"]) == {"fused", "monomials"}
    assert "backend: numpy" in proc.stderr
