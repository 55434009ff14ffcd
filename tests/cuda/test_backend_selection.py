"""Explicit kernel backend selection: choices, reasons, errors; never a silent fallback."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from cartesian_irreps.runtime import kernel_backend as kb
from cartesian_irreps.runtime import monomials as cpu

from .conftest import needs_cc


def test_auto_picks_compiled_or_reference_for_numpy_and_says_why(caplog):
    a = np.ones((2, 3))
    choice = kb.choose("op", a, compiled_available=True)
    assert choice.name == "compiled" and "NumPy" in choice.reason
    choice = kb.choose("op2", a, compiled_available=False)
    assert choice.name == "reference" and "not built" in choice.reason
    with caplog.at_level(logging.INFO, logger="cartesian_irreps.backend"):
        kb.choose("op3", a, compiled_available=True)
    assert "op3: backend 'compiled'" in caplog.text


def test_requests_that_cannot_run_are_errors():
    a = np.ones((2, 3))
    with kb.use_backend("cuda"), pytest.raises(TypeError, match="needs CuPy arrays"):
        kb.choose("fused", a, True)
    with kb.use_backend("compiled"), pytest.raises(RuntimeError, match="not built"):
        kb.choose("fused", a, False)
    with pytest.raises(ValueError, match="unknown kernel backend"), kb.use_backend("gpu-ish"):
        pass
    with kb.use_backend("cuda"), pytest.raises(TypeError, match="needs CuPy arrays"):
        cpu.monomials(a, cpu.symmetric_monomial_table(3, 2))


def test_the_choice_is_scoped_to_the_context_and_the_thread():
    assert kb.requested() == "auto"
    seen = []
    with kb.use_backend("reference"):
        assert kb.requested() == "reference"
        t = threading.Thread(target=lambda: seen.append(kb.requested()))
        t.start()
        t.join()
        with kb.use_backend("cuda-twin"):
            assert kb.requested() == "cuda-twin"
        assert kb.requested() == "reference"
    assert kb.requested() == "auto" and seen == ["auto"]


@needs_cc
@pytest.mark.parametrize("backend", ["reference", "cuda-twin", "compiled"])
def test_every_backend_gives_the_same_monomials(backend):
    if backend == "compiled" and not cpu.kernel_available():
        pytest.skip("the C extension is not built")
    rng = np.random.default_rng(0)
    table = cpu.symmetric_monomial_table(4, 3)
    a, h = rng.standard_normal((9, 4)), rng.standard_normal((9, 4))
    g = rng.standard_normal((9, len(table[0])))
    with kb.use_backend("reference"):
        want = cpu.monomials_hvp(a, g, h, table)
    with kb.use_backend(backend):
        got = cpu.monomials_hvp(a, g, h, table)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_cuda_path_imports_neither_sympy_nor_cupy_for_numpy_input():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from cartesian_irreps.runtime.cuda import kernels\n"
        "from cartesian_irreps.runtime.product_basis import model_layers, product_tables, product_tree\n"
        "a, o = model_layers(2, 1, 3, 'even')[0]\n"
        "product_tables(a, *product_tree(a, o, 2, 3, 'even'), 3)\n"
        "kernels.cartesian_harmonics(np.ones((2, 3)), 2)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sympy', 'cupy')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
