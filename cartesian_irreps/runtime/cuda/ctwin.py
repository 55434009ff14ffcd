"""The C twin of a generated CUDA source: the same kernel text compiled by ``cc`` and run on the CPU.

The harness defines what the CUDA source leaves to the GPU: ``KERNEL`` is ``static``, ``__restrict__``
is C's ``restrict``, and ``blockIdx``, ``threadIdx``, ``blockDim`` are file-scope structs that an
exported launcher ``launch_<kernel>(args..., blocks, threads)`` sets in two nested loops before each
call, exactly as a 1-D grid would. The shared library is built once per (source, REAL) in a cache
directory and loaded with ``ctypes``; :meth:`CTwin.launch` takes NumPy arrays.

This runs every kernel thread sequentially: it proves the arithmetic and the indexing (each output
written by its thread only; no atomics exist in the text), not the speed.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...generator.cuda import CudaSource, Kernel

__all__ = ["BLOCK", "CTwin", "compiler_available", "harness_source"]

BLOCK = 64  # threads per block of the emulated launch (several blocks for any real size)

_HARNESS = """#include <math.h>
#include <stddef.h>
typedef struct { unsigned int x, y, z; } twin_dim3;
static twin_dim3 blockIdx, threadIdx, blockDim;
#define KERNEL static
#define __restrict__ restrict
#define REAL {real}
"""


def compiler_available() -> str | None:
    """The C compiler the twin uses (``$CC`` or ``cc``), or None."""
    return shutil.which(os.environ.get("CC", "cc"))


def _launcher(k: Kernel) -> str:
    args = ", ".join(f"{t} {n}" for t, n in k.params)
    call = ", ".join(n for _, n in k.params)
    return (
        f"void launch_{k.name}({args}, long long blocks, unsigned int threads)\n{{\n"
        "    blockDim.x = threads; blockDim.y = blockDim.z = 1;\n"
        "    for (long long b = 0; b < blocks; ++b) {\n"
        "        blockIdx.x = (unsigned int)b; blockIdx.y = blockIdx.z = 0;\n"
        "        for (unsigned int t = 0; t < threads; ++t) {\n"
        "            threadIdx.x = t; threadIdx.y = threadIdx.z = 0;\n"
        f"            {k.name}({call});\n"
        "        }\n    }\n}\n"
    )


def harness_source(source: CudaSource, real: str) -> str:
    """The C file of the twin: harness defines, the kernel text unchanged, and the launchers."""
    if real not in ("float", "double"):
        raise ValueError(f"REAL must be 'float' or 'double', got {real!r}")
    launchers = "\n".join(_launcher(k) for k in source.kernels)
    return _HARNESS.replace("{real}", real) + source.text + "\n" + launchers


def _cache_dir() -> Path:
    base = os.environ.get("CARTESIAN_IRREPS_CACHE") or os.path.join(tempfile.gettempdir(), "cartesian-irreps-ctwin")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


class CTwin:
    """A generated source compiled as C for one ``REAL`` (``float`` or ``double``)."""

    def __init__(self, source: CudaSource, dtype: Any) -> None:
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"the C twin runs float32 or float64, got {dtype}")
        self.source, self.dtype = source, dtype
        real = "float" if dtype == np.float32 else "double"
        text = harness_source(source, real)
        cc = compiler_available()
        if cc is None:
            raise RuntimeError("no C compiler (cc or $CC) for the C twin of the CUDA kernels")
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        lib = _cache_dir() / f"twin_{digest}.so"
        if not lib.exists():
            work = Path(tempfile.mkdtemp(dir=_cache_dir()))
            c_file = work / "twin.c"
            c_file.write_text(text)
            out = work / "twin.so"
            # -O0: the generated straight-line code is long (seconds to optimise, milliseconds to run here)
            cmd = [cc, "-std=c99", "-O0", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unused-variable"]
            cmd += ["-Wno-unused-function", str(c_file), "-o", str(out), "-lm"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"the C twin does not compile ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
            os.replace(out, lib)
            shutil.rmtree(work, ignore_errors=True)
        self._lib = ctypes.CDLL(str(lib))
        self._real = ctypes.c_float if real == "float" else ctypes.c_double

    def launch(self, name: str, *args: Any, threads: int = BLOCK) -> None:
        """Run kernel ``name`` over its ``count`` threads; array arguments are NumPy (C-contiguous,
        ``REAL`` or int64), scalars Python ints."""
        k = self.source.kernel(name)
        if len(args) != len(k.params):
            raise TypeError(f"{name} takes {len(k.params)} arguments ({[n for _, n in k.params]}), got {len(args)}")
        values = dict(zip((n for _, n in k.params), args))
        total = 1
        for c in k.count:
            total *= int(values[c]) if isinstance(c, str) else int(c)
        cargs = []
        for (ctype, pname), a in zip(k.params, args):
            if "*" in ctype:
                want = np.int64 if "idx_t" in ctype else self.dtype
                if not isinstance(a, np.ndarray) or a.dtype != want or not a.flags.c_contiguous:
                    raise TypeError(f"{name}: {pname} must be a C-contiguous NumPy {np.dtype(want)} array")
                if "const" not in ctype and not a.flags.writeable:
                    raise ValueError(f"{name}: {pname} is read-only")
                cargs.append(ctypes.c_void_p(a.ctypes.data if a.size else 0))
            elif ctype == "idx_t":
                cargs.append(ctypes.c_longlong(int(a)))
            elif ctype == "int":
                cargs.append(ctypes.c_int(int(a)))
            else:  # pragma: no cover - generator types are the ones above
                raise TypeError(f"unsupported parameter type {ctype}")
        if total == 0:
            return
        blocks = (total + threads - 1) // threads
        fn = getattr(self._lib, f"launch_{name}")
        fn(*cargs, ctypes.c_longlong(blocks), ctypes.c_uint(threads))
