"""Tests of :mod:`cartesian_irreps.runtime.timing` (the timing helpers of the tuner and the benchmarks)."""

from __future__ import annotations

import pytest

from cartesian_irreps.runtime import timing


def test_warm_up_then_repeats_and_the_statistic(monkeypatch):
    """One warm-up call, then ``repeats`` timed calls; best is the minimum, median the middle."""
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])  # timed runs take 5, 1 and 3 seconds
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    assert timing.best_time(lambda: calls.append(1), 3) == 1.0
    assert len(calls) == 4
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])
    assert timing.median_time(lambda: None, 3) == 3.0


@pytest.mark.parametrize("repeats", [0, -1, 2.5, True])
def test_bad_repeats(repeats):
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        timing.best_time(lambda: None, repeats)
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        timing.median_time(lambda: None, repeats)


def test_cpu_name_is_text():
    name = timing.cpu_name()
    assert isinstance(name, str) and name and "\n" not in name
