"""Row-wise monomials and their derivatives: compiled kernel vs an independent reference.

The reference is the explicit product over each monomial's index tuple (``np.prod`` of the chosen
columns), its derivatives central differences; the kernel's own column-by-column fallback is checked
against the same.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesian_irreps.runtime import monomials as M

DTYPES = [np.float64, np.float32]


def index_tuples(dim: int, degree: int) -> list[tuple[int, ...]]:
    """The monomials of symmetric_monomial_table, written out independently."""
    return [c for k in range(1, degree + 1) for c in itertools.combinations_with_replacement(range(dim), k)]


def explicit(a: np.ndarray, tuples: list[tuple[int, ...]]) -> np.ndarray:
    return np.stack([np.prod(a[:, list(t)], axis=1) for t in tuples], axis=1)


@given(st.integers(1, 6), st.integers(1, 4))
def test_symmetric_table_lists_every_monomial_once(dim, degree):
    parent, last = M.symmetric_monomial_table(dim, degree)
    assert len(parent) == sum(math.comb(dim + k - 1, k) for k in range(1, degree + 1))
    a = np.random.default_rng(dim * 10 + degree).standard_normal((5, dim))
    np.testing.assert_allclose(M.monomials(a, (parent, last)), explicit(a, index_tuples(dim, degree)), rtol=1e-13)


@settings(deadline=None, max_examples=40)
@given(
    st.integers(0, 10**6),
    st.integers(1, 9),
    st.integers(1, 3),
    st.integers(0, 1500),
    st.sampled_from(DTYPES),
    st.sampled_from([None, 1, 2, 3]),
)
def test_kernel_and_fallback_agree_with_explicit_products_and_derivatives(seed, dim, degree, rows, dtype, threads):
    rng = np.random.default_rng(seed)
    table = M.symmetric_monomial_table(dim, degree)
    T = len(table[0])
    a = rng.standard_normal((rows, dim))
    g = rng.standard_normal((rows, T))
    h = rng.standard_normal((rows, dim))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    a_, g_, h_ = (x.astype(dtype) for x in (a, g, h))
    fwd = M.monomials(a_, table, threads=threads)
    assert fwd.dtype == dtype and fwd.shape == (rows, T)
    np.testing.assert_allclose(fwd, explicit(a, index_tuples(dim, degree)), **tol)
    # derivatives: vjp is the adjoint of jvp; jvp and hvp match central differences (float64)
    vjp = M.monomials_vjp(a, g, table, threads=threads)
    jvp = M.monomials_jvp(a, h, table, threads=threads)
    hvp = M.monomials_hvp(a, g, h, table, threads=threads)
    assert np.isclose(np.sum(vjp * h), np.sum(g * jvp), rtol=1e-10, atol=1e-10)
    eps = 1e-6
    fd_j = (explicit(a + eps * h, index_tuples(dim, degree)) - explicit(a - eps * h, index_tuples(dim, degree))) / (
        2 * eps
    )
    np.testing.assert_allclose(jvp, fd_j, rtol=1e-6, atol=1e-6)
    fd_h = (M.monomials_vjp(a + eps * h, g, table) - M.monomials_vjp(a - eps * h, g, table)) / (2 * eps)
    np.testing.assert_allclose(hvp, fd_h, rtol=1e-6, atol=1e-6)
    # float32 kernel results track float64
    np.testing.assert_allclose(M.monomials_hvp(a_, g_, h_, table), hvp, **tol)
    # the NumPy fallback (used without the extension and for CuPy) gives the same numbers
    p, last = table
    for op, args, got in (("vjp", (g, None), vjp), ("jvp", (None, h), jvp), ("hvp", (g, h), hvp)):
        np.testing.assert_allclose(M._reference(op, p, last, a, *args), got, rtol=1e-12, atol=1e-12)


def test_table_from_levels_matches_the_symmetric_table():
    dim = 4
    full = M.symmetric_monomial_table(dim, 3)
    pairs = list(itertools.combinations_with_replacement(range(dim), 2))
    triples = list(itertools.combinations_with_replacement(range(dim), 3))
    lvl2 = (np.array([t[0] for t in pairs]), np.array([t[1] for t in pairs]))
    lvl3 = (np.array([pairs.index(t[:2]) for t in triples]), np.array([t[2] for t in triples]))
    built = M.table_from_levels(dim, [lvl2, lvl3])
    for x, y in zip(built, full):
        np.testing.assert_array_equal(x, y)


def test_bad_inputs_are_named():
    table = M.symmetric_monomial_table(3, 2)
    a = np.ones((4, 3))
    with pytest.raises(ValueError, match="g must have shape"):
        M.monomials_vjp(a, np.ones((4, 2)), table)
    with pytest.raises(TypeError, match="dtype"):
        M.monomials_jvp(a, np.ones((4, 3), np.float32), table)
    with pytest.raises(TypeError, match="float32 or float64"):
        M.monomials(np.ones((4, 3), np.int64), table)
    with pytest.raises(ValueError, match="parent"):
        M.monomials(a, (np.array([1, -1], np.int32), np.array([0, 1], np.int32)))
    with pytest.raises(ValueError, match="last"):
        M.monomials(a, (np.array([-1], np.int32), np.array([3], np.int32)))
    with pytest.raises(ValueError, match="out of range"):
        M.table_from_levels(2, [(np.array([5]), np.array([0]))])


@pytest.mark.skipif(not M.kernel_available(), reason="compiled kernel not built")
def test_compiled_kernel_validates_its_own_arguments():
    from cartesian_irreps import _monomials as ext

    p, last = M.symmetric_monomial_table(2, 2)
    a = np.ones((3, 2))
    out = np.empty((3, len(p)))
    with pytest.raises(ValueError, match="row range"):
        ext.run(0, p, last, a, None, None, out, 0, 4)
    with pytest.raises(ValueError, match="needs g"):
        ext.run(1, p, last, a, None, None, np.empty((3, 2)), 0, 3)
    with pytest.raises(ValueError, match="out must have shape"):
        ext.run(0, p, last, a, None, None, np.empty((3, 1)), 0, 3)


@settings(deadline=None, max_examples=30)
@given(
    st.integers(0, 10**6),
    st.integers(1, 6),
    st.integers(1, 3),
    st.integers(0, 700),
    st.integers(0, 9),
    st.floats(0.0, 1.0),
    st.sampled_from(DTYPES),
    st.sampled_from([None, 1, 2]),
)
def test_sparse_basis_is_the_dense_matrix_product(seed, dim, degree, rows, width, density, dtype, threads):
    """With a basis B the four ops are those of ``a -> M(a) B``: forward/JVP times B, VJP/HVP of ``g B^T``,
    compared with explicit products and the dense matrix, for any sparsity (empty and full included)."""
    rng = np.random.default_rng(seed)
    table = M.symmetric_monomial_table(dim, degree)
    T = len(table[0])
    B = rng.standard_normal((T, width)) * (rng.random((T, width)) < density)
    basis = M.sparse_basis(B)
    assert len(basis[0]) == np.count_nonzero(B) and basis[3] == width
    a = rng.standard_normal((rows, dim))
    g = rng.standard_normal((rows, width))
    h = rng.standard_normal((rows, dim))
    tol = dict(rtol=1e-11, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    a_, g_, h_ = (x.astype(dtype) for x in (a, g, h))
    fwd = M.monomials(a_, table, threads=threads, basis=basis)
    assert fwd.dtype == dtype and fwd.shape == (rows, width)
    np.testing.assert_allclose(fwd, explicit(a, index_tuples(dim, degree)) @ B, **tol)
    for op, args, want in (
        ("vjp", (g_,), M.monomials_vjp(a, g @ B.T, table)),
        ("jvp", (h_,), M.monomials_jvp(a, h, table) @ B),
        ("hvp", (g_, h_), M.monomials_hvp(a, g @ B.T, h, table)),
    ):
        got = getattr(M, f"monomials_{op}")(a_, *args, table, threads=threads, basis=basis)
        np.testing.assert_allclose(got, want, **tol)
        ref_args = {"vjp": (g, None), "jvp": (None, h), "hvp": (g, h)}[op]
        np.testing.assert_allclose(M._reference(op, *table, a, *ref_args, basis), want, rtol=1e-11, atol=1e-11)


def test_bad_basis_is_named():
    table = M.symmetric_monomial_table(2, 2)
    a = np.ones((3, 2))
    with pytest.raises(ValueError, match="inside"):
        M.monomials(a, table, basis=(np.array([9]), np.array([0]), np.array([1.0]), 2))
    with pytest.raises(ValueError, match="inside"):
        M.monomials(a, table, basis=(np.array([0]), np.array([2]), np.array([1.0]), 2))
    with pytest.raises(ValueError, match="one length"):
        M.monomials(a, table, basis=(np.array([0, 1]), np.array([0]), np.array([1.0]), 2))
    with pytest.raises(ValueError, match="g must have shape"):
        M.monomials_vjp(a, np.ones((3, 5)), table, basis=M.sparse_basis(np.eye(5, 2)))
    with pytest.raises(ValueError, match="2-D"):
        M.sparse_basis(np.ones(3))
    if M.kernel_available():
        from cartesian_irreps import _monomials as ext

        p, last = table
        head = (0, p, last, a, None, None, np.empty((3, 2)), 0, 3)  # mode, table, a, g, h, out, rows
        with pytest.raises(ValueError, match="basis entry"):
            ext.run(*head, np.array([7], np.int32), np.array([0], np.int32), np.array([1.0]), 2)
        with pytest.raises(ValueError, match="width"):
            ext.run(*head, np.array([0], np.int32), np.array([0], np.int32), np.array([1.0], np.float32), 2)
