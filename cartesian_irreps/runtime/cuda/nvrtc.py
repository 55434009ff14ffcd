"""NVRTC: compile CUDA C source to PTX without a GPU (and without a driver).

The NVRTC shared library ships in the pip wheel ``nvidia-cuda-nvrtc-cu12``; CuPy's thin binding
``cupy_backends.cuda.libs.nvrtc`` (from ``cupy-cuda12x``) finds it. Neither needs a GPU, so the test
suite compiles every generated kernel here (CI installs both with ``pip install -e ".[gpu]"``).

:func:`compile_to_ptx` raises :class:`NvrtcUnavailable` naming the missing package when NVRTC cannot
be loaded, and :class:`CudaCompileError` carrying NVRTC's log when the source does not compile.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["DEFAULT_ARCH", "CudaCompileError", "NvrtcUnavailable", "available", "compile_to_ptx", "version"]

#: virtual architecture used when compiling without a device (sm_80: A100; H100 runs it too)
DEFAULT_ARCH = "compute_80"


class NvrtcUnavailable(RuntimeError):
    """NVRTC (the CUDA runtime compiler) cannot be loaded."""


class CudaCompileError(RuntimeError):
    """NVRTC rejected a source; the message holds the compiler log."""


@cache
def _binding() -> Any:
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as exc:
        raise NvrtcUnavailable(
            "CuPy is not installed: `pip install cupy-cuda12x nvidia-cuda-nvrtc-cu12` "
            f"(or `pip install -e '.[gpu]'`) ({exc})"
        ) from exc
    try:
        nvrtc.getVersion()
    except Exception as exc:  # the binding imports, but libnvrtc.so.12 is not found
        raise NvrtcUnavailable(
            "the NVRTC library libnvrtc.so.12 was not found: `pip install nvidia-cuda-nvrtc-cu12` "
            f"(or install the CUDA toolkit and set CUDA_PATH) ({type(exc).__name__}: {exc})"
        ) from exc
    return nvrtc


def available() -> bool:
    """Whether NVRTC can be loaded (no GPU needed)."""
    try:
        _binding()
    except NvrtcUnavailable:
        return False
    return True


def version() -> tuple[int, int]:
    """NVRTC's ``(major, minor)`` version."""
    return tuple(_binding().getVersion())


def compile_to_ptx(
    source: str, name: str = "kernel.cu", options: tuple[str, ...] = (), arch: str = DEFAULT_ARCH
) -> str:
    """PTX text of ``source`` compiled by NVRTC for ``arch`` (``-arch=...``) with extra ``options``.

    Raises :class:`CudaCompileError` with the compiler log on a syntax or type error.
    """
    nvrtc = _binding()
    prog = nvrtc.createProgram(source, name, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"-arch={arch}", *options])
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(prog)
            raise CudaCompileError(f"NVRTC failed to compile {name} ({exc}):\n{log}") from None
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx
