"""Error metrics against hand-computed values, their properties, bad input and the text table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlip.metrics import ErrorMetrics, compute_metrics, format_table

# --------------------------------------------------------------------------------- hand-computed

# three structures of 1, 2 and 4 atoms; energy errors -3, +4, 0 meV
PRED_E = [1.0, 2.0, -1.0]
REF_E = [1.003, 1.996, -1.0]
N_ATOMS = [1, 2, 4]


def _forces() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros((7, 3))
    pred = np.zeros((7, 3))
    pred[1] = [0.003, -0.004, 0.0]  # |error| 5 meV/Å
    pred[5] = [0.0, 0.0, 0.012]  # |error| 12 meV/Å
    return pred, ref


def test_energy_metrics_by_hand():
    m = compute_metrics(PRED_E, REF_E, N_ATOMS)
    assert m["n_structures"] == 3 and m["n_atoms"] == 7
    assert m["energy_rmse_mev"] == pytest.approx(math.sqrt((9 + 16 + 0) / 3), rel=1e-9)
    assert m["energy_mae_mev"] == pytest.approx(7 / 3, rel=1e-9)
    # per atom: -3/1, 4/2, 0/4 meV/atom
    assert m["energy_rmse_mev_atom"] == pytest.approx(math.sqrt((9 + 4 + 0) / 3), rel=1e-9)
    assert m["energy_mae_mev_atom"] == pytest.approx(5 / 3, rel=1e-9)
    for key in ("force_rmse_mev_A", "force_mae_mev_A", "force_norm_rmse_mev_A", "stress_rmse_mev_A3"):
        assert m[key] is None


def test_force_metrics_by_hand():
    pred, ref = _forces()
    m = compute_metrics(PRED_E, REF_E, N_ATOMS, pred, ref)
    # 21 components, errors 3, -4, 12 meV/Å, the rest 0
    assert m["force_rmse_mev_A"] == pytest.approx(math.sqrt(169 / 21), rel=1e-9)
    assert m["force_mae_mev_A"] == pytest.approx(19 / 21, rel=1e-9)
    # magnitudes: 5 and 12 meV/Å against 0, over 7 atoms
    assert m["force_norm_rmse_mev_A"] == pytest.approx(math.sqrt(169 / 7), rel=1e-9)


def test_force_norm_metric_ignores_direction():
    ref = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    pred = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -2.0]])
    m = compute_metrics([0.0], [0.0], [2], pred, ref)
    assert m["force_norm_rmse_mev_A"] == pytest.approx(0.0, abs=1e-9)
    assert m["force_rmse_mev_A"] == pytest.approx(1000 * math.sqrt((1 + 1 + 4 + 4) / 6), rel=1e-9)


def test_stress_metrics_by_hand_voigt_and_matrix():
    ref = np.zeros((2, 6))
    pred = np.zeros((2, 6))
    pred[0, 0] = 0.001
    pred[1, 5] = -0.003
    m = compute_metrics([0.0, 0.0], [0.0, 0.0], [1, 1], pred_stress=pred, ref_stress=ref)
    assert m["stress_rmse_mev_A3"] == pytest.approx(math.sqrt(10 / 12), rel=1e-9)
    assert m["stress_mae_mev_A3"] == pytest.approx(4 / 12, rel=1e-9)
    # the same stresses as symmetric 3x3 matrices: xy counted once
    full = np.zeros((2, 3, 3))
    full[0, 0, 0] = 0.001
    full[1, 0, 1] = full[1, 1, 0] = -0.003
    m3 = compute_metrics([0.0, 0.0], [0.0, 0.0], [1, 1], pred_stress=full, ref_stress=np.zeros((2, 3, 3)))
    assert m3["stress_rmse_mev_A3"] == pytest.approx(m["stress_rmse_mev_A3"], rel=1e-12)
    # a single stress may be given without the leading axis
    m1 = compute_metrics([0.0], [0.0], [1], pred_stress=pred[1], ref_stress=ref[1])
    assert m1["stress_rmse_mev_A3"] == pytest.approx(math.sqrt(9 / 6), rel=1e-9)


def test_dataclass_and_dict_agree():
    pred, ref = _forces()
    em = ErrorMetrics.from_arrays(PRED_E, REF_E, N_ATOMS, pred, ref)
    assert em.as_dict() == compute_metrics(PRED_E, REF_E, N_ATOMS, pred, ref)
    assert "stress_rmse_mev_A3" not in em.as_dict(drop_none=True)
    assert em.force_mae_mev_A == pytest.approx(19 / 21)


# --------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1.0, 2.0], [1.0], [1, 1]), "same shape"),
        (([], [], []), "no structures"),
        (([[1.0]], [[1.0]], [1]), "1-D"),
        (([1.0, math.nan], [1.0, 2.0], [1, 1]), "non-finite"),
        (([1.0, 2.0], [1.0, math.inf], [1, 1]), "non-finite"),
        (([1.0, 2.0], [1.0, 2.0], [1]), "one count per structure"),
        (([1.0, 2.0], [1.0, 2.0], [1, 0]), "positive integers"),
        (([1.0, 2.0], [1.0, 2.0], [1, 1.5]), "positive integers"),
        ((["a"], [1.0], [1]), "not an array of numbers"),
    ],
)
def test_bad_energy_input(args, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(*args)


def test_bad_force_and_stress_input():
    pred, ref = _forces()
    with pytest.raises(ValueError, match="different shapes"):
        compute_metrics(PRED_E, REF_E, N_ATOMS, pred, ref[:6])
    with pytest.raises(ValueError, match=r"\(7, 3\)"):
        compute_metrics(PRED_E, REF_E, N_ATOMS, pred[:6], ref[:6])
    with pytest.raises(ValueError, match="both"):
        compute_metrics(PRED_E, REF_E, N_ATOMS, pred_forces=pred)
    bad = pred.copy()
    bad[2, 1] = math.nan
    with pytest.raises(ValueError, match="pred_forces has 1 non-finite"):
        compute_metrics(PRED_E, REF_E, N_ATOMS, bad, ref)
    with pytest.raises(ValueError, match="Voigt"):
        compute_metrics(PRED_E, REF_E, N_ATOMS, pred_stress=np.zeros((3, 5)), ref_stress=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="stresses"):
        compute_metrics(PRED_E, REF_E, N_ATOMS, pred_stress=np.zeros((3, 6)), ref_stress=np.zeros((2, 6)))
    with pytest.raises(ValueError, match="both"):
        compute_metrics(PRED_E, REF_E, N_ATOMS, ref_stress=np.zeros((3, 6)))


# --------------------------------------------------------------------------------- properties

FLOATS = st.floats(-5.0, 5.0, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, same_n: int | None = None) -> dict:
    """Random references and predictions; predictions share some of the reference values exactly."""
    s = draw(st.integers(1, 6))
    n_atoms = np.array([same_n or draw(st.integers(1, 4)) for _ in range(s)])
    n = int(n_atoms.sum())
    ref_e = draw(hnp.arrays(np.float64, s, elements=FLOATS))
    ref_f = draw(hnp.arrays(np.float64, (n, 3), elements=FLOATS))
    ref_s = draw(hnp.arrays(np.float64, (s, 6), elements=FLOATS))

    def perturb(ref: np.ndarray) -> np.ndarray:
        mask = draw(hnp.arrays(bool, ref.shape))
        other = draw(hnp.arrays(np.float64, ref.shape, elements=FLOATS))
        return np.where(mask, other, ref)

    return dict(
        pred_energy=perturb(ref_e),
        ref_energy=ref_e,
        n_atoms=n_atoms,
        pred_forces=perturb(ref_f),
        ref_forces=ref_f,
        pred_stress=perturb(ref_s),
        ref_stress=ref_s,
    )


ERROR_KEYS = {
    "energy": ("energy_rmse_mev", "energy_mae_mev", "energy_rmse_mev_atom", "energy_mae_mev_atom"),
    "forces": ("force_rmse_mev_A", "force_mae_mev_A"),
    "stress": ("stress_rmse_mev_A3", "stress_mae_mev_A3"),
}


@given(problems())
def test_zero_iff_equal(p):
    m = compute_metrics(**p)
    for what, keys in ERROR_KEYS.items():
        equal = np.array_equal(p[f"pred_{what}"], p[f"ref_{what}"])
        for key in keys:
            assert (m[key] == 0.0) == equal, key
    if np.array_equal(p["pred_forces"], p["ref_forces"]):
        assert m["force_norm_rmse_mev_A"] == 0.0


@given(problems())
def test_rmse_at_least_mae(p):
    m = compute_metrics(**p)
    for a, b in [
        ("energy_rmse_mev", "energy_mae_mev"),
        ("energy_rmse_mev_atom", "energy_mae_mev_atom"),
        ("force_rmse_mev_A", "force_mae_mev_A"),
        ("stress_rmse_mev_A3", "stress_mae_mev_A3"),
    ]:
        assert m[a] >= m[b] * (1 - 1e-12)


@given(problems(), st.floats(-20.0, 20.0).filter(lambda c: abs(c) > 1e-3))
def test_scaling_errors_scales_metrics(p, c):
    # errors of exactly c times those of p: compare predictions against a zero reference
    base = dict(p)
    scaled = dict(p)
    for what in ("energy", "forces", "stress"):
        d = p[f"pred_{what}"] - p[f"ref_{what}"]
        base[f"pred_{what}"], base[f"ref_{what}"] = d, np.zeros_like(d)
        scaled[f"pred_{what}"], scaled[f"ref_{what}"] = c * d, np.zeros_like(d)
    m, mc = compute_metrics(**base), compute_metrics(**scaled)
    for keys in ERROR_KEYS.values():
        for key in keys:
            assert mc[key] == pytest.approx(abs(c) * m[key], rel=1e-9, abs=1e-9), key
    assert mc["force_norm_rmse_mev_A"] == pytest.approx(abs(c) * m["force_norm_rmse_mev_A"], rel=1e-9, abs=1e-9)


@given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.just(n), problems(same_n=n))))
def test_per_atom_is_per_structure_over_n(case):
    n, p = case
    m = compute_metrics(**p)
    assert m["energy_rmse_mev_atom"] == pytest.approx(m["energy_rmse_mev"] / n, rel=1e-12, abs=1e-12)
    assert m["energy_mae_mev_atom"] == pytest.approx(m["energy_mae_mev"] / n, rel=1e-12, abs=1e-12)


@given(problems(), st.randoms(use_true_random=False))
def test_invariant_under_reordering_structures(p, rnd):
    s = len(p["ref_energy"])
    order = list(range(s))
    rnd.shuffle(order)
    ptr = np.concatenate([[0], np.cumsum(p["n_atoms"])])
    atoms = np.concatenate([np.arange(ptr[k], ptr[k + 1]) for k in order])
    q = dict(p)
    for key in ("pred_energy", "ref_energy", "n_atoms", "pred_stress", "ref_stress"):
        q[key] = p[key][order]
    q["pred_forces"], q["ref_forces"] = p["pred_forces"][atoms], p["ref_forces"][atoms]
    m, mq = compute_metrics(**p), compute_metrics(**q)
    for key, value in m.items():
        assert mq[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


# --------------------------------------------------------------------------------- table


def test_format_table_exact():
    rows = {"train": {"n": 2, "rmse": 1.5}, "valid": {"n": 10, "rmse": None, "mae": 0.25}}
    expected = "\n".join(
        [
            "        n   rmse    mae",
            "-----  --  -----  -----",
            "train   2  1.500      -",
            "valid  10      -  0.250",
        ]
    )
    assert format_table(rows) == expected


def test_format_table_transposed_with_units_and_extremes():
    rows = {"a": {"energy_rmse_mev_atom": 12345678.0, "label": "x"}, "bb": {"energy_rmse_mev_atom": 2e-5}}
    lines = format_table(rows, precision=2, transpose=True, units=True).splitlines()
    assert lines[0].split() == ["a", "bb"]
    assert lines[2].split() == ["energy_rmse_mev_atom", "[meV/atom]", "1.23e+07", "2.00e-05"]
    assert lines[3].split() == ["label", "x", "-"]
    assert len({len(line) for line in lines[:3]}) == 1  # aligned
    assert format_table({}) == ""


def test_format_table_of_metrics():
    pred, ref = _forces()
    table = format_table({"test": compute_metrics(PRED_E, REF_E, N_ATOMS, pred, ref)}, transpose=True)
    lines = {line.split()[0]: line.split()[1] for line in table.splitlines()[2:]}
    assert lines["energy_mae_mev"] == "2.333"
    assert lines["n_atoms"] == "7"
    assert lines["stress_rmse_mev_A3"] == "-"
