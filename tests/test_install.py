"""The installed package: compiled kernels, package data, the backend report, no source-tree shadowing.

CI runs this suite against a non-editable install from a folder outside the source tree (``.ci/test``);
these tests check that what users get is complete and that a slow or shadowed set-up is never silent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest

import cartesian_irreps
from cartesian_irreps import cli
from cartesian_irreps.generator import emit, strategy
from cartesian_irreps.runtime import kernels

ROOT = Path(__file__).resolve().parents[1]


def _have_compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


@pytest.mark.skipif(not _have_compiler(), reason="no C compiler: the package installs without compiled kernels")
def test_installed_package_has_both_compiled_kernels():
    from cartesian_irreps.runtime.fused import extension_available
    from cartesian_irreps.runtime.monomials import kernel_available

    st = kernels.kernel_status()
    assert st.available == {"fused": True, "monomials": True}, st.reasons
    assert extension_available() and kernel_available()
    assert kernels.describe_backend().startswith("numpy + compiled C kernels (fused, monomials)")


def test_package_data_is_installed():
    """generate --check reads the tuning data; the C sources ship with the package."""
    pkg = Path(cartesian_irreps.__file__).parent
    assert strategy.TUNING_PATH.is_file() and strategy.load_tuning()["timings"]
    for name in ("fused.c", "monomials.c"):
        assert (pkg / "_kernels" / name).is_file(), name
    for name in ("couplings.py", "harmonics.py", "plans.py"):
        assert (emit.GENERATED_DIR / name).is_file(), name


def test_tests_do_not_put_the_source_tree_on_sys_path():
    """Under a non-editable install the package comes from site-packages, and the checkout is not on sys.path."""
    st = kernels.kernel_status()
    if st.source_tree:
        pytest.skip(f"editable install or source checkout in use ({st.package_dir})")
    paths = {os.path.abspath(p or os.getcwd()) for p in sys.path}
    assert str(ROOT) not in paths
    assert st.package_dir != ROOT / "cartesian_irreps"  # not the checkout's own package folder


def _fake_status(monkeypatch, missing: dict[str, str], source_tree: bool = False) -> None:
    real = kernels._try_import

    def fake(name: str) -> tuple[bool, str]:
        short = name.rsplit("_", 1)[-1]
        return (False, missing[short]) if short in missing else real(name)

    monkeypatch.setattr(kernels, "_try_import", fake)
    monkeypatch.setattr(kernels, "_is_source_tree", lambda package_dir: source_tree)


def test_missing_kernels_are_described_and_warned_about(monkeypatch):
    _fake_status(monkeypatch, {"fused": "No module named 'cartesian_irreps._fused'"})
    st = kernels.kernel_status()
    assert st.missing == ["fused"] and not st.compiled
    text = kernels.describe_backend("numpy", st)
    assert text.startswith("numpy reference (only monomials compiled)") and "No module named" in text
    assert "3-7x slower" in text and "reinstall" in text
    with pytest.warns(RuntimeWarning, match="compiled kernels fused are missing"):
        kernels.warn_if_slow()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels.warn_if_slow("cupy")  # the GPU does not use them: no warning
    assert kernels.describe_backend("cupy").startswith("cupy")
    record = kernels.backend_record()
    assert record["compiled_kernels"]["fused"] is False and "No module named" in record["missing_reasons"]["fused"]


def test_unbuilt_source_tree_is_named_with_the_fix(monkeypatch):
    _fake_status(monkeypatch, {"fused": "x", "monomials": "y"}, source_tree=True)
    st = kernels.kernel_status()
    assert st.source_tree and st.missing == ["fused", "monomials"]
    reason = st.reason()
    assert "source tree" in reason and "pip install -e ." in reason and "another directory" in reason
    assert reason.startswith("fused: x; monomials: y")


def test_bad_thread_count_is_reported_not_raised(monkeypatch):
    monkeypatch.setenv("CARTESIAN_IRREPS_NUM_THREADS", "two")
    assert "is not an integer" in str(kernels.kernel_status().threads)
    monkeypatch.setenv("CARTESIAN_IRREPS_NUM_THREADS", "3")
    assert kernels.kernel_status().threads == 3


def test_generate_check_in_an_installed_copy_never_advises_overwriting_it(monkeypatch, tmp_path, capsys):
    """A copy without setup.py next to it is an installed package: stale means reinstall, writing is refused."""
    gen = tmp_path / "site-packages" / "cartesian_irreps" / "generated"
    gen.mkdir(parents=True)
    for name in ("couplings.py", "harmonics.py", "plans.py"):
        shutil.copy(emit.GENERATED_DIR / name, gen / name)
    monkeypatch.setattr(emit, "GENERATED_DIR", gen)
    assert cli.main(["generate", "--check", "--lmax", "2"]) == 1  # lmax 2 differs from the committed 6
    out = capsys.readouterr().out
    assert "read-only" in out and "reinstall" in out and "run `cartesian-irreps generate" not in out
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate", "--lmax", "2"])
    assert exc.value.code == 2 and "installed package" in capsys.readouterr().err
    assert (gen / "plans.py").read_text() == (emit.GENERATED_DIR / "plans.py").read_text()


def test_version_flag():
    out = subprocess.run(
        [sys.executable, "-m", "cartesian_irreps", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"cartesian-irreps {cartesian_irreps.__version__}"
