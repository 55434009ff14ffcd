"""take_last / put_last: a gather along the last axis with unique indices, to second order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlip import autodiff as ad


@given(st.integers(0, 10**6), st.integers(2, 7))
def test_take_last_first_and_second_derivatives(seed, width):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((3, width))
    idx = rng.permutation(width)[: max(1, width - 2)]
    v = rng.standard_normal((3, len(idx)))

    def f(x):
        return ad.sum(ad.take_last(x, idx) ** 3 * v)

    x = ad.tensor(x0.copy(), requires_grad=True)
    (g,) = ad.grad(f(x), x, create_graph=True)
    expected = np.zeros_like(x0)
    expected[:, idx] = 3 * x0[:, idx] ** 2 * v
    assert np.allclose(g.data, expected)
    (hv,) = ad.grad(ad.sum(g * g), x)  # d/dx sum(g^2) = 2 g dg/dx, dg/dx diagonal = 6 x v
    expected_h = np.zeros_like(x0)
    expected_h[:, idx] = 2 * expected[:, idx] * 6 * x0[:, idx] * v
    assert np.allclose(hv.data, expected_h)


def test_take_last_rejects_repeated_or_out_of_range_indices():
    x = ad.tensor(np.zeros((2, 4)), requires_grad=True)
    with pytest.raises(ValueError, match="distinct"):
        ad.take_last(x, np.array([0, 0]))
    with pytest.raises(IndexError, match="lie in"):
        ad.take_last(x, np.array([4]))
