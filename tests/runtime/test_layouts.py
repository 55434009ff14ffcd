"""Full <-> compact converters against the exact basis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.runtime.layouts import to_compact, to_full
from cartesian_irreps.symbolic.basis import compact_basis


@pytest.mark.parametrize("l", range(5))
def test_matrix_matches_exact_basis(l):
    exact = np.array(compact_basis(l).tolist(), dtype=float)
    eye = np.eye(3**l).reshape((3**l,) + (3,) * l)
    assert np.allclose(to_compact(eye, l), exact.T, atol=1e-15)


@given(st.integers(0, 6), st.integers(0, 10**6))
def test_round_trip_and_projection(l, seed):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((4, 2 * l + 1))
    full = to_full(c, l)
    assert np.allclose(to_compact(full, l), c)
    for a in range(l):  # symmetric and traceless
        assert np.allclose(np.swapaxes(full, 1, 1 + a), full)
    if l >= 2:
        assert np.allclose(np.trace(full, axis1=1, axis2=2), 0)
    if l <= 4:
        t = rng.standard_normal((3,) * l)
        p = to_full(to_compact(t, l), l)
        assert np.allclose(to_full(to_compact(p, l), l), p)  # idempotent projection


def test_errors():
    with pytest.raises(ValueError, match="full layout"):
        to_compact(np.zeros((3, 3)), 3)
    with pytest.raises(ValueError, match="compact layout"):
        to_full(np.zeros(4), 2)
