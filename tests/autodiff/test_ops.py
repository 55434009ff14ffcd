"""First derivatives of every primitive against central finite differences (float64), and the errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlip import autodiff as ad

TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)


# ------------------------------------------------------------------------------------------------ #
# checking machinery (also used by test_higher_order)                                              #
# ------------------------------------------------------------------------------------------------ #
def fd_grad(f: Callable[[list[np.ndarray]], float], xs: Sequence[np.ndarray], h: float = 1e-3) -> list[np.ndarray]:
    """Five-point central differences ``(8[f(x+h)-f(x-h)] - [f(x+2h)-f(x-2h)]) / 12h`` of a scalar ``f``."""
    out = []
    for i, x in enumerate(xs):
        g = np.zeros(x.shape)
        for j in np.ndindex(x.shape):

            def at(d: float, i: int = i, j: tuple[int, ...] = j) -> float:
                ys = [np.array(y, dtype=np.float64) for y in xs]
                ys[i][j] += d
                return f(ys)

            g[j] = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h)
        out.append(g)
    return out


def assert_close(actual: np.ndarray, expected: np.ndarray, tol: float = TOL) -> None:
    """``max |actual - expected| <= tol * max(max |expected|, 1e-3)`` (relative, with a floor)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-3)
    err = float(np.abs(actual - expected).max(initial=0.0))
    assert err <= tol * scale, f"error {err:.3e} > {tol:.0e} * {scale:.3e}"


def check_vjp(f: Callable[..., ad.Tensor], arrays: Sequence[np.ndarray], seed: int = 0, tol: float = TOL) -> None:
    """``grad(f(x), x, grad_outputs=w)`` against finite differences of ``<f(x), w>`` for a random ``w``."""
    ts = [ad.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    y = f(*ts)
    w = np.random.default_rng(seed).standard_normal(y.shape)
    analytic = ad.grad(y, ts, grad_outputs=w)
    numeric = fd_grad(lambda xs: float(np.sum(f(*[ad.constant(x) for x in xs]).data * w)), [t.data for t in ts])
    for a, n in zip(analytic, numeric):
        assert not a.requires_grad
        assert_close(a.data, n, tol)


def uniform(rng: np.random.Generator, shape: tuple[int, ...], lo: float = -2.0, hi: float = 2.0) -> np.ndarray:
    return rng.uniform(lo, hi, size=shape)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


def test_checker_detects_a_wrong_vjp():
    """The finite-difference check can fail: a VJP off by a factor 1 + 1e-5 is caught."""

    class Cube(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x**3

        @staticmethod
        def vjp(ctx, g, x):
            return (g * x * x * (3 * (1 + 1e-5)),)

    with pytest.raises(AssertionError):
        check_vjp(Cube.apply, [np.array([0.3, -1.2, 2.0])])


# ------------------------------------------------------------------------------------------------ #
# elementwise                                                                                      #
# ------------------------------------------------------------------------------------------------ #
UNARY = {
    "exp": (ad.exp, np.exp, (-2.0, 2.0)),
    "log": (ad.log, np.log, (0.5, 3.0)),
    "sqrt": (ad.sqrt, np.sqrt, (0.5, 3.0)),
    "sin": (ad.sin, np.sin, (-3.0, 3.0)),
    "cos": (ad.cos, np.cos, (-3.0, 3.0)),
    "tanh": (ad.tanh, np.tanh, (-2.0, 2.0)),
    "sigmoid": (ad.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-4.0, 4.0)),
    "silu": (ad.silu, lambda x: x / (1 + np.exp(-x)), (-4.0, 4.0)),
    "neg": (lambda x: -x, np.negative, (-2.0, 2.0)),
    "pow2": (lambda x: x**2, np.square, (-2.0, 2.0)),
    "pow3": (lambda x: x**3, lambda x: x**3, (-2.0, 2.0)),
    "pow_half": (lambda x: x**0.5, np.sqrt, (0.5, 3.0)),
    "pow_neg": (lambda x: ad.power(x, -1.5), lambda x: x**-1.5, (0.5, 3.0)),
    "pow0": (lambda x: x**0 * x, lambda x: x, (-2.0, 2.0)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=shapes, seed=seeds)
def test_unary(name, shape, seed):
    f, ref, (lo, hi) = UNARY[name]
    x = uniform(np.random.default_rng(seed), shape, lo, hi)
    np.testing.assert_allclose(f(ad.constant(x)).data, ref(x), rtol=1e-13, atol=1e-15)
    check_vjp(f, [x], seed)


def test_sigmoid_does_not_overflow():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = ad.sigmoid(ad.constant(x)).data
    assert np.all(np.isfinite(y)) and y[0] == 0.0 and y[-1] == 1.0 and y[2] == 0.5


BINARY = {
    "add": (ad.add, np.add),
    "sub": (ad.sub, np.subtract),
    "mul": (ad.mul, np.multiply),
    "div": (ad.div, np.divide),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), seed=seeds)
def test_binary_broadcasting(name, shapes, seed):
    f, ref = BINARY[name]
    rng = np.random.default_rng(seed)
    a, b = uniform(rng, shapes.input_shapes[0]), away_from_zero(rng, shapes.input_shapes[1])
    np.testing.assert_allclose(f(ad.constant(a), ad.constant(b)).data, ref(a, b), rtol=1e-14)
    check_vjp(f, [a, b], seed)


@given(seed=seeds)
def test_operators_and_scalars(seed):
    rng = np.random.default_rng(seed)
    x, c = uniform(rng, (2, 3)), away_from_zero(rng, (3,))

    def f(x):
        return (2.0 - x) * 3 + x / 1.5 - 0.5 / (x * x + 1) + c * x - (-x) ** 2 + ad.reshape(x @ c, (2, 1))

    check_vjp(lambda x: f(x), [x], seed)


@given(shape=shapes, seed=seeds)
def test_mask_by_constant(shape, seed):
    rng = np.random.default_rng(seed)
    x, mask = uniform(rng, shape), (rng.random(shape) < 0.5).astype(np.float64)
    check_vjp(lambda x: ad.exp(x) * mask, [x], seed)
    t = ad.tensor(x, requires_grad=True)
    (g,) = ad.grad(ad.sum(ad.exp(t) * mask), t)
    np.testing.assert_array_equal(g.data, np.exp(x) * mask)


# ------------------------------------------------------------------------------------------------ #
# reductions and shapes                                                                            #
# ------------------------------------------------------------------------------------------------ #
@st.composite
def shape_and_axis(draw):
    shape = draw(shapes)
    kind = draw(st.sampled_from(["none", "int", "tuple"])) if shape else "none"
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-len(shape), len(shape) - 1))
    else:
        axis = tuple(draw(st.permutations(range(len(shape))))[: draw(st.integers(0, len(shape)))])
    return shape, axis


@given(case=shape_and_axis(), keepdims=st.booleans(), seed=seeds)
def test_sum_and_mean(case, keepdims, seed):
    shape, axis = case
    x = uniform(np.random.default_rng(seed), shape)
    np.testing.assert_allclose(ad.sum(ad.constant(x), axis, keepdims).data, np.sum(x, axis, keepdims=keepdims))
    np.testing.assert_allclose(ad.mean(ad.constant(x), axis, keepdims).data, np.mean(x, axis, keepdims=keepdims))
    check_vjp(lambda x: ad.sum(x * x, axis, keepdims), [x], seed)
    check_vjp(lambda x: ad.mean(ad.sin(x), axis, keepdims), [x], seed)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=1, max_dims=3, max_side=3), seed=seeds)
def test_broadcast_to_and_sum_to(shapes, seed):
    (src,), dst = shapes.input_shapes, shapes.result_shape
    x = uniform(np.random.default_rng(seed), src)
    check_vjp(lambda x: ad.broadcast_to(x, dst) ** 2, [x], seed)
    y = uniform(np.random.default_rng(seed + 1), dst)
    check_vjp(lambda y: ad.sum_to(ad.sin(y), src), [y], seed)


@given(shape=shapes, seed=seeds)
def test_reshape_and_transpose(shape, seed):
    rng = np.random.default_rng(seed)
    x = uniform(rng, shape)
    perm = tuple(rng.permutation(len(shape)))
    check_vjp(lambda x: ad.reshape(x * x, (-1,)), [x], seed)
    check_vjp(lambda x: ad.exp(x).reshape(int(np.prod(shape)), 1), [x], seed)
    np.testing.assert_array_equal(ad.transpose(ad.constant(x), perm).data, np.transpose(x, perm))
    check_vjp(lambda x: ad.transpose(ad.sin(x), perm), [x], seed)
    if len(set(shape)) <= 1:  # square: x and its transpose in one product
        check_vjp(lambda x: ad.transpose(x, perm) * ad.transpose(x), [x], seed)


def test_stop_gradient():
    x = ad.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (g,) = ad.grad(ad.sum(x * ad.stop_gradient(x)), x)
    np.testing.assert_array_equal(g.data, x.data)
    (g,) = ad.grad(ad.sum(x * x.detach() + x), x)
    np.testing.assert_array_equal(g.data, x.data + 1)


# ------------------------------------------------------------------------------------------------ #
# einsum                                                                                           #
# ------------------------------------------------------------------------------------------------ #
@st.composite
def einsum_cases(draw):
    """Random equations over letters abcd: 1-3 operands, repeated indices, free output order."""
    sizes = {c: draw(st.integers(1, 3)) for c in "abcd"}
    subs = [draw(st.text(alphabet="abcd", max_size=3)) for _ in range(draw(st.integers(1, 3)))]
    present = sorted(set("".join(subs)))
    out = "".join(draw(st.permutations(present))[: draw(st.integers(0, len(present)))])
    explicit = draw(st.booleans())
    eq = ",".join(subs) + ("->" + out if explicit else "")
    return eq, [tuple(sizes[c] for c in s) for s in subs]


@given(case=einsum_cases(), seed=seeds)
def test_einsum_random_equations(case, seed):
    eq, in_shapes = case
    rng = np.random.default_rng(seed)
    xs = [uniform(rng, s) for s in in_shapes]
    np.testing.assert_allclose(ad.einsum(eq, *map(ad.constant, xs)).data, np.einsum(eq, *xs), rtol=1e-12, atol=1e-12)
    check_vjp(lambda *ts: ad.einsum(eq, *ts), xs, seed)


EINSUMS = {
    "bij,bjk->bik": [(2, 3, 4), (2, 4, 2)],  # batched matmul
    "i,j->ij": [(3,), (4,)],  # outer product
    "ii->": [(3, 3)],  # trace
    "ii->i": [(3, 3)],  # diagonal
    "iij,jk->ik": [(2, 2, 3), (3, 2)],
    "ij,jk,kl->il": [(2, 3), (3, 4), (4, 2)],  # chain
    "...ij,...jk->...ik": [(2, 2, 3), (2, 3, 2)],  # ellipsis
    "ij,jk": [(2, 3), (3, 2)],  # implicit output
    "i...,i->...": [(3, 2, 2), (3,)],
    "ij->": [(2, 3)],
    "ab,c->abc": [(2, 2), (3,)],
}


@pytest.mark.parametrize("eq", sorted(EINSUMS))
def test_einsum_named(eq):
    rng = np.random.default_rng(1)
    xs = [uniform(rng, s) for s in EINSUMS[eq]]
    np.testing.assert_allclose(ad.einsum(eq, *map(ad.constant, xs)).data, np.einsum(eq, *xs), rtol=1e-12)
    check_vjp(lambda *ts: ad.einsum(eq, *ts), xs)


@pytest.mark.parametrize("eq", ["ij,ij->", "ij,jk->ik", "i,j->ij", "ij,kj,ik->", "ii,ij->j"])
@given(seed=seeds)
def test_einsum_repeated_operand(eq, seed):
    """The same Tensor in several operand slots: cotangents of each slot accumulate."""
    subs = eq.split("->")[0].split(",")
    x = uniform(np.random.default_rng(seed), (3,) * len(subs[0]))
    n = len(subs)
    check_vjp(lambda x: ad.einsum(eq, *([x] * n)), [x], seed)


@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((3,), (3,)),
        ((2, 3), (3,)),
        ((3,), (3, 2)),
        ((2, 3), (3, 4)),
        ((2, 2, 3), (2, 3, 2)),
        ((2, 4, 3), (3, 2)),  # batched @ unbatched
        ((3,), (2, 3, 4)),
        ((2, 2, 3), (3,)),
    ],
)
def test_matmul(sa, sb):
    rng = np.random.default_rng(2)
    a, b = uniform(rng, sa), uniform(rng, sb)
    np.testing.assert_allclose((ad.constant(a) @ ad.constant(b)).data, a @ b, rtol=1e-13)
    check_vjp(lambda a, b: a @ b, [a, b])


def test_einsum_errors():
    a, b = ad.constant(np.ones((2, 3))), ad.constant(np.ones((4, 2)))
    with pytest.raises(ValueError, match="index 'j' has size 3 and 4"):
        ad.einsum("ij,jk->ik", a, b)
    with pytest.raises(ValueError, match="2 operands but 1"):
        ad.einsum("ij,jk->ik", a)
    with pytest.raises(ValueError, match="has 2 dimensions but subscripts 'ijk'"):
        ad.einsum("ijk->i", a)
    with pytest.raises(ValueError, match="output subscripts"):
        ad.einsum("ij->iz", a)


# ------------------------------------------------------------------------------------------------ #
# gather / scatter, indexing, concatenation                                                        #
# ------------------------------------------------------------------------------------------------ #
@st.composite
def gather_cases(draw):
    n = draw(st.integers(1, 5))
    idx = np.array(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8)), dtype=np.int64)
    trailing = draw(st.sampled_from([(), (2,), (3, 4)]))  # (3, 4) takes the add.at path of segment_sum
    return n, idx, trailing


@given(case=gather_cases(), seed=seeds)
def test_index_select_and_segment_sum(case, seed):
    n, idx, trailing = case
    rng = np.random.default_rng(seed)
    x, e = uniform(rng, (n, *trailing)), uniform(rng, (len(idx), *trailing))
    ref = np.zeros((n, *trailing))
    for k, i in enumerate(idx):
        ref[i] += e[k]
    np.testing.assert_allclose(ad.segment_sum(ad.constant(e), idx, n).data, ref, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(ad.index_select(ad.constant(x), idx).data, x[idx])
    check_vjp(lambda x: ad.index_select(x, idx) ** 2, [x], seed)
    check_vjp(lambda e: ad.segment_sum(ad.sin(e), idx, n), [e], seed)
    check_vjp(lambda x: ad.segment_sum(ad.index_select(x, idx) * ad.index_select(x, idx[::-1]), idx, n), [x], seed)


def test_gather_scatter_errors():
    x = ad.constant(np.ones((3, 2)))
    with pytest.raises(TypeError, match="1-D integer"):
        ad.index_select(x, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="does not match"):
        ad.segment_sum(x, np.array([0, 1]), 2)
    with pytest.raises(IndexError):
        ad.segment_sum(x, np.array([0, 1, 5]), 2)


KEYS = [
    (slice(None), 1),
    (slice(1, None, 2),),
    (Ellipsis, slice(None, None, -1)),
    (None, 0, slice(0, 2)),
    (-1,),
    (np.array([0, 2, 2, 0]),),
    (slice(None), np.array([1, 1])),
    (np.array([1, 0]), np.array([2, 2])),
]


@pytest.mark.parametrize("key", KEYS, ids=[str(i) for i in range(len(KEYS))])
@given(seed=seeds)
def test_getitem(key, seed):
    x = uniform(np.random.default_rng(seed), (3, 3))
    np.testing.assert_array_equal(ad.constant(x)[key].data, x[key])
    check_vjp(lambda x: ad.exp(x)[key], [x], seed)
    y = uniform(np.random.default_rng(seed + 1), x[key].shape)
    check_vjp(lambda y: ad.index_add(ad.sin(y), key, x.shape), [y], seed)  # the adjoint op


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), n=st.integers(1, 3), seed=seeds, data=st.data())
def test_concatenate_and_stack(shape, n, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    a = axis % len(shape)
    xs = [uniform(rng, (*shape[:a], k + 1, *shape[a + 1 :])) for k in range(n)]
    np.testing.assert_array_equal(ad.concatenate([ad.constant(x) for x in xs], axis).data, np.concatenate(xs, axis))
    check_vjp(lambda *ts: ad.concatenate([t * t for t in ts], axis), xs, seed)
    ys = [uniform(rng, shape) for _ in range(n)]
    np.testing.assert_array_equal(ad.stack([ad.constant(y) for y in ys], axis).data, np.stack(ys, axis))
    check_vjp(lambda *ts: ad.stack([ad.sin(t) for t in ts], axis), ys, seed)


# ------------------------------------------------------------------------------------------------ #
# engine behaviour                                                                                 #
# ------------------------------------------------------------------------------------------------ #
def test_accumulation_does_not_corrupt_shared_cotangents():
    """One cotangent array reaches several inputs (``a + b``); in-place accumulation must not leak."""
    x = ad.tensor(np.array([1.0, 2.0]), requires_grad=True)
    a, b = x * 1.0, x * 1.0
    y = a + b  # both operands receive the same cotangent array
    z = ad.sum((y + a + a + b) * np.array([1.0, 10.0]))  # a: 3 contributions, b: 2
    ga, gb, gx = ad.grad(z, [a, b, x])
    np.testing.assert_array_equal(ga.data, [3.0, 30.0])
    np.testing.assert_array_equal(gb.data, [2.0, 20.0])
    np.testing.assert_array_equal(gx.data, [5.0, 50.0])


def test_graph_is_reusable_and_results_are_constants():
    x = ad.tensor(np.linspace(-1, 1, 4), requires_grad=True)
    w = ad.tensor(np.ones(4), requires_grad=True)
    y = ad.sum(ad.exp(x) * w)
    (g1,) = ad.grad(y, x)
    g2, gw = ad.grad(y, [x, w])
    assert g1.is_leaf and not g1.requires_grad
    np.testing.assert_array_equal(g1.data, g2.data)
    np.testing.assert_allclose(gw.data, np.exp(x.data))
    (g,) = ad.grad(ad.sum(x), x)  # a broadcast view inside; the result is a plain writable array
    g.data[0] = 5.0


def test_grad_of_intermediate_and_multiple_outputs():
    x = ad.tensor(np.array([0.5, -1.0]), requires_grad=True)
    h = ad.sin(x)
    y1, y2 = ad.sum(h * h), h * 3.0
    gh, gx = ad.grad([y1, y2], [h, x], grad_outputs=[None, np.array([1.0, 2.0])])
    np.testing.assert_allclose(gh.data, 2 * h.data + [3.0, 6.0])
    np.testing.assert_allclose(gx.data, (2 * h.data + [3.0, 6.0]) * np.cos(x.data))


def test_engine_errors():
    x = ad.tensor(np.ones(3), requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError, match="non-scalar output needs grad_outputs"):
        ad.grad(y, x)
    with pytest.raises(ValueError, match="grad_outputs"):
        ad.grad(y, x, grad_outputs=np.ones(4))
    with pytest.raises(TypeError, match="only floating-point"):
        ad.tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="only floating-point"):
        ad.grad(ad.sum(y), ad.constant(np.arange(3)))
    z = ad.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="not used"):
        ad.grad(ad.sum(y), [x, z])
    assert ad.grad(ad.sum(y), [x, z], allow_unused=True)[1] is None
    with pytest.raises(TypeError, match="exponent"):
        _ = x**x

    class BadShape(ad.Function):
        @staticmethod
        def forward(ctx, a):
            return a.sum()

        @staticmethod
        def vjp(ctx, g, a):
            return (g,)

    with pytest.raises(ValueError, match=r"BadShape.vjp: gradient 0 has shape \(\)"):
        ad.grad(BadShape.apply(x), x)


class FakeCupyArray(np.ndarray):
    """A NumPy array whose type claims to come from CuPy (to test mixing without a GPU)."""

    __module__ = "cupy._core.fake"


def test_mixing_numpy_and_cupy_is_an_error():
    a = ad.constant(np.ones(3))
    b = ad.Tensor(np.ones(3).view(FakeCupyArray))
    with pytest.raises(TypeError, match="mix NumPy and CuPy"):
        ad.add(a, b)
    with pytest.raises(TypeError, match="mix NumPy and CuPy"):
        ad.index_select(a, np.zeros(2, dtype=np.int64).view(FakeCupyArray))


def test_float32_is_kept_through_forward_and_backward():
    rng = np.random.default_rng(0)
    x = ad.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    w = ad.tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True)
    idx = np.array([0, 1, 1, 3])
    h = ad.silu(x @ w) * 2.0 + 1 - ad.tanh(x[:, :2]) / 3.0
    h = ad.segment_sum(ad.index_select(h, idx) ** 2, idx, 4) + ad.sqrt(ad.exp(ad.cos(h)) + 0.5)
    y = ad.sum(ad.log(ad.sigmoid(ad.concatenate([h, ad.sin(h)], 1)) + 1.0)) * np.float64(0.5)

    seen, stack = set(), [y]
    while stack:
        t = stack.pop()
        if id(t) not in seen:
            seen.add(id(t))
            assert t.dtype == np.float32, t
            stack.extend(t._inputs)
    gx, gw = ad.grad(y, [x, w], create_graph=True)
    assert gx.dtype == gw.dtype == np.float32
    (hx,) = ad.grad(ad.sum(gx * gx) + ad.sum(gw), x)
    assert hx.dtype == np.float32
