"""The exact verifier: every check up to l = 4 passes, and corrupted coefficients are caught."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sympy import QQ

from cartesian_irreps import verify
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
