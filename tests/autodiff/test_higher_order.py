"""Second (and third) derivatives: Hessian-vector products, a custom op, force training, CuPy."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlip import autodiff as ad

from .test_ops import assert_close, check_vjp, fd_grad, seeds

Scalar = Callable[..., ad.Tensor]


def hvp(f: Scalar, xs: Sequence[np.ndarray], vs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``H v = ∇_x <∇_x f(x), v>`` with the gradient recorded (``create_graph=True``)."""
    ts = [ad.tensor(x, requires_grad=True) for x in xs]
    gs = ad.grad(f(*ts), ts, create_graph=True)
    assert all(g.requires_grad for g in gs)
    s = sum(ad.sum(g * v) for g, v in zip(gs, vs))
    return [h.data for h in ad.grad(s, ts)]


def fd_hvp(f: Scalar, xs: Sequence[np.ndarray], vs: Sequence[np.ndarray], h: float = 1e-3) -> list[np.ndarray]:
    """Five-point differences of the (first-order) gradient along ``v``: ``d/dt ∇f(x + t v)`` at 0."""

    def gradient(t: float) -> list[np.ndarray]:
        ts = [ad.tensor(x + t * v, requires_grad=True) for x, v in zip(xs, vs)]
        return [g.data for g in ad.grad(f(*ts), ts)]

    gp, gm, gp2, gm2 = gradient(h), gradient(-h), gradient(2 * h), gradient(-2 * h)
    return [(8 * (a - b) - (c - d)) / (12 * h) for a, b, c, d in zip(gp, gm, gp2, gm2)]


def check_hvp(f: Scalar, xs: Sequence[np.ndarray], seed: int, tol: float = 1e-6) -> None:
    """The gradient against differences of ``f``, then ``H v`` against differences of the gradient."""
    check_vjp(f, xs, seed, tol)
    rng = np.random.default_rng(seed + 7)
    vs = [rng.standard_normal(x.shape) for x in xs]
    for a, n in zip(hvp(f, xs, vs), fd_hvp(f, xs, vs)):
        assert_close(a, n, tol)


# ------------------------------------------------------------------------------------------------ #
# Hessian-vector products of composites                                                            #
# ------------------------------------------------------------------------------------------------ #
@given(n=st.integers(1, 4), k=st.integers(1, 3), m=st.integers(1, 3), seed=seeds)
def test_hvp_silu_mlp(n, k, m, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    check_hvp(lambda x, w: ad.sum(ad.silu(x @ w) ** 2), [x, w], seed)


def test_silu_kept_derivative_on_large_blocked_arrays():
    """Above the block threshold silu runs in threaded blocks and keeps silu' for its VJP: the value,
    gradient and Hessian-vector product match the closed forms, with and without a kept derivative."""
    from mlip.autodiff.activations import _BLOCK

    rng = np.random.default_rng(5)
    x = rng.uniform(-8, 8, size=(4 * _BLOCK // 64 + 7, 64))
    v = rng.standard_normal(x.shape)
    s = 1 / (1 + np.exp(-x))
    d1 = s * (1 + x * (1 - s))
    d2 = s * (1 - s) * (2 + x * (1 - 2 * s))
    t = ad.tensor(x, requires_grad=True)
    y = ad.silu(t)
    np.testing.assert_allclose(y.data, x * s, rtol=1e-14)
    (g,) = ad.grad(ad.sum(y), [t], create_graph=True)
    np.testing.assert_allclose(g.data, d1, rtol=1e-12, atol=1e-15)
    (h,) = ad.grad(ad.sum(g * v), [t])
    np.testing.assert_allclose(h.data, d2 * v, rtol=1e-12, atol=1e-15)
    # a constant input keeps nothing and still evaluates
    np.testing.assert_allclose(ad.silu(ad.constant(x)).data, x * s, rtol=1e-14)


@given(seed=seeds)
def test_hvp_einsum_chain(seed):
    rng = np.random.default_rng(seed)
    a, b, c = rng.standard_normal((3, 3)), rng.standard_normal((3, 2)), rng.standard_normal((2,))

    def f(a, b, c):
        cube_trace = ad.einsum("ij,jk,ki->", a, a, a)  # the same Tensor three times
        chain = ad.einsum("ij,jk,k->i", a, b, c)
        diag = ad.einsum("ii->i", a)
        return cube_trace + ad.sum(ad.tanh(chain) * ad.cos(diag)) + ad.sum(ad.einsum("ab,ab->a", b, b) ** 1.5)

    check_hvp(f, [a, b, c], seed)


@given(n=st.integers(2, 5), e=st.integers(1, 8), seed=seeds)
def test_hvp_gather_scatter(n, e, seed):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    x, w = rng.standard_normal((n, 3)), rng.standard_normal((3, 3))

    def f(x, w):
        msg = ad.exp(-0.5 * ad.index_select(x, src) ** 2) * ad.index_select(x @ w, dst)  # (e, 3)
        agg = ad.segment_sum(msg, dst, n)  # (n, 3)
        return ad.sum(ad.sin(agg) * x) + ad.sum(ad.segment_sum(ad.sum(msg, 1), src, n) ** 2)

    check_hvp(f, [x, w], seed)


@given(seed=seeds)
def test_hvp_div_sqrt_log_indexing(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0.5, 2.0, (4, 3)), rng.uniform(0.5, 2.0, (3,))

    def f(x, y):
        r = ad.sqrt(ad.sum(x * x, 1, keepdims=True))  # (4, 1)
        u = ad.concatenate([x / r, ad.log(x[:, 1:]) / y[None, :2]], 1)  # (4, 5)
        v = ad.stack([u[::2], u[np.array([1, 1])]], 0)  # (2, 2, 5), advanced index with repeats
        return ad.sum(ad.sigmoid(v) * ad.mean(u)) + ad.sum(ad.broadcast_to(y, (2, 3)) ** -2)

    check_hvp(f, [x, y], seed)


def test_third_derivative():
    x = ad.tensor(np.array([0.3, -1.1, 2.0]), requires_grad=True)
    (g,) = ad.grad(ad.sum(ad.sin(x) * ad.exp(x)), x, create_graph=True)
    (h,) = ad.grad(ad.sum(g), x, create_graph=True)
    (t,) = ad.grad(ad.sum(h), x)
    xs = x.data  # d³/dx³ [sin x e^x] = 2 e^x (cos x - sin x)
    np.testing.assert_allclose(t.data, 2 * np.exp(xs) * (np.cos(xs) - np.sin(xs)), rtol=1e-13)


def test_create_graph_false_records_nothing():
    x = ad.tensor(np.array([0.3, 1.2]), requires_grad=True)
    (g,) = ad.grad(ad.sum(ad.exp(x) * x), x)
    assert not g.requires_grad and g.is_leaf
    (g,) = ad.grad(ad.sum(ad.exp(x) * x), x, create_graph=True)
    assert g.requires_grad and not g.is_leaf


# ------------------------------------------------------------------------------------------------ #
# a custom op: batched matrix product whose VJP calls itself                                        #
# ------------------------------------------------------------------------------------------------ #
class BatchedMatmul(ad.Function):
    """``C[b] = A[b] @ B[b]`` in NumPy;  ``Ā = BatchedMatmul(G, Bᵀ)``, ``B̄ = BatchedMatmul(Aᵀ, G)``."""

    calls = 0

    @staticmethod
    def forward(ctx, a, b):
        BatchedMatmul.calls += 1
        return np.matmul(a, b)

    @staticmethod
    def vjp(ctx, g, a, b):
        need_a, need_b = ctx.needs_input_grad
        return (
            BatchedMatmul.apply(g, ad.transpose(b, (0, 2, 1))) if need_a else None,
            BatchedMatmul.apply(ad.transpose(a, (0, 2, 1)), g) if need_b else None,
        )


@given(b=st.integers(1, 3), n=st.integers(1, 3), k=st.integers(1, 3), m=st.integers(1, 3), seed=seeds)
def test_custom_bilinear_op(b, n, k, m, seed):
    rng = np.random.default_rng(seed)
    a, c = rng.standard_normal((b, n, k)), rng.standard_normal((b, k, m))
    check_vjp(BatchedMatmul.apply, [a, c], seed)

    def f(a, c):
        return ad.sum(ad.tanh(BatchedMatmul.apply(a, c)) ** 2) + ad.sum(
            BatchedMatmul.apply(a, c) * ad.einsum("bnk,bkm->bnm", a, c)
        )

    check_hvp(f, [a, c], seed)
    before = BatchedMatmul.calls
    hvp(f, [a, c], [a, c])
    assert BatchedMatmul.calls > before + 2  # the second derivative went through the custom op again


# ------------------------------------------------------------------------------------------------ #
# mini force training: dL/dθ with L = |F(θ) - F_ref|², F = -∂E/∂r                                 #
# ------------------------------------------------------------------------------------------------ #
N_ATOMS, N_BASIS = 5, 4
PAIRS = np.array([(i, j) for i in range(N_ATOMS) for j in range(N_ATOMS) if i != j])
CENTERS = np.linspace(0.8, 2.4, N_BASIS)
MIN_DISTANCE = 0.3  # Å


def energy(r: ad.Tensor, c: ad.Tensor, alpha: ad.Tensor, w: ad.Tensor, strain: ad.Tensor | None = None) -> ad.Tensor:
    """``E = Σ_i silu(Σ_{j≠i} exp(-α d_ij) Σ_k c_k exp(-(d_ij - μ_k)²)) + Σ_ij (u_ij · W u_ij)`` (toy model).

    ``r``: (N, 3) positions; ``c``: (K,), ``alpha``: (), ``w``: (3, 3) parameters; ``strain``: (3, 3)
    deformation ``ε`` applied as ``r (1 + ε)`` (for the stress ``∂E/∂ε``).
    """
    if strain is not None:
        r = r + r @ strain
    i, j = r.xp.asarray(PAIRS[:, 0]), r.xp.asarray(PAIRS[:, 1])  # constants on r's device
    centers = r.xp.asarray(CENTERS, dtype=r.dtype)  # a float64 constant would promote float32
    d_vec = ad.index_select(r, j) - ad.index_select(r, i)  # (P, 3)
    d = ad.sqrt(ad.einsum("pa,pa->p", d_vec, d_vec))  # (P,)
    basis = ad.exp(-((ad.reshape(d, (-1, 1)) - centers) ** 2))  # (P, K)
    pair = ad.einsum("pk,k->p", basis, c) * ad.exp(-alpha * d)
    atom = ad.segment_sum(pair, i, N_ATOMS)  # (N,)
    u = d_vec / ad.reshape(d, (-1, 1))
    return ad.sum(ad.silu(atom)) + 0.1 * ad.sum(ad.einsum("pa,ab,pb->p", u, w, u) * ad.exp(-d))


def system(seed: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    while True:  # atoms at least MIN_DISTANCE apart: closer pairs make the finite differences, not the model, inexact
        r = rng.uniform(0.0, 2.0, (N_ATOMS, 3)) + 1.2 * np.arange(N_ATOMS)[:, None] * np.array([1.0, 0.0, 0.0])
        if np.linalg.norm(r[PAIRS[:, 1]] - r[PAIRS[:, 0]], axis=1).min() >= MIN_DISTANCE:
            break
    theta = [rng.standard_normal(N_BASIS), np.asarray(rng.uniform(0.2, 0.8)), rng.standard_normal((3, 3))]
    return r, theta, rng.standard_normal((N_ATOMS, 3))


def force_loss(r: np.ndarray, f_ref: np.ndarray, *theta: ad.Tensor) -> ad.Tensor:
    rt = ad.tensor(r, requires_grad=True)
    (de_dr,) = ad.grad(energy(rt, *theta), rt, create_graph=True)
    return ad.sum((-de_dr - f_ref) ** 2)


@given(seed=seeds)
def test_forces_and_stress(seed):
    r, theta, _ = system(seed)
    rt, th = ad.tensor(r, requires_grad=True), [ad.tensor(t, requires_grad=True) for t in theta]
    strain = ad.tensor(np.zeros((3, 3)), requires_grad=True)
    de_dr, de_deps = ad.grad(energy(rt, *th, strain), [rt, strain])
    num_r, num_eps = fd_grad(
        lambda xs: float(energy(*map(ad.constant, [xs[0], *theta, xs[1]])).data), [r, np.zeros((3, 3))]
    )
    assert_close(-de_dr.data, -num_r)
    assert_close(de_deps.data, num_eps)
    np.testing.assert_allclose(de_dr.data.sum(0), 0.0, atol=1e-12)  # translation invariance


@given(seed=seeds)
def test_force_training_gradient(seed):
    r, theta, f_ref = system(seed)
    th = [ad.tensor(t, requires_grad=True) for t in theta]
    loss = force_loss(r, f_ref, *th)
    analytic = ad.grad(loss, th)
    numeric = fd_grad(lambda ts: float(force_loss(r, f_ref, *map(ad.constant, ts)).data), theta)
    for a, n in zip(analytic, numeric):
        assert_close(a.data, n)


def test_force_training_float32():
    r, theta, f_ref = system(3)
    th = [ad.tensor(np.asarray(t, dtype=np.float32), requires_grad=True) for t in theta]
    loss = force_loss(r.astype(np.float32), f_ref.astype(np.float32), *th)
    grads = ad.grad(loss, th)
    assert loss.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    th64 = [ad.tensor(t, requires_grad=True) for t in theta]
    for g32, g64 in zip(grads, ad.grad(force_loss(r, f_ref, *th64), th64)):
        np.testing.assert_allclose(g32.data, g64.data, rtol=2e-3, atol=2e-3 * np.abs(g64.data).max())


# ------------------------------------------------------------------------------------------------ #
# CuPy                                                                                             #
# ------------------------------------------------------------------------------------------------ #
@pytest.mark.gpu
def test_cupy_matches_numpy():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no GPU")
    except cp.cuda.runtime.CUDARuntimeError:
        pytest.skip("no usable CUDA device")

    r, theta, f_ref = system(5)
    for dtype, rtol in [(np.float64, 1e-10), (np.float32, 2e-3)]:
        th_np = [ad.tensor(np.asarray(t, dtype), requires_grad=True) for t in theta]
        th_cp = [ad.tensor(cp.asarray(np.asarray(t, dtype)), requires_grad=True) for t in theta]
        loss_np = force_loss(r.astype(dtype), f_ref.astype(dtype), *th_np)
        loss_cp = force_loss(cp.asarray(r, dtype), cp.asarray(f_ref, dtype), *th_cp)
        assert type(loss_cp.data).__module__.startswith("cupy") and loss_cp.dtype == dtype
        for g_np, g_cp in zip(ad.grad(loss_np, th_np), ad.grad(loss_cp, th_cp)):
            assert g_cp.dtype == dtype
            np.testing.assert_allclose(cp.asnumpy(g_cp.data), g_np.data, rtol=rtol, atol=rtol * np.abs(g_np.data).max())
    x = ad.tensor(cp.arange(6.0).reshape(3, 2), requires_grad=True)
    with pytest.raises(TypeError, match="mix NumPy and CuPy"):
        ad.add(x, np.ones(2))


def test_design_note_examples_run():
    """The examples of docs/autodiff.md and of the package docstring are doctests."""
    import doctest
    from pathlib import Path

    note = Path(__file__).resolve().parents[2] / "docs" / "autodiff.md"
    result = doctest.testfile(str(note), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 15 and result.failed == 0
    result = doctest.testmod(ad)
    assert result.attempted >= 3 and result.failed == 0
