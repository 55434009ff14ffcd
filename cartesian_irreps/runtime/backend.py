"""Array-module selection and input validation shared by the numeric runtime.

The array module (NumPy or CuPy) is taken from the inputs; CuPy is imported only when a CuPy array
is passed in, so NumPy works without CuPy installed. No global state is changed.
"""

from __future__ import annotations

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
