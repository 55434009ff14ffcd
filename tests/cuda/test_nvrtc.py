"""Every generated CUDA kernel compiles with NVRTC (no GPU needed); a broken source fails loudly."""

from __future__ import annotations

import pytest

from cartesian_irreps.generator.cuda import fused_graph_source
from cartesian_irreps.generator.cuda_harmonics import harmonics_source
from cartesian_irreps.generator.cuda_products import product_basis_source
from cartesian_irreps.runtime.cuda import nvrtc

from .conftest import needs_nvrtc, path_table

pytestmark = needs_nvrtc

# the model configurations the tests use (lmax, hidden_lmax, correlation, products)
MODEL_CONFIGS = [(1, 0, 3, "even"), (2, 1, 3, "even"), (2, 2, 3, "parity_complete"), (3, 1, 2, "parity_complete")]


def _model_sources():
    from mlip.layer_plan import build_plan
    from mlip.model import ModelConfig

    out = {}
    for L, H, nu, products in MODEL_CONFIGS:
        cfg = ModelConfig(elements=("H", "C"), lmax=L, hidden_lmax=H, correlation=nu, products=products)
        for lp in build_plan(cfg):
            for _, table, _ in lp.message:
                out[("fused", table.paths)] = fused_graph_source(table.paths, table.couplings, table.meta)
            basis, _ = lp.sparse_basis
            parent, last = lp.mono_table
            dim = sum(2 * k[0] + 1 for k in lp.a_keys)
            out[("pbasis", L, H, nu, products, lp.index)] = product_basis_source(parent, last, basis, dim)
    return out


@pytest.mark.parametrize("real", ["float", "double"])
def test_model_kernels_compile(real):
    sources = _model_sources()
    assert len(sources) >= 8
    for key, src in sources.items():
        ptx = nvrtc.compile_to_ptx(src.text, name=f"{key[0]}.cu", options=(f"-DREAL={real}",))
        for k in src.kernels:
            assert f".entry {k.name}(" in ptx, (key, k.name)


@pytest.mark.parametrize("parity", ["even", "odd", "both"])
@pytest.mark.parametrize("lmax", [1, 2, 3])
def test_fused_kernels_compile(lmax, parity):
    src = fused_graph_source(*_table_args(path_table(lmax, lmax, parity)))
    for real in ("float", "double"):
        assert ".entry fused_z(" in nvrtc.compile_to_ptx(src.text, options=(f"-DREAL={real}",))


def _table_args(table):
    return table.paths, table.couplings, table.meta


@pytest.mark.parametrize("normalization", ["unit", "published"])
def test_harmonics_kernels_compile(normalization):
    for lmax in range(7):
        for component in (True, False):
            src = harmonics_source(lmax, normalization, component)
            ptx = nvrtc.compile_to_ptx(src.text, options=("-DREAL=float",))
            assert all(f".entry {k.name}(" in ptx for k in src.kernels)


@pytest.mark.parametrize("loader", nvrtc.LOADERS)
def test_a_syntax_or_type_error_fails_with_the_log(loader):
    if not nvrtc.available(loader):
        pytest.skip(f"NVRTC loader {loader!r} not installed")
    src = fused_graph_source(*_table_args(path_table(1, 1, "even")))
    assert ".entry fused_w(" in nvrtc.compile_to_ptx(src.text, loader=loader)
    with pytest.raises(nvrtc.CudaCompileError, match="error"):
        missing_semicolon = src.text.replace("const idx_t e = order[q];", "const idx_t e = order[q]", 1)
        nvrtc.compile_to_ptx(missing_semicolon, loader=loader)
    with pytest.raises(nvrtc.CudaCompileError, match="undefined"):
        nvrtc.compile_to_ptx(src.text.replace("senders[e]", "sender[e]", 1), loader=loader)
    bad_type = "KERNEL void k(REAL* a) { struct S { int x; } s; a[0] = s; }"
    with pytest.raises(nvrtc.CudaCompileError, match="no suitable conversion"):
        nvrtc.compile_to_ptx(src.text + bad_type, loader=loader)


def test_nvrtc_reports_its_version():
    major, minor = nvrtc.version()
    assert major >= 11 and minor >= 0
    with pytest.raises(ValueError, match="unknown NVRTC loader"):
        nvrtc.available("nvcc")


def test_missing_nvrtc_is_named(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name.startswith("cupy_backends"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    nvrtc._binding.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    monkeypatch.setattr(nvrtc, "_library_candidates", lambda: ["/nonexistent/libnvrtc.so.12"])
    try:
        assert not nvrtc.available()
        with pytest.raises(nvrtc.NvrtcUnavailable, match="nvidia-cuda-nvrtc-cu12") as err:
            nvrtc.compile_to_ptx("KERNEL void k() {}")
        assert "cupy-cuda12x" in str(err.value)
    finally:
        nvrtc._binding.cache_clear()
