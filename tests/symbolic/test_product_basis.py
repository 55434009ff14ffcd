"""Exact product basis: derivation, exact checks, generated tables, and agreement with a float fold."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy import QQ

from cartesian_irreps.generated import product_basis as generated
from cartesian_irreps.generator.product_basis import PRODUCT_BASIS_CONFIGS, derived_tables
from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.product_basis import model_layers, product_tables, product_tree
from cartesian_irreps.symbolic.coupling import signed_sqrt_float
from cartesian_irreps.symbolic.product_basis import check_product_basis, derive_product_basis

# the configurations the model tests use: L 0..3, hidden L, nu 1..3, even and parity complete
TEST_CONFIGS = [
    (L, H, nu, p)
    for L in range(4)
    for H in range(min(L, 2) + 1)
    for nu in (1, 2, 3)
    for p in ("even", "parity_complete")
    if (L, H, nu, p) in PRODUCT_BASIS_CONFIGS
]


def float_fold(a_keys, nodes, basis, correlation):
    """Independent float reference: dense coupling chains folded onto sorted monomials (no pruning)."""
    offsets, off = {}, 0
    for k in a_keys:
        offsets[k] = off
        off += 2 * k[0] + 1
    D = off
    tuples = [[(i,) for i in range(D)]]
    for _ in range(2, correlation + 1):
        tuples.append([(*t, c) for t in tuples[-1] for c in range(t[-1], D)])
    flat = [t for level in tuples for t in level]
    position = {t: i for i, t in enumerate(flat)}
    full = {}
    for nid, _key, parent, ak, tr in nodes:
        if parent < 0:
            u = np.zeros((2 * ak[0] + 1, D))
            u[np.arange(2 * ak[0] + 1), offsets[ak] + np.arange(2 * ak[0] + 1)] = 1.0
        else:
            c = tables.dense_coupling(*tr)
            up = full[parent]
            u = np.zeros((c.shape[2], *up.shape[1:], D))
            u[..., offsets[ak] : offsets[ak] + c.shape[1]] = np.einsum("abk,a...->k...b", c, up)
        full[nid] = u
    out = {}
    for key, ids in basis.items():
        m = 2 * key[0] + 1
        mat = np.zeros((len(flat), len(ids), m))
        for p, nid in enumerate(ids):
            u = full[nid]
            grid = np.sort(np.indices((D,) * (u.ndim - 1)).reshape(u.ndim - 1, -1).T, axis=1)
            rows = np.array([position[tuple(g)] for g in grid.tolist()])
            for k in range(m):
                mat[:, p, k] = np.bincount(rows, weights=u[k].ravel(), minlength=len(flat))
        out[key] = (mat.reshape(len(flat), -1), flat)
    return out


@pytest.mark.parametrize(
    "config", [pytest.param(c, marks=pytest.mark.slow) if c[0] == 3 and c[2] == 3 else c for c in TEST_CONFIGS]
)
def test_generated_tables_equal_the_float_fold(config):
    """Every generated coefficient equals the float fold of the coupling chains to 1e-12 (relative to
    the largest entry), on the monomials the generated table keeps; the pruned ones fold to ~0."""
    L, H, nu, products = config
    for a_keys, out_keys in model_layers(L, H, nu, products):
        nodes, basis = product_tree(a_keys, out_keys, L, nu, products)
        select, matrices = product_tables(a_keys, nodes, basis, nu)
        pb = derive_product_basis(a_keys, out_keys, L, nu, products)
        ref = float_fold(a_keys, nodes, basis, nu)
        kept = [pb.tuples.index(t) if t in pb.tuples else -1 for t in next(iter(ref.values()))[1]]
        for key, (dense, _) in ref.items():
            scale = max(np.abs(dense).max(), 1.0)
            got = np.zeros_like(dense)
            for i, r in enumerate(kept):
                if r >= 0:
                    got[i] = matrices[key][r]
            np.testing.assert_allclose(got, dense, rtol=0, atol=1e-12 * scale)
        # the levels rebuild exactly the kept tuples
        rebuilt = [(i,) for i in range(pb.dim)]
        prev = rebuilt
        for parent, last in select:
            prev = [(*prev[p], c) for p, c in zip(parent, last)]
            rebuilt += prev
        assert tuple(rebuilt) == pb.tuples


@pytest.mark.parametrize("config", [(2, 1, 3, "even"), (2, 2, 3, "parity_complete"), (3, 1, 2, "parity_complete")])
def test_exact_checks_pass(config):
    L, H, nu, products = config
    for a_keys, out_keys in model_layers(L, H, nu, products):
        results = check_product_basis(derive_product_basis(a_keys, out_keys, L, nu, products))
        assert len(results) == 4
        assert all(ok for _, ok, _ in results), results


def _corrupt(pb, factor):
    key = next(k for k, e in pb.entries.items() if e)
    ents = list(pb.entries[key])
    r, c, sq = ents[0]
    ents[0] = (r, c, sq * factor)
    return replace(pb, entries={**pb.entries, key: tuple(ents)})


def test_exact_checks_catch_a_corrupted_coefficient():
    pb = derive_product_basis(*model_layers(2, 1, 3, "parity_complete")[0], 2, 3, "parity_complete")
    doubled = dict((n, ok) for n, ok, _ in check_product_basis(_corrupt(pb, QQ(4))))  # value * 2
    assert not doubled["fold == coupling chain (exact)"]
    irrational = check_product_basis(_corrupt(pb, QQ(1001, 1000)))
    assert not any(ok for _, ok, _ in irrational)
    assert "sqrt(rational)" in irrational[0][2]


def test_generated_values_are_the_correctly_rounded_exact_values():
    assert len(generated.EXACT) == len(generated.VALUES)
    for text, value in zip(generated.EXACT, generated.VALUES):
        p, q = text.split("/")
        assert value == signed_sqrt_float(QQ(int(p), int(q)))


def test_generated_module_holds_every_derived_table():
    """Every derived table is in the generated module, and it parses back to the exact derivation."""
    derived = derived_tables()
    assert set(generated.TABLES) == set(derived)
    for key in sorted(derived, key=repr)[::7]:
        pb = derived[key]
        select, matrices = product_tables(pb.a_keys, pb.nodes, pb.basis, key[3])
        assert tuple((tuple(p.tolist()), tuple(c.tolist())) for p, c in select) == pb.levels
        floats = pb.floats()
        assert set(matrices) == set(floats)
        for k in floats:
            assert np.array_equal(matrices[k], floats[k])


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(TEST_CONFIGS), st.integers(0, 2**31 - 1))
def test_tables_reproduce_the_coupling_chain_at_random_points(config, seed):
    """The generated tables give the product-basis paths as chains of dense float couplings."""
    from cartesian_irreps.runtime.monomials import monomials, table_from_levels

    L, H, nu, products = config
    rng = np.random.default_rng(seed)
    for a_keys, out_keys in model_layers(L, H, nu, products):
        nodes, basis = product_tree(a_keys, out_keys, L, nu, products)
        select, matrices = product_tables(a_keys, nodes, basis, nu)
        a = {k: rng.normal(size=2 * k[0] + 1) for k in a_keys}
        value = {}
        for nid, _key, parent, ak, tr in nodes:
            value[nid] = (
                a[ak] if parent < 0 else np.einsum("abk,a,b->k", tables.dense_coupling(*tr), value[parent], a[ak])
            )
        stacked = np.concatenate([a[k] for k in a_keys])[None, :]
        mono = monomials(stacked, table_from_levels(stacked.shape[1], list(select)))[0]
        for key, ids in basis.items():
            got = (mono @ matrices[key]).reshape(len(ids), -1)
            np.testing.assert_allclose(got, np.stack([value[n] for n in ids]), rtol=1e-10, atol=1e-12)


def test_product_tables_errors_name_the_problem():
    a_keys, out_keys = model_layers(2, 1, 3, "even")[0]
    nodes, basis = product_tree(a_keys, out_keys, 2, 3, "even")
    with pytest.raises(ValueError, match="not the product tree"):
        product_tables(a_keys, nodes[:-1], basis, 3)
    big = model_layers(5, 1, 3, "even")[0]
    nodes, basis = product_tree(*big, 5, 3, "even")
    with pytest.raises(KeyError, match="cartesian-irreps generate"):
        product_tables(big[0], nodes, basis, 3)


def test_model_plan_matches_the_tree():
    """The tree and layer keys are those of mlip.model.build_plan (the model calls product_tables)."""
    from mlip.model import ModelConfig, build_plan

    for L, H, nu, products in [(2, 1, 3, "even"), (2, 2, 2, "parity_complete"), (1, 0, 3, "parity_complete")]:
        cfg = ModelConfig(elements=("H",), lmax=L, hidden_lmax=H, correlation=nu, products=products, num_layers=3)
        layers = model_layers(L, H, nu, products)
        for lp in build_plan(cfg):
            wanted = ((0, 1),) if lp.index == 2 else next(o for a, o in layers if a == lp.a_keys and o != ((0, 1),))
            nodes, basis = product_tree(lp.a_keys, wanted, L, nu, products)
            assert nodes == lp.nodes and basis == lp.basis
