"""The edge-harmonics autodiff ops on the generated kernels (run through the C twin) equal the composition.

``mlip.harmonic_ops`` is what the model's ``edge_harmonics`` takes on CuPy input; under
``use_backend("cuda-twin")`` the same ops run the C twin of the same kernel text, so their values,
first and second derivatives (both second-order rules: with respect to the cotangent and to ``r``)
are checked here against the composition of autodiff primitives, which is itself checked against
finite differences in tests/mlip.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesian_irreps.runtime.kernel_backend import use_backend
from mlip import autodiff as ad
from mlip import harmonic_ops
from mlip.equivariant import edge_harmonics

from .conftest import needs_cc

pytestmark = needs_cc


def _derivatives(r: np.ndarray, lmax: int, normalization: str, component: bool, seed: int) -> list[np.ndarray]:
    """T, d<G, T>/dr, and the gradients of a loss on that force-like VJP w.r.t. G and r (second order)."""
    rng = np.random.default_rng(seed)
    E, K = r.shape[0], (lmax + 1) ** 2
    G0 = rng.standard_normal((E, K)).astype(r.dtype)
    target = rng.standard_normal((E, 3)).astype(r.dtype)
    rt = ad.tensor(r, requires_grad=True)
    Gt = ad.tensor(G0, requires_grad=True)
    T = edge_harmonics(rt, lmax, normalization, component)
    (f,) = ad.grad(ad.sum(T * Gt), [rt], create_graph=True, allow_unused=True)
    if f is None:  # lmax 0 through the composition: T is constant
        return [T.data] + [np.zeros_like(a) for a in (r, G0, r)]
    dG, dr = ad.grad(ad.sum((f - target) ** 2), [Gt, rt], allow_unused=True)
    return [T.data, f.data] + [np.zeros_like(x) if d is None else d.data for d, x in ((dG, G0), (dr, r))]


@settings(max_examples=25, deadline=None)
@given(
    lmax=st.integers(0, 4),
    E=st.integers(0, 7),
    normalization=st.sampled_from(["unit", "published"]),
    component=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**16),
)
def test_kernel_ops_equal_the_composition(lmax, E, normalization, component, dtype, seed):
    r = (np.random.default_rng(seed).standard_normal((E, 3)) + np.array([0.0, 0.0, 0.2])).astype(dtype)
    want = _derivatives(r, lmax, normalization, component, seed)
    with use_backend("cuda-twin"):
        got = _derivatives(r, lmax, normalization, component, seed)
    rtol = 1e-11 if dtype == np.float64 else 3e-4
    for name, a, b in zip(("values", "vjp", "d/dG", "d/dr"), got, want):
        assert a.dtype == b.dtype == np.dtype(dtype), name
        scale = max(1.0, float(np.abs(b).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=name)


def test_the_kernels_run_and_the_backend_rule(twin_launches):
    r = np.random.default_rng(0).standard_normal((5, 3))
    assert not harmonic_ops.use_kernels(r)  # NumPy, auto: the composition
    with use_backend("cuda-twin"):
        assert harmonic_ops.use_kernels(r)
        _derivatives(r, 3, "unit", True, 0)
    assert {"harm_values", "harm_vjp", "harm_jvp", "harm_hvp"} <= set(twin_launches), twin_launches
    with use_backend("reference"):
        assert not harmonic_ops.use_kernels(r)


def test_third_derivatives_are_refused_with_a_reason():
    r = ad.tensor(np.random.default_rng(1).standard_normal((3, 3)), requires_grad=True)
    with use_backend("cuda-twin"):
        T = edge_harmonics(r, 2)
        (f,) = ad.grad(ad.sum(T * T), [r], create_graph=True)
        (h,) = ad.grad(ad.sum(f * f), [r], create_graph=True)
        with pytest.raises(NotImplementedError, match="third derivatives"):
            ad.grad(ad.sum(h * h), [r])
