"""Shared Hypothesis strategies and settings for the test suite."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from sympy import QQ

settings.register_profile("ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: small exact rationals
rationals = st.builds(lambda p, q: QQ(p, q), st.integers(-9, 9), st.integers(1, 7))
nonzero_rationals = rationals.filter(lambda r: r != 0)


@st.composite
def rational_unit_vectors(draw) -> tuple:
    """Exact rational points on the unit sphere (inverse stereographic projection)."""
    u, v = draw(rationals), draw(rationals)
    d = u * u + v * v + 1
    return (2 * u / d, 2 * v / d, (u * u + v * v - 1) / d)


@st.composite
def rational_vectors(draw, n: int) -> list:
    return [draw(rationals) for _ in range(n)]
