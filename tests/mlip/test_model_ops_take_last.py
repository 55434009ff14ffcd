"""take_last / put_last (mlip.model_ops): a gather along the last axis with unique indices, to second order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlip import autodiff as ad
from mlip.model_ops import take_last


@given(st.integers(0, 10**6), st.integers(2, 7))
def test_take_last_first_and_second_derivatives(seed, width):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((3, width))
    idx = rng.permutation(width)[: max(1, width - 2)]  # distinct here; repeats are tested below
    v = rng.standard_normal((3, len(idx)))

    def f(x):
        return ad.sum(take_last(x, idx) ** 3 * v)

    x = ad.tensor(x0.copy(), requires_grad=True)
    (g,) = ad.grad(f(x), x, create_graph=True)
    expected = np.zeros_like(x0)
    expected[:, idx] = 3 * x0[:, idx] ** 2 * v
    assert np.allclose(g.data, expected)
    (hv,) = ad.grad(ad.sum(g * g), x)  # d/dx sum(g^2) = 2 g dg/dx, dg/dx diagonal = 6 x v
    expected_h = np.zeros_like(x0)
    expected_h[:, idx] = 2 * expected[:, idx] * 6 * x0[:, idx] * v
    assert np.allclose(hv.data, expected_h)


@given(st.integers(0, 10**6), st.integers(1, 6), st.integers(0, 12))
def test_take_last_with_repeats_scatters_back(seed, width, n):
    """Repeated indices: the gradient adds up (checked against np.add.at), to second order."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((2, 3, width))
    idx = rng.integers(0, width, size=n)
    v = rng.standard_normal((2, 3, n))
    x = ad.tensor(x0.copy(), requires_grad=True)
    (g,) = ad.grad(ad.sum(take_last(x, idx) ** 2 * v), x, create_graph=True)
    expected = np.zeros_like(x0)
    np.add.at(expected, (..., idx), 2 * x0[..., idx] * v)
    assert np.allclose(g.data, expected)
    (h,) = ad.grad(ad.sum(g), x)
    expected_h = np.zeros_like(x0)
    np.add.at(expected_h, (..., idx), 2 * v)
    assert np.allclose(h.data, expected_h)


def test_take_last_rejects_out_of_range_indices():
    x = ad.tensor(np.zeros((2, 4)), requires_grad=True)
    with pytest.raises(IndexError, match="lie in"):
        take_last(x, np.array([4]))
