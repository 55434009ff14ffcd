"""The one backend layer: array module, devices, host copies, dtype and input checks, threads.

Used by the numeric runtime and by ``mlip`` alike (nothing else writes these helpers again).

The array module (NumPy or CuPy) is taken from the inputs; CuPy is imported only when a CuPy array
is passed in, so NumPy works without CuPy installed. No global state is changed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_cupy(a: Any) -> bool:
    """True for a CuPy array (detected without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(*arrays: Any) -> ModuleType:
    """``numpy`` or ``cupy`` according to the arrays; mixing them (or two GPUs) is an error."""
    kinds = {is_cupy(a) for a in arrays if a is not None}
    if len(kinds) > 1:
        raise TypeError("inputs mix NumPy and CuPy arrays; move them to the same device first")
    if kinds == {True}:
        import cupy

        devices = {a.device.id for a in arrays if a is not None}
        if len(devices) > 1:
            raise ValueError(f"inputs live on different GPUs {sorted(devices)}; move them to one device")
        return cupy
    return np


def as_float_array(a: Any, name: str, xp: ModuleType) -> Any:
    """Check that ``a`` is an array of float32 or float64 of module ``xp``; return it unchanged."""
    if not (isinstance(a, np.ndarray) or is_cupy(a)):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {a.dtype}; expected float32 or float64")
    return a


def common_dtype(named: dict[str, Any]) -> np.dtype:
    """The single float dtype shared by all arrays; a mixture is an error (no silent up-casting)."""
    dtypes = {a.dtype for a in named.values() if a is not None}
    if len(dtypes) != 1:
        listing = ", ".join(f"{k}: {a.dtype}" for k, a in named.items() if a is not None)
        raise TypeError(f"inputs have different dtypes ({listing}); cast them to one of float32/float64")
    return np.dtype(dtypes.pop())


def check_finite(xp: ModuleType, named: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first array that holds NaN or infinity."""
    for name, a in named.items():
        if a is not None and not bool(xp.isfinite(a).all()):
            raise ValueError(f"{name} contains NaN or infinite values")


def check_trailing(a: Any, name: str, expected: tuple[int, ...], what: str) -> None:
    """Check the trailing axes of ``a`` against ``expected`` with a message that says what they mean."""
    n = len(expected)
    if a.ndim < n or tuple(a.shape[a.ndim - n :]) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(a.shape)}; its last axes must be {tuple(expected)} ({what})")


# --------------------------------------------------------------------------------------------
# devices and host copies

#: Accepted device names and what they mean: ``numpy`` (CPU) or ``cupy`` (CUDA GPU).
DEVICE_ALIASES = {"numpy": "numpy", "cpu": "numpy", "cupy": "cupy", "gpu": "cupy", "cuda": "cupy"}


def import_cupy(purpose: str = "this") -> ModuleType:
    """Import CuPy, or raise ``RuntimeError`` that says what needed it and how to install it."""
    try:
        import cupy
    except ImportError as err:
        raise RuntimeError(
            f"{purpose} needs CuPy and a CUDA GPU: pip install 'cartesian-irreps[gpu]' (cupy-cuda12x)"
        ) from err
    return cupy


def device_name(device: str) -> str:
    """Canonical device name (``numpy`` or ``cupy``) of ``device`` (aliases: cpu, gpu, cuda)."""
    name = DEVICE_ALIASES.get(str(device).strip().lower())
    if name is None:
        raise ValueError(f"unknown device {device!r}; expected one of {sorted(DEVICE_ALIASES)}")
    return name


def module_for_device(device: str) -> ModuleType:
    """The array module of a device name: ``numpy`` for numpy/cpu, ``cupy`` for cupy/gpu/cuda."""
    return np if device_name(device) == "numpy" else import_cupy(f"device {device!r}")


def module_of(a: Any) -> ModuleType:
    """The array module of one array (``cupy`` for a CuPy array, else ``numpy``)."""
    if is_cupy(a):
        import cupy

        return cupy
    return np


def to_host(a: Any, dtype: Any = None) -> np.ndarray:
    """A NumPy array with the values of ``a`` (a CuPy array is copied to the host; NumPy is not copied
    unless ``dtype`` asks for a conversion)."""
    if is_cupy(a):
        a = a.get()
    return np.asarray(a, dtype=dtype)


# --------------------------------------------------------------------------------------------
# threads

#: Environment variable that sets the number of threads of the compiled kernels.
THREADS_ENV = "CARTESIAN_IRREPS_NUM_THREADS"

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def default_threads() -> int:
    """Threads of the compiled kernels: ``$CARTESIAN_IRREPS_NUM_THREADS``, else the usable CPUs."""
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={env!r} is not an integer") from None
        if n < 1:
            raise ValueError(f"{THREADS_ENV}={env!r} must be >= 1")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool with at least ``workers`` threads, created lazily (and grown when needed)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < workers:
            # a smaller pool is dropped, not shut down: another thread may still be submitting to it
            # (its idle workers exit once it is garbage collected)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cartesian-irreps")
            _pool_size = workers
        return _pool


def run_parallel(call: Callable[..., None], parts: Sequence[tuple[Any, ...]]) -> None:
    """Run ``call(*part)`` for every part: the first in this thread, the rest in :func:`thread_pool`.

    Returns when all are done; the first exception raised by any part is re-raised."""
    if not parts:
        return
    if len(parts) == 1:
        call(*parts[0])
        return
    futures = [thread_pool(len(parts) - 1).submit(call, *p) for p in parts[1:]]
    try:
        call(*parts[0])
    finally:
        for f in futures:
            f.result()
