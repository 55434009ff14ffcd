"""pair_gather, Gemm (matmul of two matrices) and the compiled monomial ops, to second order.

References: index_select (a general gather with a scatter-add adjoint), einsum, and the
take_last-and-multiply composition of monomials, all differentiated by the same engine.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps.runtime.monomials import sparse_basis, symmetric_monomial_table
from mlip import autodiff as ad
from mlip.model_ops import pair_gather, take_last
from mlip.monomials import basis_product, monomials


def _second_order(f, x0):
    """Gradient, and the gradient of |gradient|^2 (a Hessian-vector product), of scalar f at x0."""
    x = ad.tensor(x0.copy(), requires_grad=True)
    (g,) = ad.grad(f(x), x, create_graph=True)
    (hv,) = ad.grad(ad.sum(g * g), x)
    return g.data, hv.data


def _assert_same_to_second_order(f, x0, dtype):
    """``f(x, True)`` (fast op) and ``f(x, False)`` (reference): same gradient and HVP, in ``dtype``."""
    got = _second_order(lambda x: f(x, True), x0)
    ref = _second_order(lambda x: f(x, False), x0)
    tol = 1e-10 if dtype == np.float64 else 2e-3
    for a, b in zip(got, ref):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@given(st.integers(0, 10**6), st.integers(1, 30), st.booleans())
def test_pair_gather_equals_index_select(seed, rows, all_paired):
    rng = np.random.default_rng(seed)
    # rows of x read by one or two rows of y, in random order
    second = rng.random(rows) < (1.0 if all_paired else 0.5)
    readers = np.concatenate([np.arange(rows), np.flatnonzero(second)])
    perm = rng.permutation(len(readers))
    group = readers[perm]
    members = np.full((rows, 2), -1)
    for e, k in enumerate(group):
        members[k, 0 if members[k, 0] < 0 else 1] = e
    x0 = rng.standard_normal((rows, 3))
    w = rng.standard_normal((len(group), 3))

    def f_pair(x):
        return ad.sum(pair_gather(x, group, members) ** 3 * w)

    def f_ref(x):
        return ad.sum(ad.index_select(x, group) ** 3 * w)

    for a, b in zip(_second_order(f_pair, x0), _second_order(f_ref, x0)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_pair_gather_checks_members_shape():
    x = ad.tensor(np.ones((3, 2)), requires_grad=True)
    with pytest.raises(ValueError, match="members must have shape"):
        pair_gather(x, np.array([0, 1, 2]), np.zeros((2, 2), dtype=np.int64))


@given(st.integers(0, 10**6), st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))
def test_matmul_of_matrices_matches_einsum_to_second_order(seed, n, k, m):
    rng = np.random.default_rng(seed)
    a0, b0 = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    w = rng.standard_normal((n, m))
    for wrt in ("a", "b"):

        def f(x, eins, wrt=wrt):
            a, b = (x, ad.constant(b0)) if wrt == "a" else (ad.constant(a0), x)
            y = ad.einsum("ik,kj->ij", a, b) if eins else ad.matmul(a, b)
            return ad.sum((y * y) * w)

        x0 = a0 if wrt == "a" else b0
        got = _second_order(lambda x, f=f: f(x, False), x0)
        ref = _second_order(lambda x, f=f: f(x, True), x0)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="do not align"):
        ad.matmul(ad.constant(a0), ad.constant(np.ones((k + 1, 2))))


@given(st.integers(0, 10**6), st.integers(1, 5), st.integers(1, 3), st.sampled_from([np.float64, np.float32]))
def test_monomial_ops_match_the_composition_to_second_order(seed, dim, degree, dtype):
    """Forces train through the second derivative: compare gradient and Hessian-vector product."""
    rng = np.random.default_rng(seed)
    parent, last = symmetric_monomial_table(dim, degree)
    # per-degree selections for the composition, rebuilt from the table
    ends = np.flatnonzero(np.diff(np.r_[-1, (parent >= 0).astype(int)]) != 0)
    x0 = rng.standard_normal((2, 3, dim)).astype(dtype)
    w = rng.standard_normal((2, 3, len(parent))).astype(dtype)

    def composition(x):
        cols = [None] * len(parent)
        for t in range(len(parent)):
            col = take_last(x, np.array([last[t]]))
            cols[t] = col if parent[t] < 0 else cols[parent[t]] * col
        return ad.concatenate(cols, axis=-1)

    def f(x, fast):
        m = monomials(x, (parent, last)) if fast else composition(x)
        return ad.sum(ad.sin(m) * w)

    assert len(ends) >= 1
    _assert_same_to_second_order(f, x0, dtype)


@given(
    st.integers(0, 10**6),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 6),
    st.sampled_from([np.float64, np.float32]),
)
def test_basis_product_matches_monomials_then_matmul_to_second_order(seed, dim, degree, width, dtype):
    """``basis_product(a, table, sparse B)`` against ``monomials(a) @ B`` (dense Gemm), gradient and HVP."""
    rng = np.random.default_rng(seed)
    table = symmetric_monomial_table(dim, degree)
    T = len(table[0])
    B = rng.standard_normal((T, width)) * (rng.random((T, width)) < 0.4)
    x0 = rng.standard_normal((2, 3, dim)).astype(dtype)
    w = rng.standard_normal((2, 3, width)).astype(dtype)

    def f(x, fast):
        if fast:
            y = basis_product(x, table, sparse_basis(B))
        else:
            m = monomials(x, table)
            y = ad.reshape(ad.matmul(ad.reshape(m, (-1, T)), ad.constant(B.astype(dtype))), (2, 3, width))
        return ad.sum(ad.sin(y) * w)

    _assert_same_to_second_order(f, x0, dtype)


def test_third_derivative_of_monomials_is_refused():
    parent, last = symmetric_monomial_table(2, 2)
    x = ad.tensor(np.array([[0.3, -0.7]]), requires_grad=True)
    (g,) = ad.grad(ad.sum(monomials(x, (parent, last)) ** 2), x, create_graph=True)
    (h,) = ad.grad(ad.sum(g * g), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="third derivatives"):
        ad.grad(ad.sum(h), x)
