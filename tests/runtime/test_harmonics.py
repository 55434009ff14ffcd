"""Cartesian harmonics on arrays: exact values, gradients, equivariance, normalisations, errors."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.runtime.harmonics import cartesian_harmonics
from cartesian_irreps.symbolic.harmonics import SYMBOLS, cartesian_harmonic
from cartesian_irreps.testing import assert_equivariant, assert_vjp
from tests.conftest import rational_unit_vectors
from tests.runtime.strategies import DTYPES, RTOL

vectors = st.integers(0, 10**6).map(lambda s: np.random.default_rng(s).standard_normal((5, 3)) * 3)


@given(st.integers(0, 6), rational_unit_vectors(), st.sampled_from(["published", "unit"]))
def test_matches_exact_polynomials(l, n, norm):
    exact = cartesian_harmonic(l, norm, "compact")
    point = {s: sympy.Rational(int(c.numerator), int(c.denominator)) for s, c in zip(SYMBOLS, n)}
    ref = np.array([float(sympy.N(e.subs(point), 30)) for e in exact])
    got = cartesian_harmonics(np.array([[float(c) for c in n]]), l, normalization=norm)[l][0]
    assert np.abs(got - ref).max() <= 1e-12 * max(1.0, np.abs(ref).max())


@given(vectors, st.integers(0, 6), st.sampled_from(["published", "unit"]), st.sampled_from(["compact", "full"]))
def test_gradient_matches_finite_differences(v, lmax, norm, layout):
    lmax = min(lmax, 4) if layout == "full" else lmax
    _, grads = cartesian_harmonics(v, lmax, normalization=norm, layout=layout, gradient=True)
    h = 1e-6
    for a in range(3):
        vp, vm = v.copy(), v.copy()
        vp[:, a] += h
        vm[:, a] -= h
        plus = cartesian_harmonics(vp, lmax, normalization=norm, layout=layout)
        minus = cartesian_harmonics(vm, lmax, normalization=norm, layout=layout)
        for l in range(lmax + 1):
            fd = (plus[l] - minus[l]) / (2 * h)
            assert np.allclose(grads[l][..., a], fd, atol=1e-7, rtol=1e-6)


@given(vectors, st.integers(0, 6), st.sampled_from(["published", "unit"]), st.integers(0, 10**6))
def test_gradient_as_a_vjp(v, lmax, norm, seed):
    """The gradients, contracted with random cotangents, against finite differences in random directions."""

    def harmonics(r):
        return cartesian_harmonics(r, lmax, normalization=norm)

    def vjp(cotangents, r):
        _, grads = cartesian_harmonics(r, lmax, normalization=norm, gradient=True)
        return sum(np.einsum("nm,nmd->nd", c, g) for c, g in zip(cotangents, grads))

    assert_vjp(harmonics, vjp, (v,), rtol=1e-6, atol=1e-9, rng=seed)
    with pytest.raises(AssertionError, match="finite differences"):
        assert_vjp(harmonics, lambda c, r: vjp(c, r) + 1e-3 * r, (v,), rng=seed)


@given(vectors, st.integers(0, 10**6), DTYPES)
def test_equivariance(v, seed, dtype):
    """T_l(g n) = g . T_l(n) for rotations, inversion ((-1)^l), a mirror and rotoreflections."""
    assert all(t.dtype == dtype for t in cartesian_harmonics(v.astype(dtype), 6))
    assert_equivariant(
        lambda r: cartesian_harmonics(r, 6),
        1,
        tuple(range(7)),
        inputs=[v.astype(dtype)],
        rng=seed,
        rotations=2,
        rtol=100 * RTOL[dtype],
    )


@given(vectors, DTYPES)
def test_normalisations(v, dtype):
    n = v / np.linalg.norm(v, axis=1, keepdims=True)
    full = cartesian_harmonics(v.astype(dtype), 4, layout="full")
    for l in range(1, 5):
        t = full[l].astype(np.float64)
        for _ in range(l):  # contract with n, l times -> 1
            t = np.einsum("n...i,ni->n...", t, n)
        assert np.allclose(t, 1.0, rtol=0, atol=100 * RTOL[dtype])
    unit = cartesian_harmonics(v.astype(dtype), 6, normalization="unit")
    for l in range(7):
        assert np.allclose((unit[l].astype(np.float64) ** 2).sum(-1), 1.0, atol=100 * RTOL[dtype])


def test_batch_shapes_and_lengths():
    v = np.random.default_rng(0).standard_normal((2, 3, 4, 3))
    vals, grads = cartesian_harmonics(v, 3, gradient=True)
    assert [a.shape for a in vals] == [(2, 3, 4, 2 * l + 1) for l in range(4)]
    assert [a.shape for a in grads] == [(2, 3, 4, 2 * l + 1, 3) for l in range(4)]
    scaled = cartesian_harmonics(v * 7.5, 3)
    assert all(np.allclose(a, b) for a, b in zip(vals, scaled))  # only the direction matters
    assert cartesian_harmonics(np.zeros((0, 3)), 2)[2].shape == (0, 5)


@pytest.mark.parametrize(
    ("vectors", "kwargs", "error", "match"),
    [
        (np.zeros((2, 3)), {}, ValueError, "zero-length"),
        (np.ones((2, 4)), {}, ValueError, "last axes"),
        (np.full((2, 3), np.nan), {"check_nan": True}, ValueError, "NaN"),
        (np.ones((2, 3), np.int32), {}, TypeError, "float32 or float64"),
        (np.ones((2, 3)), {"normalization": "l2"}, ValueError, "normalisation"),
        (np.ones((2, 3)), {"layout": "sph"}, ValueError, "layout"),
        (np.ones((2, 3)), {"lmax": -1}, ValueError, ">= 0"),
        (np.ones((2, 3)), {"lmax": 12}, ValueError, "generated lmax"),
    ],
)
def test_bad_input(vectors, kwargs, error, match):
    lmax = kwargs.pop("lmax", 2)
    with pytest.raises(error, match=match):
        cartesian_harmonics(vectors, lmax, **kwargs)
