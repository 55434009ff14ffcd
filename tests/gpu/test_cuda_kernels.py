"""The generated CUDA kernels on a GPU (CuPy): same results as the CPU path, no host round trips.

Skipped cleanly without CuPy and a device (tests/gpu/conftest.py); run by benchmarks/gpu_check.sh.
"""

from __future__ import annotations

import numpy as np
import pytest

from cartesian_irreps.runtime import monomials as cpu_mono
from cartesian_irreps.runtime.cuda import kernels
from cartesian_irreps.runtime.fused import GraphIndex, phi_grad_graph
from cartesian_irreps.runtime.kernel_backend import use_backend

from ..cuda.conftest import path_table

cp = pytest.importorskip("cupy")
cupyx = pytest.importorskip("cupyx")
RTOL = {np.float64: 1e-11, np.float32: 2e-5}
REPLACED = {"z": "g", "x": "h", "y": "y", "w": "w"}


def close(got, want, dtype):
    got, want = cp.asnumpy(got).astype(np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    return np.abs(got - want).max(initial=0.0) <= RTOL[dtype] * max(1.0, np.abs(want).max(initial=0.0))


def _graph_inputs(dtype, N=200, E=3000, C=16, lmax=3):
    rng = np.random.default_rng(0)
    graph = GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N - 5, E)), N)  # 5 isolated
    table = path_table(2, lmax, "both")
    arrays = {
        "h": rng.standard_normal((N, C, table.DX)).astype(dtype),
        "y": rng.standard_normal((E, table.DY)).astype(dtype),
        "w": rng.standard_normal((E, C, table.P)).astype(dtype),
        "g": rng.standard_normal((N, C, table.DZ)).astype(dtype),
    }
    return graph, table, arrays


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_graph_kernel_equals_the_cpu_kernel(dtype):
    graph, table, arrays = _graph_inputs(dtype)
    dev = {k: cp.asarray(v) for k, v in arrays.items()}
    for mode, replaced in REPLACED.items():
        used = {k: v for k, v in arrays.items() if k != replaced}
        used_dev = {k: v for k, v in dev.items() if k != replaced}
        got = kernels.phi_grad_graph(mode, table, graph, **used_dev)
        assert isinstance(got, cp.ndarray)
        assert close(got, phi_grad_graph(mode, table, graph, **used), dtype), mode


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_monomial_kernels_equal_the_cpu_kernel(dtype):
    rng = np.random.default_rng(1)
    table = cpu_mono.symmetric_monomial_table(9, 3)
    T = len(table[0])
    basis = cpu_mono.sparse_basis(rng.standard_normal((T, 12)) * (rng.random((T, 12)) < 0.1))
    a, h = rng.standard_normal((500, 9)).astype(dtype), rng.standard_normal((500, 9)).astype(dtype)
    g = rng.standard_normal((500, 12)).astype(dtype)
    want = {
        "forward": cpu_mono.monomials(a, table, basis=basis),
        "vjp": cpu_mono.monomials_vjp(a, g, table, basis=basis),
        "jvp": cpu_mono.monomials_jvp(a, h, table, basis=basis),
        "hvp": cpu_mono.monomials_hvp(a, g, h, table, basis=basis),
    }
    ad, gd, hd = cp.asarray(a), cp.asarray(g), cp.asarray(h)
    for op, ref in want.items():
        assert close(kernels.monomial_op(op, table, ad, gd, hd, basis), ref, dtype), op
    with use_backend("cuda"):  # the runtime module dispatches CuPy input to the same kernel
        assert close(cpu_mono.monomials_hvp(ad, gd, hd, table, basis=basis), want["hvp"], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_harmonics_kernel_equals_the_cpu_path(dtype):
    from cartesian_irreps.runtime.harmonics import cartesian_harmonics

    r = np.random.default_rng(2).standard_normal((1000, 3)).astype(dtype)
    vals, grads = cartesian_harmonics(r, 4, normalization="unit", gradient=True)
    got_v, got_g = kernels.cartesian_harmonics(cp.asarray(r), 4, component=False, gradient=True)
    assert close(got_v, np.concatenate(vals, axis=1), dtype)
    assert close(got_g, np.concatenate(grads, axis=1), dtype)


def test_bad_input_on_the_gpu_gets_the_cpu_errors():
    graph, table, arrays = _graph_inputs(np.float64, N=10, E=30, C=2)
    dev = {k: cp.asarray(v) for k, v in arrays.items()}
    with pytest.raises(TypeError, match="mix NumPy and CuPy"):
        kernels.phi_grad_graph("z", table, graph, h=dev["h"], y=arrays["y"], w=dev["w"])
    with pytest.raises(ValueError, match="DX"):
        kernels.phi_grad_graph("z", table, graph, h=dev["h"][:, :, :-1], y=dev["y"], w=dev["w"])
    with pytest.raises(ValueError, match="zero-length"):
        kernels.cartesian_harmonics(cp.zeros((2, 3)), 2)


def test_kernel_hot_path_has_no_host_round_trip():
    """After a warm-up (compile, graph upload), forward + all gradients run without synchronising."""
    graph, table, arrays = _graph_inputs(np.float64)
    dev = {k: cp.asarray(v) for k, v in arrays.items()}
    table_m = cpu_mono.symmetric_monomial_table(9, 3)
    basis = cpu_mono.sparse_basis(np.eye(len(table_m[0]))[:, :20])
    a = cp.asarray(np.random.default_rng(0).standard_normal((300, 9)))
    g = cp.ones((300, 20))

    def step():
        for mode, replaced in REPLACED.items():
            kernels.phi_grad_graph(mode, table, graph, **{k: v for k, v in dev.items() if k != replaced})
        for op in ("forward", "vjp", "jvp", "hvp"):
            kernels.monomial_op(op, table_m, a, g, a, basis)
        r = dev["y"][:, 1:4].copy()
        kernels.cartesian_harmonics(r, 3, gradient=True, check_zero=False)
        kernels.cartesian_harmonics(r, 3, cotangent=dev["y"][:, :16].copy(), tangent=r, check_zero=False)

    step()
    cp.cuda.Device().synchronize()
    with cupyx.allow_synchronize(False):
        step()
    cp.cuda.Device().synchronize()


def _cu_system(n_cells):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n_cells,) * 3)
    atoms.rattle(0.05, seed=0)
    return atoms


@pytest.mark.parametrize("products", ["even", "parity_complete"])
def test_model_on_the_gpu_equals_the_cpu_path_to_1e10(products):
    from mlip.data import SpeciesTable, batch_structures
    from mlip.model import ModelConfig, Potential

    cfg = ModelConfig(
        elements=("Cu",), channels=8, lmax=2, hidden_lmax=1, correlation=3, cutoff=4.5,
        avg_num_neighbors=20.0, products=products,
    )  # fmt: skip
    pot = Potential.create(cfg, seed=0)
    batch = batch_structures([_cu_system(2)], cfg.cutoff, SpeciesTable(cfg.elements))
    ref = pot.evaluate(batch)
    gpu = Potential(cfg, {k: cp.asarray(v) for k, v in pot.params.items()})
    got = gpu.evaluate(batch.to(cp))
    for key in ("energy", "forces"):
        want = np.asarray(ref[key])
        err = np.abs(cp.asnumpy(got[key]) - want).max()
        assert err <= 1e-10 * max(1.0, np.abs(want).max()), (key, err)


def test_model_step_has_no_host_round_trip():
    """Energy + forces and a force-training gradient of a warmed-up batch run without a device read.

    The batch's graph orderings and edge pairs are built once (on the host, when the batch is first
    used); after that an evaluation or a training step only launches kernels.
    """
    from mlip import autodiff as ad
    from mlip.data import SpeciesTable, batch_structures
    from mlip.model import ModelConfig, Potential

    cfg = ModelConfig(
        elements=("Cu",), channels=8, lmax=2, hidden_lmax=1, correlation=3, cutoff=4.5, avg_num_neighbors=20.0
    )
    pot = Potential.create(cfg, seed=0)
    gpu = Potential(cfg, {k: cp.asarray(v) for k, v in pot.params.items()})
    batch = batch_structures([_cu_system(2)], cfg.cutoff, SpeciesTable(cfg.elements)).to(cp)
    f_ref = cp.zeros(batch.positions.shape)

    def step():
        gpu.evaluate(batch)
        tensors = {k: ad.tensor(v, requires_grad=True) for k, v in gpu.params.items()}
        out = gpu.evaluate(batch, params=tensors, create_graph=True)
        loss = ad.sum(out["energy"] ** 2) + ad.sum((out["forces"] - f_ref) ** 2)
        return ad.grad(loss, list(tensors.values()), allow_unused=True)

    step()
    cp.cuda.Device().synchronize()
    with cupyx.allow_synchronize(False):
        step()
    cp.cuda.Device().synchronize()
