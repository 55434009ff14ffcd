"""The public test helpers: each one passes on correct code and raises AssertionError on broken code."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartesian_irreps._validate import parity_of, triples
from cartesian_irreps.runtime import cartesian_harmonics, tensor_product, tensor_product_vjp
from cartesian_irreps.testing import (
    assert_equivariant,
    assert_matches_reference,
    assert_vjp,
    random_orthogonal,
    representation,
    transform,
)

DTYPES = st.sampled_from([np.float64, np.float32])
SEEDS = st.integers(0, 10**6)
TRIPLES = st.sampled_from(triples(3))
LAYOUTS = st.sampled_from(["compact", "full"])


def _levi_civita() -> np.ndarray:
    eps = np.zeros((3, 3, 3))
    eps[0, 1, 2] = eps[1, 2, 0] = eps[2, 0, 1] = 1
    eps[0, 2, 1] = eps[2, 1, 0] = eps[1, 0, 2] = -1
    return eps


def _norm_scaled(x: np.ndarray, l: int, layout: str) -> np.ndarray:
    """x * |x|^2 over the tensor axes: equivariant in both layouts (|x| is O(3) invariant)."""
    axes = tuple(range(x.ndim - (1 if layout == "compact" else l), x.ndim))
    return x * (x * x).sum(axis=axes, keepdims=True) if axes else x * x * x


# --------------------------------------------------------------------------- representation
@given(st.integers(0, 6), SEEDS)
def test_representation_is_an_orthogonal_homomorphism(l, seed):
    rng = np.random.default_rng(seed)
    g1, g2 = random_orthogonal(rng), random_orthogonal(rng, improper=True)
    d1, d2, d12 = representation(g1, l), representation(g2, l), representation(g1 @ g2, l)
    assert np.allclose(d12, d1 @ d2, atol=1e-12)
    assert np.allclose(d1 @ d1.T, np.eye(2 * l + 1), atol=1e-12)
    assert np.allclose(representation(-np.eye(3), l), (-1) ** l * np.eye(2 * l + 1), atol=1e-12)
    if l == 1:  # compact rank 1 is (x, y, z) itself
        assert np.allclose(d1, g1, atol=1e-14)


@given(SEEDS, st.booleans())
def test_random_orthogonal_and_transform(seed, improper):
    g = random_orthogonal(seed, improper)
    assert np.allclose(g @ g.T, np.eye(3), atol=1e-13)
    assert np.isclose(np.linalg.det(g), -1.0 if improper else 1.0)
    v = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    moved = transform(v, 1, g, layout="full", parity=1)
    assert moved.dtype == np.float32
    assert np.allclose(moved, np.linalg.det(g) * v @ g.T, atol=1e-5)


# --------------------------------------------------------------------------- assert_equivariant
@given(TRIPLES, DTYPES, SEEDS, LAYOUTS, st.sampled_from([None, "x", "y"]))
def test_products_pass_and_wrong_parity_fails(triple, dtype, seed, layout, shared):
    l1, l2, l3 = triple
    parity = 1 if parity_of(*triple) == "odd" else 0
    batch = [(2, 3) if shared != "x" else (2,), (2, 3) if shared != "y" else (2,)]

    def fn(x, y):
        return tensor_product(x, y, *triple, layout=layout, shared=shared)

    assert_equivariant(fn, (l1, l2), l3, parity_out=parity, layout=layout, dtype=dtype, batch=batch, rng=seed)
    with pytest.raises(AssertionError, match="opposite sign"):
        assert_equivariant(fn, (l1, l2), l3, parity_out=1 - parity, layout=layout, dtype=dtype, batch=batch, rng=seed)


@given(st.integers(0, 6), DTYPES, SEEDS, st.integers(0, 1))
def test_equivariant_functions_pass_with_input_parity(l, dtype, seed, parity):
    assert_equivariant(lambda x: _norm_scaled(x, l, "compact"), l, l, parity_in=parity, parity_out=parity, dtype=dtype)
    # (|x|^2 is a scalar of parity 0 for any parity of x, so x |x|^2 keeps the parity of x)
    assert_equivariant(lambda x: (x * x).sum(axis=-1, keepdims=True), l, 0, parity_in=parity, rng=seed)
    if parity:
        with pytest.raises(AssertionError, match="opposite sign"):
            assert_equivariant(lambda x: 2 * x, l, l, parity_in=1, parity_out=0, dtype=dtype, rng=seed)


@given(st.integers(0, 4), SEEDS, st.booleans())
def test_full_layout_general_tensors(l, seed, irreducible):
    def outer(x):  # x (x) x: rank 2l, equivariant for any tensor
        return x.reshape(x.shape + (1,) * l) * x.reshape(x.shape[: x.ndim - l] + (1,) * l + x.shape[x.ndim - l :])

    if 2 * l <= 6:
        assert_equivariant(outer, l, 2 * l, layout="full", irreducible=irreducible, rng=seed, batch=(2,))
    assert_equivariant(lambda x: _norm_scaled(x, l, "full"), l, l, layout="full", irreducible=irreducible, rng=seed)


BROKEN = {
    "reversed components": lambda x: x[..., ::-1].copy(),
    "constant shift": lambda x: x + 1.0,
    "scaled by its first entry": lambda x: x * x[..., :1],
    "absolute value": np.abs,
}


@given(st.integers(1, 6), st.sampled_from(sorted(BROKEN)), DTYPES, SEEDS)
def test_non_equivariant_functions_fail(l, name, dtype, seed):
    with pytest.raises(AssertionError, match=r"not equivariant under .*output 0 \(rank") as err:
        assert_equivariant(BROKEN[name], l, l, dtype=dtype, rng=seed)
    assert re.search(r"max \|fn\(Q x\) - Q fn\(x\)\| = \S+ at index \(", str(err.value))


@given(SEEDS)
def test_cross_product_is_a_pseudovector(seed):
    def cross(a, b):
        return np.einsum("ijk,...j,...k->...i", _levi_civita(), a, b)

    assert_equivariant(cross, (1, 1), 1, parity_out=1, layout="full", rng=seed)
    assert_equivariant(cross, (1, 1), 1, parity_out=0, layout="full", rng=seed, reflections=False)  # SO(3) only
    with pytest.raises(AssertionError, match=r"(inversion|mirror|rotoreflection) \(det -1\)"):
        assert_equivariant(cross, (1, 1), 1, parity_out=0, layout="full", rng=seed)


def test_multiple_outputs_name_the_broken_one():
    def harmonics(v):
        return cartesian_harmonics(v, 4)

    assert_equivariant(harmonics, 1, tuple(range(5)), batch=(6,), rotations=4)

    def broken(v):
        t = cartesian_harmonics(v, 4)
        t[2] = t[2][..., ::-1].copy()
        return t

    with pytest.raises(AssertionError, match=r"output 2 \(rank 2"):
        assert_equivariant(broken, 1, tuple(range(5)), batch=(6,))
    with pytest.raises(AssertionError, match="sequence of 5 arrays"):
        assert_equivariant(lambda v: cartesian_harmonics(v, 3), 1, tuple(range(5)))


def test_given_inputs_are_used():
    x = np.random.default_rng(1).standard_normal((3, 2, 5))
    seen = []

    def fn(a):
        seen.append(a)
        return a

    assert_equivariant(fn, 2, 2, inputs=[x], rotations=1, reflections=False)
    assert seen[0] is x and len(seen) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"parity_in": (0, 1)}, ValueError, "parity_in has 2 entries"),
        ({"layout": "spherical"}, ValueError, "layout"),
        ({"rng": 1.5}, TypeError, "Generator or an int seed"),
        ({"inputs": [np.zeros((2, 4))]}, ValueError, r"input 0 has shape \(2, 4\)"),
        ({"inputs": [np.zeros((2, 5)), np.zeros((2, 5))]}, ValueError, "2 inputs given for 1"),
        ({"batch": [(2,), (3,)]}, ValueError, "one per input"),
        ({"device": "tpu"}, ValueError, "unknown device"),
        ({"rotations": 0, "reflections": False}, ValueError, "tests no transformation"),
        ({"rotations": -1}, ValueError, "tests no transformation"),
    ],
)
def test_equivariant_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        assert_equivariant(lambda x: x, 2, 2, **kwargs)


def test_nan_outputs_fail():
    message = r"output 0 of fn\(x\) contains NaN or infinity \(first at index \(0, 0, 0\)\)"
    with pytest.raises(AssertionError, match=message):
        assert_equivariant(lambda x: x * np.inf, 2, 2)
    with pytest.raises(ValueError, match="directions >= 1"):
        assert_vjp(lambda x: x, lambda g, x: g, (np.ones(3),), directions=0)
    with pytest.raises(ValueError, match="eps > 0"):
        assert_vjp(lambda x: x, lambda g, x: g, (np.ones(3),), eps=0.0)
    nan = np.array([1.0, np.nan, np.inf])
    assert_matches_reference(lambda: nan.copy(), lambda: nan)  # the same non-finite entries agree
    with pytest.raises(AssertionError, match=r"index \(2,\): got -inf"):
        assert_matches_reference(lambda: -nan, lambda: nan)


def test_bad_outputs_and_matrices():
    with pytest.raises(AssertionError, match=r"output 0 has shape \(2, 3, 3\); expected last axes \(5,\)"):
        assert_equivariant(lambda x: x[..., :3], 2, 2)
    with pytest.raises(ValueError, match="orthogonal"):
        representation(np.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="last axes"):
        transform(np.zeros((2, 4)), 2, np.eye(3))


# --------------------------------------------------------------------------- assert_vjp
@given(TRIPLES, st.sampled_from([None, "x", "y"]), SEEDS)
def test_product_vjp_passes_and_scaled_vjp_fails(triple, shared, seed):
    rng = np.random.default_rng(seed)
    l1, l2, _ = triple
    x = rng.standard_normal((2, 3, 2 * l1 + 1) if shared != "x" else (2, 2 * l1 + 1))
    y = rng.standard_normal((2, 3, 2 * l2 + 1) if shared != "y" else (2, 2 * l2 + 1))

    def fn(a, b):
        return tensor_product(a, b, *triple, shared=shared)

    def vjp(g, a, b):
        return tensor_product_vjp(g, a, b, *triple, shared=shared)

    def jvp(t, a, b):  # bilinear: J (u, w) = z(u, b) + z(a, w)
        return fn(t[0], b) + fn(a, t[1])

    assert_vjp(fn, vjp, (x, y), jvp_fn=jvp, rng=seed)
    with pytest.raises(AssertionError, match=r"finite differences.*ratio 1\.01"):
        assert_vjp(fn, lambda g, a, b: tuple(1.01 * r for r in vjp(g, a, b)), (x, y), rng=seed)
    with pytest.raises(AssertionError, match="adjoint identity"):
        assert_vjp(fn, vjp, (x, y), jvp_fn=lambda t, a, b: 1.01 * jvp(t, a, b), rng=seed)


def test_nonlinear_vjp_and_its_bugs():
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)

    def fn(a):  # f(a) = sin(a) |a|^2 (per row) and a second output sum(a^3)
        return np.sin(a) * (a * a).sum(-1, keepdims=True), (a**3).sum()

    def vjp(g, a):
        g1, g2 = g
        n2 = (a * a).sum(-1, keepdims=True)
        return g1 * np.cos(a) * n2 + 2 * a * (g1 * np.sin(a)).sum(-1, keepdims=True) + 3 * g2 * a * a

    def forgot_a_term(g, a):
        g1, g2 = g
        return g1 * np.cos(a) * (a * a).sum(-1, keepdims=True) + 3 * g2 * a * a

    assert_vjp(fn, vjp, (x,))
    with pytest.raises(AssertionError, match=r"VJP of input 0 \(shape \(4, 3\)\)"):
        assert_vjp(fn, forgot_a_term, (x,))
    with pytest.raises(AssertionError, match=r"gradient 0 from vjp_fn has shape \(4,\)"):
        assert_vjp(fn, lambda g, a: vjp(g, a)[:, 0], (x,))


def test_vjp_wrong_count_and_swapped_gradients():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 1, 3)), rng.standard_normal((2, 1, 3))

    def fn(a, b):
        return tensor_product(a, b, 1, 1, 1)

    with pytest.raises(AssertionError, match="2 inputs"):
        assert_vjp(fn, lambda g, a, b: tensor_product_vjp(g, a, b, 1, 1, 1)[:1], (x, y))
    with pytest.raises(AssertionError, match="input 0"):
        assert_vjp(fn, lambda g, a, b: tensor_product_vjp(g, a, b, 1, 1, 1)[::-1], (x, y))


# --------------------------------------------------------------------------- assert_matches_reference
@given(TRIPLES, DTYPES, SEEDS, st.data())
def test_reference_comparison_names_the_worst_entry(triple, dtype, seed, data):
    rng = np.random.default_rng(seed)
    l1, l2, _ = triple
    x = rng.standard_normal((3, 2, 2 * l1 + 1)).astype(dtype)
    y = rng.standard_normal((3, 2, 2 * l2 + 1)).astype(dtype)

    def ref(a, b):
        return tensor_product(a, b, *triple, strategy="einsum")

    assert_matches_reference(lambda a, b: tensor_product(a, b, *triple, strategy="sparse"), ref, x, y)
    z = ref(x, y)
    idx = tuple(data.draw(st.integers(0, n - 1)) for n in z.shape)

    def off_by_one_part_in_a_hundred(a, b):
        out = ref(a, b).copy()
        out[idx] += 0.01 * max(np.abs(out).max(), 1.0)
        return out

    with pytest.raises(AssertionError, match=re.escape(f"worst entry at index {idx}")):
        assert_matches_reference(off_by_one_part_in_a_hundred, ref, x, y)


def test_reference_shape_nan_and_count_mismatches():
    a = np.ones((2, 3))
    with pytest.raises(AssertionError, match=r"shape \(3, 2\)"):
        assert_matches_reference(lambda: a.T, lambda: a)
    nan = a.copy()
    nan[1, 2] = np.nan
    with pytest.raises(AssertionError, match=r"index \(1, 2\): got nan"):
        assert_matches_reference(lambda: nan, lambda: a)
    with pytest.raises(AssertionError, match="sequence of 2 arrays"):
        assert_matches_reference(lambda: (a, a), lambda: a)
    assert_matches_reference(lambda: (a, a + 1e-12), lambda: (a, a))
    with pytest.raises(AssertionError, match="output 1"):
        assert_matches_reference(lambda: (a, a + 1e-3), lambda: (a, a), rtol=1e-4)
    assert_matches_reference(lambda: a + 1e-3, lambda: a, rtol=0, atol=2e-3)


# --------------------------------------------------------------------------- hygiene
def test_no_global_rng_state_is_used_or_changed():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking the legacy global RNG is untouched
    assert_equivariant(lambda x: x, 2, 2)
    assert_vjp(lambda x: x * x, lambda g, x: 2 * g * x, (np.ones((2, 3)),))
    assert (np.random.get_state()[1] == state).all()  # noqa: NPY002


def test_importing_testing_does_not_import_sympy():
    code = "import sys, cartesian_irreps.testing; print(sorted(m for m in sys.modules if m.startswith('sympy')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
