"""Which implementation runs a kernel op: explicit choice, automatic default that says what it chose.

Backends of the fused message product and of the product-basis monomials:

* ``"compiled"``: the hand-written C extensions (``_fused``, ``_monomials``) on NumPy arrays;
* ``"cuda"``: the generated CUDA kernels on CuPy arrays (:mod:`cartesian_irreps.runtime.cuda.kernels`);
* ``"cuda-twin"``: the *same generated kernel text* compiled as C and run on the CPU on NumPy arrays
  (:mod:`cartesian_irreps.runtime.cuda.ctwin`): slow, for checking the GPU code without a GPU;
* ``"reference"``: the NumPy/CuPy array-module reference (per-path matrix products);
* ``"auto"`` (default): ``cuda`` for CuPy inputs, ``compiled`` for NumPy inputs when the extension
  is built, else ``reference``; the choice and its reason are logged once per op at INFO level on
  the ``cartesian_irreps.backend`` logger and returned by :func:`choose`.

Select with ``with use_backend("cuda-twin"): ...`` (a context variable: thread- and task-local, restored
on exit; nothing global is changed). Asking for a backend that cannot take the inputs is an error
naming the problem, never a silent fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .backend import is_cupy

__all__ = ["BACKENDS", "Choice", "choose", "requested", "use_backend"]

BACKENDS = ("auto", "compiled", "cuda", "cuda-twin", "reference")
_REQUESTED: ContextVar[str] = ContextVar("cartesian_irreps_kernel_backend", default="auto")
_LOG = logging.getLogger("cartesian_irreps.backend")
_LOGGED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Choice:
    """The backend that runs an op and why."""

    name: str
    reason: str


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


@contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Run the block with kernel backend ``name`` (one of :data:`BACKENDS`)."""
    token = _REQUESTED.set(_check(name))
    try:
        yield name
    finally:
        _REQUESTED.reset(token)


def requested() -> str:
    """The backend asked for in this context (``"auto"`` unless :func:`use_backend` says otherwise)."""
    return _REQUESTED.get()


def choose(op: str, a: Any, compiled_available: bool) -> Choice:
    """The backend for ``op`` on input array ``a`` (NumPy or CuPy) given whether the C extension is built."""
    req = requested()
    cupy = is_cupy(a)
    where = "CuPy" if cupy else "NumPy"
    if req == "auto":
        if cupy:
            choice = Choice("cuda", "CuPy input: generated CUDA kernel (NVRTC)")
        elif compiled_available:
            choice = Choice("compiled", "NumPy input: compiled C kernel")
        else:
            choice = Choice("reference", "NumPy input and the compiled C kernel is not built: NumPy reference")
        if (op, choice.name) not in _LOGGED:
            _LOGGED.add((op, choice.name))
            _LOG.info("%s: backend %r (%s)", op, choice.name, choice.reason)
        return choice
    if req == "cuda" and not cupy:
        raise TypeError(f"{op}: backend 'cuda' needs CuPy arrays, got NumPy (cupy.asarray them, or use 'compiled')")
    if req in ("compiled", "cuda-twin") and cupy:
        raise TypeError(f"{op}: backend {req!r} runs on the CPU and needs NumPy arrays, got CuPy (use 'cuda')")
    if req == "compiled" and not compiled_available:
        raise RuntimeError(
            f"{op}: backend 'compiled' was requested but the C extension is not built "
            "(reinstall with a C compiler: pip install -e .)"
        )
    return Choice(req, f"requested by use_backend({req!r}) for {where} input")
