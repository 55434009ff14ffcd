"""The same computations on CuPy and NumPy agree (runs on a GPU machine: benchmarks/gpu_check.sh)."""

from __future__ import annotations

import numpy as np
import pytest

from cartesian_irreps._validate import triples
from cartesian_irreps.runtime import cartesian_harmonics, tensor_product, tensor_product_vjp
from cartesian_irreps.runtime.contractions import STRATEGIES
from cartesian_irreps.runtime.message_passing import MessagePassingProduct

cp = pytest.importorskip("cupy")
TOL = {np.float64: 1e-11, np.float32: 1e-4}


def close(a, b, dtype):
    a, b = cp.asnumpy(a).astype(np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() <= TOL[dtype] * max(1.0, np.abs(b).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_harmonics(dtype):
    v = np.random.default_rng(0).standard_normal((50, 3)).astype(dtype)
    ref_v, ref_g = cartesian_harmonics(v, 6, gradient=True)
    got_v, got_g = cartesian_harmonics(cp.asarray(v), 6, gradient=True)
    assert all(close(a, b, dtype) for a, b in zip(got_v, ref_v))
    assert all(close(a, b, dtype) for a, b in zip(got_g, ref_g))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shared", [None, "x", "y"])
def test_products_and_vjps_every_strategy(dtype, shared):
    rng = np.random.default_rng(1)
    for t in triples(3):
        l1, l2, l3 = t
        x = rng.standard_normal((7,) + (() if shared == "x" else (4,)) + (2 * l1 + 1,)).astype(dtype)
        y = rng.standard_normal((7,) + (() if shared == "y" else (4,)) + (2 * l2 + 1,)).astype(dtype)
        g = rng.standard_normal((7, 4, 2 * l3 + 1)).astype(dtype)
        kind = "pair" if shared is None else "shared"
        for s in STRATEGIES[kind]:
            if s == "diagonal" and 0 not in t:
                continue
            ref = tensor_product(x, y, *t, shared=shared, strategy=s)
            assert close(tensor_product(cp.asarray(x), cp.asarray(y), *t, shared=shared, strategy=s), ref, dtype)
        ref = tensor_product_vjp(g, x, y, *t, shared=shared)
        got = tensor_product_vjp(cp.asarray(g), cp.asarray(x), cp.asarray(y), *t, shared=shared)
        assert all(close(a, b, dtype) for a, b in zip(got, ref))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_message_passing_product(dtype):
    mp = MessagePassingProduct(2, 2, 2, parity="all")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 8, 9)).astype(dtype)
    y = rng.standard_normal((300, 9)).astype(dtype)
    w = rng.standard_normal((300, 8, mp.num_paths)).astype(dtype)
    g = rng.standard_normal((300, 8, mp.out_dim)).astype(dtype)
    assert close(mp(cp.asarray(x), cp.asarray(y), cp.asarray(w)), mp(x, y, w), dtype)
    got = mp.vjp(cp.asarray(g), cp.asarray(x), cp.asarray(y), cp.asarray(w))
    assert all(close(a, b, dtype) for a, b in zip(got, mp.vjp(g, x, y, w)))


def test_model_energy_forces_stress_agree():
    from mlip.data import SpeciesTable, batch_structures
    from mlip.model import ModelConfig, Potential
    from mlip.reference_data import fcc_cu_cell

    atoms = fcc_cu_cell((2, 2, 2))
    cfg = ModelConfig(
        elements=("Cu",),
        channels=8,
        lmax=2,
        hidden_lmax=1,
        correlation=3,
        cutoff=4.5,
        avg_num_neighbors=20.0,
        products="parity_complete",
    )
    pot = Potential.create(cfg, seed=0)
    batch = batch_structures([atoms], cfg.cutoff, SpeciesTable(cfg.elements))
    ref = pot.evaluate(batch, stress=True)
    gpu = Potential(cfg, {k: cp.asarray(v) for k, v in pot.params.items()})
    got = gpu.evaluate(batch.to(cp), stress=True)
    for key in ("energy", "forces", "stress"):
        assert close(got[key], ref[key], np.float64), key
