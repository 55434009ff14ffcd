"""Shared inputs of the CUDA kernel tests (NVRTC compile and C twin; no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest

from cartesian_irreps._validate import parity_of
from cartesian_irreps.runtime import tables
from cartesian_irreps.runtime.cuda import nvrtc
from cartesian_irreps.runtime.cuda.ctwin import compiler_available
from cartesian_irreps.runtime.fused import PathTable

needs_nvrtc = pytest.mark.skipif(
    not nvrtc.available(),
    reason="NVRTC not installed: pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12 (CI installs both)",
)
needs_cc = pytest.mark.skipif(compiler_available() is None, reason="no C compiler for the C twin")

#: relative tolerance of the twin against the NumPy reference per dtype
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}


def path_table(l1_max: int, lmax: int, parity: str) -> PathTable:
    """All message paths ``l1 <= l1_max``, ``l2, l3 <= lmax`` of a parity ('even', 'odd' or 'both')."""
    paths = [
        (l1, l2, l3)
        for l1 in range(l1_max + 1)
        for l2 in range(lmax + 1)
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1)
        if parity == "both" or parity_of(l1, l2, l3) == parity
    ]
    if not paths:
        raise ValueError("no paths")
    return PathTable.from_couplings(paths, [tables.dense_coupling(*p) for p in paths])


def assert_close(got: np.ndarray, want: np.ndarray, dtype: np.dtype) -> None:
    """``|got - want| <= rtol * max(1, max|want|)`` elementwise (relative to the array's scale)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    err = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()) if want.size else 0.0
    assert np.isfinite(got).all()
    assert err <= RTOL[np.dtype(dtype)] * scale, f"max error {err:.3g} at scale {scale:.3g}"


@pytest.fixture
def twin_launches(monkeypatch):
    """Counts the C-twin kernel launches by kernel name during a test."""
    from collections import Counter

    from cartesian_irreps.runtime.cuda.ctwin import CTwin

    calls: Counter = Counter()
    launch = CTwin.launch

    def counting(self, name, *args, **kwargs):
        calls[name] += 1
        return launch(self, name, *args, **kwargs)

    monkeypatch.setattr(CTwin, "launch", counting)
    return calls
