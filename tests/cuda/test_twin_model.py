"""The potential with every generated CUDA kernel run through its C twin equals the CPU path.

``use_backend("cuda-twin")`` sends the fused message product, the product-basis monomials and the
edge harmonics (and their derivatives) through the C twin of the generated CUDA source: energies, forces and the
force-training gradient agree with the compiled CPU path to 1e-10 (float64).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from cartesian_irreps.runtime.kernel_backend import use_backend
from mlip import autodiff as ad
from mlip.data import batch_structures
from mlip.model import Potential

from ..mlip.conftest import TABLE, small_config
from .conftest import needs_cc

pytestmark = needs_cc

MOLS = [
    Atoms("COH", positions=[[0, 0, 0], [1.2, 0.1, 0], [-0.3, 0.9, 0.2]]),
    Atoms("CHHO", positions=[[0, 0, 0], [1.0, 0.2, 0.1], [-0.4, 1.0, -0.2], [0.1, -0.3, 1.3]]),
    Atoms("H", positions=[[5, 5, 5]]),  # isolated atom: no edges
]


@pytest.mark.parametrize(
    "config",
    [dict(), dict(products="parity_complete"), dict(correlation=3, hidden_lmax=2), dict(lmax=3, correlation=2)],
)
def test_energy_forces_and_stress_equal_the_cpu_path(config, twin_launches):
    pot = Potential.create(small_config(**config), seed=3)
    batch = batch_structures(MOLS, pot.config.cutoff, TABLE)
    want = pot.evaluate(batch, forces=True)
    with use_backend("cuda-twin"):
        got = pot.evaluate(batch, forces=True)
    for key in ("energy", "forces"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-10 * np.abs(want[key]).max())
    want_kernels = {"fused_z", "fused_x", "fused_y", "pbasis_forward", "pbasis_vjp", "harm_values", "harm_vjp"}
    assert want_kernels <= set(twin_launches), twin_launches


def test_float32_model_through_the_twin():
    pot = Potential.create(small_config(dtype="float32"), seed=3)
    batch = batch_structures(MOLS, pot.config.cutoff, TABLE).astype(np.float32)
    want = pot.evaluate(batch)
    with use_backend("cuda-twin"):
        got = pot.evaluate(batch)
    for key in ("energy", "forces"):
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4 * np.abs(want[key]).max())


def test_force_training_gradient_equals_the_cpu_path(twin_launches):
    """Second order: d(force loss)/d(params) through the twin kernels (VJP of VJPs, HVP)."""
    pot = Potential.create(small_config(channels=3, correlation=3), seed=5)
    batch = batch_structures(MOLS[:2], pot.config.cutoff, TABLE)
    f_ref = np.random.default_rng(0).normal(size=batch.positions.shape)
    names = ["layers.0.radial.0", "layers.1.product.0e", "layers.0.mix.1e", "embed"]

    def grads():
        tensors = {k: ad.tensor(v, requires_grad=k in names) for k, v in pot.params.items()}
        out = pot.evaluate(batch, params=tensors, create_graph=True)
        loss = ad.sum(out["energy"]) + ad.sum((out["forces"] - f_ref) ** 2)
        return [g.data for g in ad.grad(loss, [tensors[n] for n in names])]

    want = grads()
    with use_backend("cuda-twin"):
        got = grads()
    for n, a, b in zip(names, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max(), err_msg=n)
    fused = {f"fused_{m}" for m in "zxyw"}
    pbasis = {"pbasis_forward", "pbasis_vjp", "pbasis_jvp", "pbasis_hvp"}
    assert fused | pbasis | {"harm_values", "harm_vjp", "harm_jvp"} <= set(twin_launches), twin_launches
