"""The generated product-basis and harmonics kernels, compiled as C (the twin), against the references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartesian_irreps.runtime import monomials as cpu
from cartesian_irreps.runtime.cuda import kernels
from cartesian_irreps.runtime.harmonics import cartesian_harmonics

from .conftest import assert_close, needs_cc

pytestmark = needs_cc

OPS = ("forward", "vjp", "jvp", "hvp")


def _reference(op, table, a, g, h, basis):
    fn = {"forward": cpu.monomials, "vjp": cpu.monomials_vjp, "jvp": cpu.monomials_jvp, "hvp": cpu.monomials_hvp}[op]
    args = {"forward": (a,), "vjp": (a, g), "jvp": (a, h), "hvp": (a, g, h)}[op]
    from cartesian_irreps.runtime.kernel_backend import use_backend

    with use_backend("reference"):
        return fn(*args, table, basis=basis)


@settings(max_examples=20, deadline=None)
@given(
    dim=st.integers(1, 5),
    degree=st.integers(1, 3),
    width=st.integers(1, 6),
    density=st.floats(0.05, 0.6),
    rows=st.integers(0, 7),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**31 - 1),
)
def test_twin_equals_the_reference_on_random_tables(dim, degree, width, density, rows, dtype, seed):
    rng = np.random.default_rng(seed)
    table = cpu.symmetric_monomial_table(dim, degree)
    T = len(table[0])
    dense = rng.standard_normal((T, width)) * (rng.random((T, width)) < density)
    basis = cpu.sparse_basis(dense)
    a = rng.standard_normal((rows, dim)).astype(dtype)
    g = rng.standard_normal((rows, width)).astype(dtype)
    h = rng.standard_normal((rows, dim)).astype(dtype)
    for op in OPS:
        assert_close(kernels.monomial_op(op, table, a, g, h, basis), _reference(op, table, a, g, h, basis), dtype)
    # no basis: the plain monomials (identity basis baked in)
    g_t = rng.standard_normal((rows, T)).astype(dtype)
    assert_close(kernels.monomial_op("vjp", table, a, g_t), _reference("vjp", table, a, g_t, None, None), dtype)


@pytest.mark.parametrize(
    "config", [(2, 1, 3, "even"), (2, 2, 3, "parity_complete"), (3, 1, 2, "parity_complete"), (1, 0, 1, "even")]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_twin_on_the_model_product_basis(config, dtype):
    """Every layer's generated tables (exact product basis) through the kernel vs the reference."""
    from mlip.layer_plan import build_plan
    from mlip.model import ModelConfig

    L, H, nu, products = config
    cfg = ModelConfig(elements=("H",), lmax=L, hidden_lmax=H, correlation=nu, products=products)
    rng = np.random.default_rng(7)
    for lp in build_plan(cfg):
        basis, _ = lp.sparse_basis
        table = lp.mono_table
        D, W = sum(2 * k[0] + 1 for k in lp.a_keys), basis[3]
        a = rng.standard_normal((6, D)).astype(dtype)
        g = rng.standard_normal((6, W)).astype(dtype)
        h = rng.standard_normal((6, D)).astype(dtype)
        for op in OPS:
            assert_close(kernels.monomial_op(op, table, a, g, h, basis), _reference(op, table, a, g, h, basis), dtype)


def test_bad_monomial_input_gets_the_cpu_errors():
    table = cpu.symmetric_monomial_table(3, 2)
    a = np.ones((4, 3))
    for args, exc, match in [
        ((np.ones((4, 2)), None, None), ValueError, "last must index"),
        ((a, np.ones((4, 2)), None), ValueError, "g must have shape"),
        ((a, np.ones((4, 9), np.float32), None), TypeError, "dtype"),
        ((np.ones(3), None, None), TypeError, "2-D"),
    ]:
        op = "forward" if args[1] is None else "vjp"
        with pytest.raises(exc, match=match) as twin:
            kernels.monomial_op(op, table, *args)
        with pytest.raises(exc, match=match) as ref:
            _reference(op, table, *args, None)
        assert str(twin.value) == str(ref.value)
    with pytest.raises(ValueError, match="unknown monomial op"):
        kernels.monomial_op("hessian", table, a)


@pytest.mark.parametrize("normalization", ["unit", "published"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_twin_harmonics_values_jacobian_vjp(normalization, dtype):
    rng = np.random.default_rng(11)
    r = rng.standard_normal((13, 3)).astype(dtype)
    for lmax in range(7):
        vals, grads = cartesian_harmonics(r, lmax, normalization=normalization, gradient=True)
        want_v, want_g = np.concatenate(vals, axis=1), np.concatenate(grads, axis=1)
        got_v, got_g = kernels.cartesian_harmonics(r, lmax, normalization=normalization, component=False, gradient=True)
        assert_close(got_v, want_v, dtype)
        assert_close(got_g, want_g, dtype)
        assert_close(kernels.cartesian_harmonics(r, lmax, normalization=normalization, component=False), want_v, dtype)
        G = rng.standard_normal(want_v.shape).astype(dtype)
        vjp = kernels.cartesian_harmonics(r, lmax, normalization=normalization, component=False, cotangent=G)
        assert_close(vjp, np.einsum("ek,ekd->ed", G, want_g).astype(dtype), dtype)


def test_twin_harmonics_component_scaling_matches_the_model():
    from mlip import autodiff as ad
    from mlip.equivariant import edge_harmonics

    r = np.random.default_rng(2).standard_normal((9, 3))
    want = edge_harmonics(ad.constant(r), 3).data
    assert_close(kernels.cartesian_harmonics(r, 3), want, np.float64)


def test_harmonics_bad_input():
    with pytest.raises(ValueError, match="zero-length"):
        kernels.cartesian_harmonics(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), 2)
    with pytest.raises(ValueError, match="Cartesian components"):
        kernels.cartesian_harmonics(np.ones((4, 2)), 2)
    with pytest.raises(TypeError, match="float32 or float64"):
        kernels.cartesian_harmonics(np.ones((4, 3), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="normalisation"):
        kernels.cartesian_harmonics(np.ones((4, 3)), 2, normalization="schmidt")
    with pytest.raises(ValueError, match="cotangent must be"):
        kernels.cartesian_harmonics(np.ones((4, 3)), 2, cotangent=np.ones((4, 4)))
    with pytest.raises(ValueError, match="tangent must be"):
        kernels.cartesian_harmonics(np.ones((4, 3)), 2, tangent=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="generate"):
        kernels.cartesian_harmonics(np.ones((4, 3)), 40)
    empty = kernels.cartesian_harmonics(np.zeros((0, 3)), 2)
    assert empty.shape == (0, 9)


@pytest.mark.parametrize("lmax", [1, 2, 3, 4])
def test_twin_harmonics_jvp_and_second_order_equal_autodiff(lmax):
    """JVP and the VJP of the VJP (force training) against mlip's autodiff of the harmonics."""
    from mlip import autodiff as ad
    from mlip.equivariant import edge_harmonics

    rng = np.random.default_rng(lmax)
    r = rng.standard_normal((11, 3))
    K = (lmax + 1) ** 2
    G, v = rng.standard_normal((11, K)), rng.standard_normal((11, 3))
    rt = ad.tensor(r, requires_grad=True)
    (vjp,) = ad.grad(ad.sum(edge_harmonics(rt, lmax) * ad.constant(G)), [rt], create_graph=True)
    (hvp,) = ad.grad(ad.sum(vjp * ad.constant(v)), [rt])
    assert_close(kernels.cartesian_harmonics(r, lmax, cotangent=G), vjp.data, np.float64)
    assert_close(kernels.cartesian_harmonics(r, lmax, cotangent=G, tangent=v), hvp.data, np.float64)
    _, jac = kernels.cartesian_harmonics(r, lmax, gradient=True)
    assert_close(kernels.cartesian_harmonics(r, lmax, tangent=v), np.einsum("ekd,ed->ek", jac, v), np.float64)
