"""Generated tensor-product kernels: properties checked with Hypothesis against independent references."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps._validate import parity_of, triples
from cartesian_irreps.runtime import contractions, tables
from cartesian_irreps.runtime.layouts import to_full
from cartesian_irreps.runtime.products import tensor_product, tensor_product_vjp
from cartesian_irreps.symbolic.coupling import derive_coupling
from cartesian_irreps.testing import assert_equivariant, assert_matches_reference, assert_vjp
from tests.runtime.strategies import DTYPES, RTOL, SHARED, TRIPLES, operand_shapes, rel_err

batch_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)
NORMS = st.sampled_from(["unit", "published", "raw"])


def _draw(triple, shared, batch, channels, dtype, seed):
    rng = np.random.default_rng(seed)
    xs, ys, zs = operand_shapes(triple, shared, batch, channels)
    return (
        rng.standard_normal(xs).astype(dtype),
        rng.standard_normal(ys).astype(dtype),
        rng.standard_normal(zs).astype(dtype),
    )


@given(TRIPLES, SHARED, batch_shapes, st.integers(1, 4), DTYPES, st.integers(0, 10**6), NORMS)
def test_equivariance_with_pseudotensor_sign(triple, shared, batch, channels, dtype, seed, norm):
    """z(g x, g y) = det(g)^parity g z(x, y) for random rotations, inversion, a mirror and rotoreflections."""
    x, y, _ = _draw(triple, shared, batch, channels, dtype, seed)
    l1, l2, l3 = triple
    assert_equivariant(
        lambda a, b: tensor_product(a, b, *triple, shared=shared, normalization=norm),
        (l1, l2),
        l3,
        parity_out=1 if parity_of(*triple) == "odd" else 0,
        inputs=(x, y),
        rng=seed,
        rotations=2,
        rtol=50 * RTOL[dtype],
    )


@given(TRIPLES, SHARED, batch_shapes, st.integers(1, 3), st.integers(0, 10**6), st.floats(-3, 3))
def test_bilinear(triple, shared, batch, channels, seed, s):
    x, y, _ = _draw(triple, shared, batch, channels, np.float64, seed)
    x2, y2, _ = _draw(triple, shared, batch, channels, np.float64, seed + 1)
    lhs = tensor_product(x + s * x2, y, *triple, shared=shared)
    rhs = tensor_product(x, y, *triple, shared=shared) + s * tensor_product(x2, y, *triple, shared=shared)
    assert_matches_reference(lambda: lhs, lambda: rhs, rtol=1e-12)
    lhs = tensor_product(x, y + s * y2, *triple, shared=shared)
    rhs = tensor_product(x, y, *triple, shared=shared) + s * tensor_product(x, y2, *triple, shared=shared)
    assert_matches_reference(lambda: lhs, lambda: rhs, rtol=1e-12)


@given(st.sampled_from(triples(3)), st.lists(st.fractions(-3, 3, max_denominator=7), min_size=14, max_size=14), NORMS)
def test_matches_exact_sympy_evaluation(triple, values, norm):
    """float64 result within 1e-12 (relative) of the exact product of rational inputs."""
    l1, l2, l3 = triple
    xv = values[: 2 * l1 + 1]
    yv = values[7 : 7 + 2 * l2 + 1]
    c = np.array(derive_coupling(*triple, norm).compact().tolist(), dtype=object)
    exact = [
        sum(
            c[i, j, k]
            * sympy.Rational(xv[i].numerator, xv[i].denominator)
            * sympy.Rational(yv[j].numerator, yv[j].denominator)
            for i in range(2 * l1 + 1)
            for j in range(2 * l2 + 1)
        )
        for k in range(2 * l3 + 1)
    ]
    exact = np.array([float(sympy.N(e, 30)) for e in exact])
    x = np.array([float(Fraction(v)) for v in xv]).reshape(1, 1, -1)
    y = np.array([float(Fraction(v)) for v in yv]).reshape(1, 1, -1)
    z = tensor_product(x, y, *triple, normalization=norm).ravel()
    scale = max(np.abs(exact).max(), 1e-300)
    assert np.abs(z - exact).max() <= 1e-12 * scale + 1e-300


@given(TRIPLES, SHARED, st.integers(1, 3), DTYPES, st.integers(0, 10**6))
def test_all_strategies_agree(triple, shared, channels, dtype, seed):
    x, y, g = _draw(triple, shared, (3,), channels, dtype, seed)
    kind = "pair" if shared is None else "shared"
    tol = 10 * RTOL[dtype]

    def product(strategy):
        return lambda a, b: tensor_product(a, b, *triple, shared=shared, strategy=strategy)

    def vjp(wrt, strategy):
        return lambda a, b: tensor_product_vjp(g, a, b, *triple, shared=shared, wrt=(wrt,), strategy=strategy)[0]

    applicable = {s for s in contractions.STRATEGIES["pair"] if s != "diagonal" or 0 in triple}
    for s in contractions.STRATEGIES[kind]:
        if s in applicable:
            assert_matches_reference(product(s), product("einsum"), x, y, rtol=tol)
    kinds = {"pair": ("pair", "pair"), "shared": ("shared", "reduce")}[kind]
    for sx in (s for s in contractions.STRATEGIES[kinds[0]] if s in applicable):
        for sy in (s for s in contractions.STRATEGIES[kinds[1]] if s in applicable):
            # with a shared x, its VJP is the 'reduce' kind and y's the 'shared' kind
            x_strategy, y_strategy = (sy, sx) if shared == "x" else (sx, sy)
            assert_matches_reference(vjp("x", x_strategy), vjp("x", "einsum"), x, y, rtol=tol)
            assert_matches_reference(vjp("y", y_strategy), vjp("y", "einsum"), x, y, rtol=tol)


@given(TRIPLES, SHARED, batch_shapes, st.integers(1, 3), st.integers(0, 10**6))
def test_vjp_finite_differences_and_adjoint_identity(triple, shared, batch, channels, seed):
    x, y, _ = _draw(triple, shared, batch, channels, np.float64, seed)

    def product(a, b):
        return tensor_product(a, b, *triple, shared=shared)

    def jvp(tangents, a, b):  # the product is bilinear: J (dx, dy) = z(dx, b) + z(a, dy)
        return product(tangents[0], b) + product(a, tangents[1])

    assert_vjp(
        product,
        lambda g, a, b: tensor_product_vjp(g, a, b, *triple, shared=shared),
        (x, y),
        jvp_fn=jvp,
        eps=1e-6,
        rtol=1e-8,  # relative to sum |J^T v * u|: bilinear, so the central difference is exact up to rounding
        atol=1e-12,
        adjoint_rtol=1e-10,
        directions=1,
        rng=np.random.default_rng([seed, 1]),  # a stream apart from the inputs' (v = x would be a special case)
    )


@given(
    st.sampled_from(triples(3)),
    SHARED,
    st.integers(1, 3),
    DTYPES,
    st.integers(0, 10**6),
    st.sampled_from(["convert", "direct", None]),
    NORMS,
)
def test_full_layout_agrees_with_compact(triple, shared, channels, dtype, seed, route, norm):
    l1, l2, l3 = triple
    x, y, g = _draw(triple, shared, (2,), channels, dtype, seed)
    z = tensor_product(x, y, *triple, shared=shared, normalization=norm)
    zf = tensor_product(
        to_full(x, l1), to_full(y, l2), *triple, layout="full", shared=shared, normalization=norm, strategy=route
    )
    assert zf.dtype == dtype
    assert_matches_reference(lambda: zf, lambda: to_full(z, l3), rtol=10 * RTOL[dtype])
    # the full-layout output is symmetric and traceless
    if l3 >= 2:
        assert rel_err(np.swapaxes(zf, -1, -2), zf) < 10 * RTOL[dtype]
        assert np.abs(np.trace(zf, axis1=-1, axis2=-2)).max() < 100 * RTOL[dtype] * max(np.abs(zf).max(), 1)
    gx, gy = tensor_product_vjp(g, x, y, *triple, shared=shared, normalization=norm)
    gxf, gyf = tensor_product_vjp(
        to_full(g, l3), to_full(x, l1), to_full(y, l2), *triple, layout="full", shared=shared, normalization=norm
    )
    assert_matches_reference(lambda: (gxf, gyf), lambda: (to_full(gx, l1), to_full(gy, l2)), rtol=10 * RTOL[dtype])


def test_normalisations_are_consistent():
    x = np.random.default_rng(0).standard_normal((4, 2, 5))
    t = (2, 2, 2)
    raw = tensor_product(x, x, *t, normalization="raw")
    assert np.allclose(tensor_product(x, x, *t, normalization="published"), 2 * raw)  # C' = 2 for (2,2,2)
    assert np.allclose(tables.relative_scale(t, "published") / tables.relative_scale(t, "raw"), 2.0)


def test_published_product_of_harmonics_is_a_harmonic():
    from cartesian_irreps.runtime.harmonics import cartesian_harmonics

    v = np.random.default_rng(3).standard_normal((6, 3))
    t = cartesian_harmonics(v, 4)
    for l1, l2, l3 in triples(4, "even"):
        if max(l1, l2, l3) > 4:
            continue
        z = tensor_product(t[l1][:, None, :], t[l2][:, None, :], l1, l2, l3, normalization="published")[:, 0]
        assert np.allclose(z, t[l3], atol=1e-12), (l1, l2, l3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"l3": 5}, ValueError, "triangle"),
        ({"layout": "spherical"}, ValueError, "layout"),
        ({"normalization": "l2"}, ValueError, "normalisation"),
        ({"shared": "z"}, ValueError, "shared"),
        ({"x": np.zeros((2, 3, 4))}, ValueError, "last axes"),
        ({"y": np.zeros((3, 3, 5))}, ValueError, "must be equal"),
        ({"x": np.zeros((2, 3, 5), np.float32)}, TypeError, "dtypes"),
        ({"x": np.zeros((2, 3, 5), np.int64)}, TypeError, "float32 or float64"),
        ({"x": [[0.0] * 5]}, TypeError, "NumPy or CuPy array"),
        ({"x": np.full((2, 3, 5), np.nan), "check_nan": True}, ValueError, "NaN"),
        ({"strategy": "magic"}, ValueError, "strategy"),
        ({"l1": 9, "l2": 9, "l3": 9}, ValueError, "generated lmax"),
    ],
)
def test_bad_input_gives_clear_errors(kwargs, error, match):
    args = {"x": np.zeros((2, 3, 5)), "y": np.zeros((2, 3, 5)), "l1": 2, "l2": 2, "l3": 2}
    args.update(kwargs)
    if "l1" in kwargs:
        args["x"] = np.zeros((2, 3, 19))
        args["y"] = np.zeros((2, 3, 19))
    with pytest.raises(error, match=match):
        tensor_product(args.pop("x"), args.pop("y"), args.pop("l1"), args.pop("l2"), args.pop("l3"), **args)


def test_vjp_checks_grad_shape():
    x = np.zeros((2, 3, 5))
    with pytest.raises(ValueError, match="grad"):
        tensor_product_vjp(np.zeros((2, 3, 4)), x, x, 2, 2, 2)
    with pytest.raises(ValueError, match="wrt"):
        tensor_product_vjp(np.zeros((2, 3, 5)), x, x, 2, 2, 2, wrt=("w",))


def test_inputs_are_not_modified_and_no_global_state():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 2, 7)), rng.standard_normal((5, 5))
    xc, yc = x.copy(), y.copy()
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global RNG is untouched
    tensor_product(x, y, 3, 2, 1, shared="y")
    tensor_product_vjp(rng.standard_normal((5, 2, 3)), x, y, 3, 2, 1, shared="y")
    assert (x == xc).all() and (y == yc).all()
    assert (np.random.get_state()[1] == state).all()  # noqa: NPY002


@pytest.mark.parametrize("t", [t for t in triples(3) if 0 in t])
@pytest.mark.parametrize("shared", [None, "x", "y"])
def test_diagonal_strategy_for_rank_zero_slots(t, shared):
    """Every product with a rank-0 slot, and its VJPs, by a single elementwise pass."""
    x, y, g = _draw(t, shared, (4,), 3, np.float64, 11)
    assert_matches_reference(
        lambda: tensor_product(x, y, *t, shared=shared, strategy="diagonal"),
        lambda: tensor_product(x, y, *t, shared=shared, strategy="einsum"),
        rtol=1e-14,
    )
    assert_matches_reference(
        lambda: tensor_product_vjp(g, x, y, *t, shared=shared, strategy="diagonal"),
        lambda: tensor_product_vjp(g, x, y, *t, shared=shared, strategy="einsum"),
        rtol=1e-14,
    )
    with pytest.raises(ValueError, match="does not apply"):
        tensor_product(
            *_draw((1, 1, 2), shared, (2,), 2, np.float64, 1)[:2], 1, 1, 2, shared=shared, strategy="diagonal"
        )


@given(
    TRIPLES,
    SHARED,
    st.sampled_from([(0,), (0, 2), (2, 0), (3,)]),
    st.integers(0, 3),
    DTYPES,
    st.sampled_from(["compact", "full"]),
)
def test_empty_batch_or_no_channels_give_empty_results(triple, shared, batch, channels, dtype, layout):
    """Zero rows (or zero channels) give results of the right shape and dtype: empty, or zeros where a
    VJP sums over the (empty) channels of a shared input; with every strategy and route."""
    if int(np.prod(batch)) and channels:
        channels = 0  # a non-empty batch is tested here with no channels
    xs, ys, zs = operand_shapes(triple, shared, batch, channels)
    if layout == "full":
        xs, ys, zs = (s[:-1] + (3,) * l for s, l in zip((xs, ys, zs), triple))
    x, y, g = np.ones(xs, dtype), np.ones(ys, dtype), np.ones(zs, dtype)
    kind = "pair" if shared is None else "shared"
    routes = ["direct", "convert"] if layout == "full" else list(contractions.STRATEGIES[kind])
    for strategy in [None, *(s for s in routes if s != "diagonal" or 0 in triple)]:
        z = tensor_product(x, y, *triple, layout=layout, shared=shared, strategy=strategy)
        assert z.shape == zs and z.dtype == dtype and not z.any(), strategy
    gx, gy = tensor_product_vjp(g, x, y, *triple, layout=layout, shared=shared)
    assert gx.shape == xs and gy.shape == ys and gx.dtype == gy.dtype == dtype
    assert not gx.any() and not gy.any()
