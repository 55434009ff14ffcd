"""Wall-clock timing of a callable, as the tuner (``cartesian-irreps generate --tune``) and the benchmarks use it.

:func:`best_time` and :func:`median_time` run ``fn()`` once as a warm-up (first-call costs: caches, page
faults, lazily built tables), then ``repeats`` more times, and return seconds (``time.perf_counter``).
The best time is the least sensitive to other jobs on the machine; the median shows the typical run.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["best_time", "cpu_name", "median_time"]


def _times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of ``repeats`` runs of ``fn()`` after one warm-up run."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeats`` runs after one warm-up run."""
    return min(_times(fn, repeats))


def median_time(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after one warm-up run."""
    return statistics.median(_times(fn, repeats))


def cpu_name() -> str:
    """The CPU model (``model name`` of ``/proc/cpuinfo``; else ``platform.processor()``; else ``unknown CPU``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description(*packages: str) -> str:
    """``"<CPU>, <n> cores available; Python x, NumPy y, <package> z ..."`` for benchmark records.

    ``packages`` are import names whose ``__version__`` is appended (e.g. ``"ase"``, ``"opt_einsum"``)."""
    import importlib

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    for name in packages:
        module = importlib.import_module(name)
        parts.append(f"{name} {getattr(module, '__version__', '?')}")
    return f"{cpu_name()}, {cores} cores available; " + ", ".join(parts)
