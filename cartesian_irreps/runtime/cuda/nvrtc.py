"""NVRTC: compile CUDA C source to PTX without a GPU (and without a driver).

The NVRTC shared library ``libnvrtc.so.12`` ships in the pip wheel ``nvidia-cuda-nvrtc-cu12``. Two
loaders reach it, neither needing a GPU:

* ``"cupy"``: CuPy's thin binding ``cupy_backends.cuda.libs.nvrtc`` (with ``cupy-cuda12x``);
* ``"ctypes"``: the library itself through :mod:`ctypes`, found in the wheel
  (``nvidia/cuda_nvrtc/lib``), under ``$CUDA_PATH/lib64`` or on the loader path — so the NVRTC tests
  run with only ``nvidia-cuda-nvrtc-cu12`` installed.

:func:`compile_to_ptx` uses the first loader that works (or the one named), raises
:class:`NvrtcUnavailable` naming what is missing, and :class:`CudaCompileError` carrying NVRTC's log
when the source does not compile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_ARCH",
    "LOADERS",
    "CudaCompileError",
    "NvrtcUnavailable",
    "available",
    "compile_to_ptx",
    "version",
]

#: virtual architecture used when compiling without a device (sm_80: A100; H100 runs it too)
DEFAULT_ARCH = "compute_80"
LOADERS = ("cupy", "ctypes")
_INSTALL = "pip install nvidia-cuda-nvrtc-cu12 (or `pip install -e '.[gpu]'`)"


class NvrtcUnavailable(RuntimeError):
    """NVRTC (the CUDA runtime compiler) cannot be loaded."""


class CudaCompileError(RuntimeError):
    """NVRTC rejected a source; the message holds the compiler log."""


class _CupyNvrtc:
    def __init__(self) -> None:
        try:
            from cupy_backends.cuda.libs import nvrtc
        except ImportError as exc:
            raise NvrtcUnavailable(f"CuPy's NVRTC binding is not installed (pip install cupy-cuda12x): {exc}") from exc
        try:
            nvrtc.getVersion()
        except Exception as exc:  # the binding imports, but libnvrtc.so.12 is not found
            raise NvrtcUnavailable(f"libnvrtc.so.12 not found by CuPy: {_INSTALL} ({exc})") from exc
        self._m = nvrtc

    def version(self) -> tuple[int, int]:
        return tuple(self._m.getVersion())

    def compile(self, source: str, name: str, options: list[str]) -> str:
        prog = self._m.createProgram(source, name, [], [])
        try:
            try:
                self._m.compileProgram(prog, options)
            except self._m.NVRTCError as exc:
                log = self._m.getProgramLog(prog)
                raise CudaCompileError(f"NVRTC failed to compile {name} ({exc}):\n{log}") from None
            ptx = self._m.getPTX(prog)
        finally:
            self._m.destroyProgram(prog)
        return ptx.decode() if isinstance(ptx, bytes) else ptx


def _library_candidates() -> list[str]:
    out = []
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations or () if spec else ():
        out += sorted(str(p) for p in (Path(root) / "cuda_nvrtc" / "lib").glob("libnvrtc.so*") if "alt" not in p.name)
    if os.environ.get("CUDA_PATH"):
        out += sorted(str(p) for p in (Path(os.environ["CUDA_PATH"]) / "lib64").glob("libnvrtc.so*"))
    found = ctypes.util.find_library("nvrtc")
    return [*out, *([found] if found else []), "libnvrtc.so.12"]


class _CtypesNvrtc:
    def __init__(self) -> None:
        errors = []
        for path in _library_candidates():
            try:
                self._lib = ctypes.CDLL(path)
                break
            except OSError as exc:
                errors.append(f"{path}: {exc}")
        else:
            raise NvrtcUnavailable(f"libnvrtc.so.12 not found: {_INSTALL}; tried {errors}")
        lib = self._lib
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what}: {self._lib.nvrtcGetErrorString(status).decode()} ({status})")

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self._lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        return major.value, minor.value

    def compile(self, source: str, name: str, options: list[str]) -> str:
        lib, prog = self._lib, ctypes.c_void_p()
        self._check(
            lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
            "nvrtcCreateProgram",
        )
        try:
            opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
            status = lib.nvrtcCompileProgram(prog, len(options), opts)
            if status != 0:
                size = ctypes.c_size_t()
                lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
                log = ctypes.create_string_buffer(size.value)
                lib.nvrtcGetProgramLog(prog, log)
                err = lib.nvrtcGetErrorString(status).decode()
                raise CudaCompileError(f"NVRTC failed to compile {name} ({err}):\n{log.value.decode(errors='replace')}")
            size = ctypes.c_size_t()
            self._check(lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
            ptx = ctypes.create_string_buffer(size.value)
            self._check(lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))
        return ptx.value.decode()


@cache
def _binding(loader: str | None = None) -> Any:
    if loader is not None and loader not in LOADERS:
        raise ValueError(f"unknown NVRTC loader {loader!r}; expected one of {LOADERS}")
    errors = []
    for name in (loader,) if loader else LOADERS:
        try:
            return _CupyNvrtc() if name == "cupy" else _CtypesNvrtc()
        except NvrtcUnavailable as exc:
            errors.append(str(exc))
    raise NvrtcUnavailable("NVRTC is not available: " + "; ".join(errors))


def available(loader: str | None = None) -> bool:
    """Whether NVRTC can be loaded (no GPU needed), by ``loader`` or by any."""
    try:
        _binding(loader)
    except NvrtcUnavailable:
        return False
    return True


def version(loader: str | None = None) -> tuple[int, int]:
    """NVRTC's ``(major, minor)`` version."""
    return _binding(loader).version()


def compile_to_ptx(
    source: str,
    name: str = "kernel.cu",
    options: tuple[str, ...] = (),
    arch: str = DEFAULT_ARCH,
    loader: str | None = None,
) -> str:
    """PTX text of ``source`` compiled by NVRTC for ``arch`` (``-arch=...``) with extra ``options``.

    Raises :class:`CudaCompileError` with the compiler log on a syntax or type error.
    """
    return _binding(loader).compile(source, name, [f"-arch={arch}", *options])
