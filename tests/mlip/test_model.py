"""Physics checks of the potential: invariance, equivariance, continuity, derivatives, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from hypothesis import given, settings
from hypothesis import strategies as st

from mlip import autodiff as ad
from mlip.data import SpeciesTable, batch_structures
from mlip.model import ModelConfig, Potential, load_model, param_shapes

from .conftest import TABLE, small_config, small_potential


@st.composite
def molecules(draw, n_min=2, n_max=6):
    n = draw(st.integers(n_min, n_max))
    seed = draw(st.integers(0, 10**6))
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-1.6, 1.6, size=(n, 3))
    # keep atoms apart (>= 0.7 Å)
    for i in range(n):
        for _ in range(50):
            d = np.linalg.norm(pos[:i] - pos[i], axis=1)
            if (d >= 0.7).all():
                break
            pos[i] = rng.uniform(-1.6, 1.6, size=3)
    numbers = rng.choice([1, 6, 8], size=n)
    return Atoms(numbers=numbers, positions=pos)


def evaluate(pot, atoms_list, **kw):
    b = batch_structures(atoms_list, pot.config.cutoff, TABLE, min_distance=0.3)
    return pot.evaluate(b, **kw)


def rotation(seed, improper=False):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if improper else q


POTS = {p: small_potential(p, seed=1) for p in ("even", "parity_complete")}


@settings(max_examples=15, deadline=None)
@given(molecules(), st.integers(0, 10**6), st.booleans(), st.sampled_from(sorted(POTS)))
def test_invariance_and_equivariance(mol, seed, improper, products):
    pot = POTS[products]
    g = rotation(seed, improper)
    shift = np.random.default_rng(seed).normal(size=3) * 5
    perm = np.random.default_rng(seed + 1).permutation(len(mol))
    moved = Atoms(numbers=mol.numbers[perm], positions=mol.positions[perm] @ g.T + shift)
    a, b = evaluate(pot, [mol]), evaluate(pot, [moved])
    assert abs(a["energy"][0] - b["energy"][0]) <= 1e-10 * max(1.0, abs(a["energy"][0]))
    scale = max(np.abs(a["forces"]).max(), 1e-8)
    assert np.abs(a["forces"][perm] @ g.T - b["forces"]).max() <= 1e-10 * scale


@settings(max_examples=10, deadline=None)
@given(molecules(), st.sampled_from(sorted(POTS)))
def test_forces_match_finite_differences_and_sum_to_zero(mol, products):
    pot = POTS[products]
    out = evaluate(pot, [mol])
    h = 1e-5
    fd = np.zeros_like(mol.positions)
    for i in range(len(mol)):
        for a in range(3):
            plus, minus = mol.copy(), mol.copy()
            plus.positions[i, a] += h
            minus.positions[i, a] -= h
            fd[i, a] = -(evaluate(pot, [plus])["energy"][0] - evaluate(pot, [minus])["energy"][0]) / (2 * h)
    scale = max(np.abs(fd).max(), 1e-6)
    assert np.abs(out["forces"] - fd).max() <= 1e-6 * scale + 1e-9
    assert np.abs(out["forces"].sum(axis=0)).max() <= 1e-10 * scale


def periodic_system(seed: int) -> Atoms:
    atoms = bulk("C", "diamond", a=3.6) * (1, 1, 1)
    atoms.numbers[1] = 8
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.cell = atoms.cell.array @ (np.eye(3) + rng.normal(scale=0.02, size=(3, 3)))
    return atoms


@pytest.mark.parametrize("seed", [0, 1])
def test_stress_matches_strain_finite_differences(seed):
    pot = POTS["even"]
    atoms = periodic_system(seed)
    out = evaluate(pot, [atoms], stress=True)
    vol = atoms.get_volume()
    h = 1e-5
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] = h
            plus, minus = atoms.copy(), atoms.copy()
            plus.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
            minus.set_cell(atoms.cell.array @ (np.eye(3) - eps), scale_atoms=True)
            fd[a, b] = (evaluate(pot, [plus])["energy"][0] - evaluate(pot, [minus])["energy"][0]) / (2 * h) / vol
    fd = 0.5 * (fd + fd.T)
    assert np.abs(out["stress"][0] - fd).max() <= 1e-6 * max(np.abs(fd).max(), 1e-6)


def test_batch_equals_single_structures():
    pot = POTS["parity_complete"]
    rng = np.random.default_rng(4)
    base = np.array([[0, 0, 0], [1.2, 0, 0], [0, 1.1, 0]])
    mols = [Atoms("COH", positions=rng.uniform(-1.5, 1.5, (3, 3)) + base), periodic_system(3)]
    together = evaluate(pot, mols, stress=False)
    for i, m in enumerate(mols):
        alone = evaluate(pot, [m])
        assert np.isclose(together["energy"][i], alone["energy"][0], rtol=1e-12)
    n0 = len(mols[0])
    assert np.allclose(together["forces"][:n0], evaluate(pot, [mols[0]])["forces"], rtol=1e-10, atol=1e-12)


def test_continuity_at_the_cutoff():
    pot = POTS["even"]
    rc = pot.config.cutoff
    energies, forces = [], []
    for d in (rc - 1e-4, rc - 1e-7, rc + 1e-7):
        atoms = Atoms("CO", positions=[[0, 0, 0], [d, 0, 0]])
        out = evaluate(pot, [atoms])
        energies.append(out["energy"][0])
        forces.append(out["forces"][1, 0])
    assert abs(energies[1] - energies[2]) < 1e-12
    assert abs(forces[1] - forces[2]) < 1e-9
    assert abs(energies[0] - energies[2]) < 1e-6


def test_isolated_atoms_get_only_their_shift_energy():
    pot = POTS["even"]
    atoms = Atoms("HCO", positions=[[0, 0, 0], [10, 0, 0], [0, 10, 0]])
    out = evaluate(pot, [atoms])
    readout_only = out["energy"][0] - sum(pot.config.atomic_energies)
    # without neighbours only the embedding-driven readout remains: it is the same for every H, C, O
    single = sum(evaluate(pot, [Atoms(s)])["energy"][0] for s in "HCO") - sum(pot.config.atomic_energies)
    assert np.isclose(readout_only, single, rtol=1e-12)
    assert np.allclose(out["forces"], 0)


def test_parameter_gradients_of_energy_and_force_loss():
    """dE/dtheta and d(force loss)/dtheta (a mixed second derivative) vs central differences."""
    pot = Potential.create(small_config(channels=3), seed=5)
    mol = Atoms("COH", positions=[[0, 0, 0], [1.2, 0.1, 0], [-0.3, 0.9, 0.2]])
    b = batch_structures([mol], pot.config.cutoff, TABLE)
    f_ref = np.random.default_rng(0).normal(size=(3, 3))
    names = ["layers.0.radial.0", "layers.1.product.0e", "layers.0.mix.1e", "embed", "layers.1.readout.1"]

    def loss(params, create_graph):
        out = pot.evaluate(b, params=params, create_graph=create_graph)
        if not create_graph:
            return out["energy"].sum(), ((out["forces"] - f_ref) ** 2).sum()
        return ad.sum(out["energy"]), ad.sum((out["forces"] - f_ref) ** 2)

    tensors = {k: ad.tensor(v, requires_grad=k in names) for k, v in pot.params.items()}
    e, floss = loss(tensors, True)
    ge = ad.grad(e, [tensors[n] for n in names])
    gf = ad.grad(floss, [tensors[n] for n in names])
    rng = np.random.default_rng(1)
    for n, g1, g2 in zip(names, ge, gf):
        idx = tuple(rng.integers(0, s) for s in pot.params[n].shape)
        h = 1e-6
        p_plus = {k: v.copy() for k, v in pot.params.items()}
        p_minus = {k: v.copy() for k, v in pot.params.items()}
        p_plus[n][idx] += h
        p_minus[n][idx] -= h
        ep, fp = loss(p_plus, False)
        em, fm = loss(p_minus, False)
        assert np.isclose(g1.data[idx], (ep - em) / (2 * h), rtol=1e-6, atol=1e-9), n
        assert np.isclose(g2.data[idx], (fp - fm) / (2 * h), rtol=1e-5, atol=1e-8), n


def test_save_load_round_trip_and_bad_files(tmp_path):
    pot = POTS["parity_complete"]
    path = tmp_path / "model.npz"
    pot.save(path)
    again = Potential.load(path)
    assert again.config == pot.config
    mol = Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]])
    assert np.array_equal(evaluate(pot, [mol])["energy"], evaluate(again, [mol])["energy"])
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable model file"):
        load_model(truncated)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a cartesian-irreps model file"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")


def test_config_and_parameter_validation():
    with pytest.raises(ValueError, match="hidden_lmax"):
        small_config(hidden_lmax=3)
    with pytest.raises(ValueError, match="products"):
        small_config(products="odd")
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**small_config().to_dict(), "chanels": 3})
    params = Potential.create(small_config()).params
    bad = dict(params)
    bad["embed"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="embed"):
        Potential(small_config(), bad)
    assert set(param_shapes(small_config())) == set(params)


def test_dtype_mismatch_is_an_error():
    pot = POTS["even"]
    b = batch_structures([Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]])], 3.0, TABLE, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype"):
        pot.evaluate(b)


def test_float32_model_runs_in_float32():
    cfg = small_config(dtype="float32")
    pot = Potential.create(cfg, seed=0)
    b = batch_structures([Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]])], 3.0, TABLE, dtype=np.float32)
    out = pot.evaluate(b)
    assert out["energy"].dtype == np.float32 and out["forces"].dtype == np.float32
    ref = POTS["even"]
    assert ref is not None


def test_compiled_monomials_and_pair_halving_change_nothing(monkeypatch):
    """The fast paths (monomial kernel, radial MLP once per edge pair) against the plain ones:
    energies, forces, stress and a force-loss parameter gradient agree to rounding."""
    import mlip.blocks as blocks_module
    import mlip.data.graph as graph_module

    pot = Potential.create(small_config(channels=3), seed=7)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=2)
    cu.numbers = [6, 8, 1, 6]  # a periodic cell of the model's elements
    mol = Atoms("COH", positions=[[0, 0, 0], [1.2, 0.1, 0], [-0.3, 0.9, 0.2]])
    table = SpeciesTable(pot.config.elements)

    def run():
        out = []
        for atoms in (cu, mol):
            b = batch_structures([atoms], pot.config.cutoff, table)
            r = pot.evaluate(b, stress=bool(atoms.pbc.any()))
            tensors = {k: ad.tensor(v, requires_grad=k == "layers.1.product.0e") for k, v in pot.params.items()}
            o = pot.evaluate(b, params=tensors, create_graph=True)
            (g,) = ad.grad(ad.sum(o["forces"] * o["forces"]), [tensors["layers.1.product.0e"]])
            out.append([r["energy"], r["forces"], r.get("stress", np.zeros(1)), g.data])
        return out

    fast = run()
    monkeypatch.setattr(blocks_module, "monomial_kernel_available", lambda: False)
    monkeypatch.setattr(
        graph_module,
        "reverse_edge_pairs",
        lambda s, r, sh: (np.stack([np.arange(len(s)), -np.ones(len(s), int)], 1), np.arange(len(s))),
    )
    plain = run()
    for a_list, b_list in zip(fast, plain):
        for a, b in zip(a_list, b_list):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@settings(max_examples=12, deadline=None)
@given(
    lmax=st.integers(1, 3),
    hidden=st.integers(0, 2),
    nu=st.integers(1, 3),
    products=st.sampled_from(["even", "parity_complete"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_folded_product_basis_equals_the_explicit_coupling_chains(lmax, hidden, nu, products, seed):
    """The (pruned) monomial table and matrices give every product-basis path exactly as the chain
    ``B = C(B_parent, A_k)`` of dense couplings, node by node, on random A entries."""
    from cartesian_irreps.runtime import tables
    from cartesian_irreps.runtime.monomials import monomials as mono_ref
    from mlip.model import build_plan

    if nu == 3 and lmax == 3:
        lmax = 2  # keep the plan small
    cfg = small_config(lmax=lmax, hidden_lmax=min(hidden, lmax), correlation=nu, products=products)
    rng = np.random.default_rng(seed)
    for lp in build_plan(cfg):
        dims = {k: 2 * k[0] + 1 for k in lp.a_keys}
        a = {k: rng.normal(size=d) for k, d in dims.items()}
        value = {}
        for nid, _key, parent, ak, tr in lp.nodes:
            if parent < 0:
                value[nid] = a[ak]
            else:
                value[nid] = np.einsum("abk,a,b->k", tables.dense_coupling(*tr), value[parent], a[ak])
        stacked = np.concatenate([a[k] for k in lp.a_keys])[None, :]
        parent, last = lp.mono_table
        mono = mono_ref(stacked, (parent, last))[0]
        assert len(parent) == lp.basis_matrix[lp.out_keys[0]].shape[0]
        for key in lp.out_keys:
            got = (mono @ lp.basis_matrix[key]).reshape(len(lp.basis[key]), 2 * key[0] + 1)
            want = np.stack([value[n] for n in lp.basis[key]])
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_product_basis_keeps_only_the_monomials_it_uses():
    """For 9 stacked A entries and ν = 3 the scalar readout layer uses far fewer than all 219 monomials,
    and every kept monomial of the top degree feeds some output."""
    from mlip.model import build_plan

    plan = build_plan(small_config(lmax=2, hidden_lmax=1, correlation=3))
    last = plan[-1]
    parent, _ = last.mono_table
    assert len(parent) < 219 // 2
    top = np.concatenate([m for m in last.basis_matrix.values()], axis=1)
    degree1 = sum(2 * k[0] + 1 for k in last.a_keys)
    n_top = len(last.mono_select[-1][0])
    assert (top[-n_top:] != 0).any(axis=1).all()
    assert degree1 == 9


def test_edge_topology_is_built_once_per_batch_and_equals_the_uncached_path(monkeypatch):
    """GraphIndex.build and reverse_edge_pairs run once per batch however often it is evaluated (also
    after new positions, a dtype or device round trip); results equal fresh, uncached batches bit for bit."""
    import dataclasses

    import mlip.data.batch as batch_module
    import mlip.data.graph as graph_module

    calls = {"pairs": 0, "graph": 0}
    real_pairs, real_build = graph_module.reverse_edge_pairs, batch_module.GraphIndex.build

    def counting_pairs(*args):
        calls["pairs"] += 1
        return real_pairs(*args)

    def counting_build(cls, *args):
        calls["graph"] += 1
        return real_build(*args)

    monkeypatch.setattr(graph_module, "reverse_edge_pairs", counting_pairs)
    monkeypatch.setattr(batch_module.GraphIndex, "build", classmethod(counting_build))
    pot = POTS["parity_complete"]
    atoms = periodic_system(5)
    b = batch_structures([atoms], pot.config.cutoff, TABLE)
    runs = [pot.evaluate(b, stress=True) for _ in range(3)]
    tensors = {k: ad.tensor(v, requires_grad=True) for k, v in pot.params.items()}
    trained = pot.evaluate(b, params=tensors, create_graph=True)
    assert calls == {"pairs": 1, "graph": 1}

    def fresh(batch):  # the same arrays in a new Batch: an empty cache
        return dataclasses.replace(batch)

    uncached = pot.evaluate(fresh(b), stress=True)
    assert calls == {"pairs": 2, "graph": 2}
    for r in runs:
        for key in ("energy", "forces", "stress"):
            np.testing.assert_array_equal(r[key], uncached[key])
    np.testing.assert_array_equal(trained["forces"].data, uncached["forces"])
    # new positions on the same neighbour list (an MD step), and dtype / array-module round trips
    moved = b.replace(positions=b.positions + np.random.default_rng(0).normal(scale=0.01, size=b.positions.shape))
    again = b.astype(np.float32).astype(np.float64).to(np)
    out_moved, out_again = pot.evaluate(moved, stress=True), pot.evaluate(again)
    assert calls == {"pairs": 2, "graph": 2}
    ref_moved = pot.evaluate(fresh(moved), stress=True)
    for key in ("energy", "forces", "stress"):
        np.testing.assert_array_equal(out_moved[key], ref_moved[key])
    np.testing.assert_array_equal(out_again["forces"], pot.evaluate(fresh(again))["forces"])
    # other edges: the cache is not carried over
    fewer = b.replace(senders=b.senders[::-1].copy())
    assert fewer.edge_pairs() is not b.edge_pairs() and fewer.graph_index() is not b.graph_index()
