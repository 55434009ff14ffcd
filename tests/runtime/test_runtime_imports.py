"""The run-time path never imports SymPy, and imports fast."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys, time
t = time.perf_counter()
import cartesian_irreps.runtime as rt
from cartesian_irreps.runtime.products import tensor_product
from cartesian_irreps.runtime.harmonics import cartesian_harmonics
import numpy as np
cartesian_harmonics(np.ones((2, 3)), 3)
tensor_product(np.ones((2, 1, 3)), np.ones((2, 1, 3)), 1, 1, 2)
elapsed = time.perf_counter() - t
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sympy', 'cupy', 'torch', 'jax'))
print(repr((elapsed, bad)))
"""


def test_runtime_does_not_import_sympy_and_is_fast():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    elapsed, bad = eval(out.strip().splitlines()[-1])
    assert bad == []
    assert elapsed < 1.0, f"runtime import + first call took {elapsed:.2f} s"
