"""The exact verifier: every check up to l = 4 passes, and corrupted coefficients are caught."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sympy import QQ

from cartesian_irreps import verify, verify_budget
from cartesian_irreps._validate import triples
from cartesian_irreps.symbolic.coupling import derive_coupling
from tests.conftest import nonzero_rationals

GROUPS = list(verify.plan(4))


@pytest.mark.parametrize(("label", "thunk"), GROUPS, ids=[g[0] for g in GROUPS])
def test_every_check_passes_up_to_rank_4(label, thunk):
    results = thunk()
    assert results, label
    failed = [r for r in results if not r.ok]
    assert not failed, failed


@given(st.sampled_from(triples(4)), st.data(), nonzero_rationals, st.sampled_from(["unit", "published"]))
def test_any_corrupted_coefficient_fails(t, data, delta, norm):
    """Changing any one coefficient (zero or not) by any amount makes verification fail."""
    cpl = derive_coupling(*t, norm)
    idx = data.draw(st.tuples(*(st.integers(0, n - 1) for n in cpl.shape)))
    table = cpl.table.copy()
    table[idx] = table[idx] + delta
    results = verify.check_coupling(cpl.with_table(table), full_layout=False)
    assert not all(r.ok for r in results)


def test_wrong_parity_sign_fails():
    even = derive_coupling(2, 2, 2)
    odd = derive_coupling(2, 1, 2)
    assert verify._check_group(even, verify.IMPROPER, -1)[0] is False
    assert verify._check_group(odd, verify.IMPROPER, +1)[0] is False
    assert verify._check_group(odd, verify.IMPROPER, -1)[0] is True


def test_mutated_run_fails_only_for_that_product():
    results = verify.run(2, mutate=(1, 1, 2))
    failed = {r.obj for r in results if not r.ok}
    assert failed and all(o.startswith("C(1,1,2)") for o in failed)


def test_rotations_are_exact_and_proper():
    for g in verify.ROTATIONS.values():
        m = np.array(g, dtype=object)
        assert (m.dot(m.T) == np.eye(3, dtype=int)).all()
        assert verify.determinant(g) == 1
    assert verify.cayley(QQ(0), QQ(0), QQ(0)) == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_mutate_beyond_lmax_is_refused():
    with pytest.raises(ValueError, match="beyond"):
        verify.run(1, mutate=(2, 2, 2))


def test_run_goes_rank_by_rank_and_keeps_plan_order():
    seen, ranks = [], []
    results = verify.run(3, progress=lambda d, t, label: seen.append(label), on_rank=lambda l, *rest: ranks.append(l))
    assert ranks == [0, 1, 2, 3]
    assert sorted(seen) == sorted(label for label, _ in verify.plan(3))
    # every group of rank l runs before any group of rank l+1 (C(0,3,3) is rank 3, C(2,2,2) rank 2)
    assert seen.index("C(2, 2, 2) unit") < seen.index("C(0, 3, 3) unit")
    # the results come back in plan order, as before
    expected = [r.obj + r.check for _, thunk in verify.plan(3) for r in thunk()]
    assert [r.obj + r.check for r in results] == expected


def test_on_rank_counts_checks_and_failures():
    counts = {}
    results = verify.run(2, mutate=(1, 1, 2), on_rank=lambda l, n, failed, s: counts.setdefault(l, (n, failed, s)))
    assert sum(n for n, _, _ in counts.values()) == len(results)
    assert counts[0][1] == counts[1][1] == 0 and counts[2][1] == sum(not r.ok for r in results) > 0
    assert all(s >= 0 for _, _, s in counts.values())


@pytest.mark.parametrize(
    ("lmax", "error", "match"), [(-1, ValueError, ">= 0"), (2.0, TypeError, "integer"), (True, TypeError, "integer")]
)
def test_run_rejects_invalid_lmax(lmax, error, match):
    with pytest.raises(error, match=match):
        verify.run(lmax)


def test_safe_bound_and_estimate():
    assert verify_budget.check_lmax(verify_budget.SAFE_LMAX) == verify_budget.SAFE_LMAX
    assert verify_budget.check_lmax(50, force=True) == 50
    with pytest.raises(ValueError, match=r"safe bound .*--force"):
        verify_budget.check_lmax(verify_budget.SAFE_LMAX + 1)
    with pytest.raises(ValueError, match=">= 0"):
        verify_budget.check_lmax(-3, force=True)
    est = [verify_budget.estimated_seconds(l) for l in range(1, 101)]
    assert all(a < b for a, b in itertools.pairwise(est))  # grows with lmax
    assert verify_budget.estimated_seconds(8) == verify_budget.REFERENCE[1]
    assert verify_budget.estimated_seconds(16) == pytest.approx(2**6 * verify_budget.REFERENCE[1])
    assert [verify_budget.format_duration(s) for s in (0.2, 42, 150, 7200, 3 * 86400, 4.4e8)] == [
        "under 1 s",
        "42 s",
        "2.5 min",
        "2.0 h",
        "3.0 days",
        "13.9 years",
    ]
