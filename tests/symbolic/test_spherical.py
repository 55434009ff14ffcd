"""Relation to spherical coupling, against sympy.physics.wigner (not our own code)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st
from sympy.physics.wigner import wigner_3j

from cartesian_irreps._validate import triples
from cartesian_irreps.symbolic.coupling import derive_coupling
from cartesian_irreps.symbolic.spherical import real_wigner_3j, wigner_ratio


@given(st.sampled_from(triples(4)))
def test_real_3j_is_orthonormal_like_sympy(t):
    """sum W^2 = 1, as for the complex symbols: sum_m |(l1 l2 l3; m1 m2 m3)|^2 = 1."""
    w = np.array(real_wigner_3j(*t).tolist(), dtype=object)
    assert sympy.nsimplify(sum(v**2 for v in w.ravel())) == 1
    l1, l2, l3 = t
    total = sum(
        wigner_3j(l1, l2, l3, m1, m2, -m1 - m2) ** 2
        for m1 in range(-l1, l1 + 1)
        for m2 in range(-l2, l2 + 1)
        if abs(m1 + m2) <= l3
    )
    assert sympy.nsimplify(total) == 1


@pytest.mark.parametrize("t", triples(4))
def test_unit_coupling_is_plus_or_minus_the_real_3j(t):
    c = wigner_ratio(*t, "unit")
    assert c in (1, -1)
    cpl = np.array(derive_coupling(*t, "unit").compact().tolist(), dtype=object)
    w = np.array(real_wigner_3j(*t).tolist(), dtype=object)
    assert all(sympy.expand(a - c * b) == 0 for a, b in zip(cpl.ravel(), w.ravel()))


def test_cross_product_is_the_levi_civita_3j():
    """(1 1 1) real 3j is eps/sqrt(6) up to sign in the (x, y, z) compact order."""
    w = np.array(real_wigner_3j(1, 1, 1).tolist(), dtype=object) * sympy.sqrt(6)
    assert abs(w[0, 1, 2]) == 1 and w[0, 1, 2] == -w[1, 0, 2] == w[1, 2, 0]


def test_published_ratio_squared_is_rational():
    for t in triples(3):
        c = wigner_ratio(*t, "published")
        assert (c**2).is_Rational
