"""Opt-in: let glibc's malloc keep freed memory, so large temporaries are not page-faulted afresh.

A model evaluation allocates and frees many arrays of a few MB. By default glibc serves blocks above
its mmap threshold (128 KiB, raised dynamically) with fresh ``mmap`` calls and returns freed memory
at the top of the heap to the system once it exceeds the trim threshold, so every call touches new
pages: for a 256-atom cell about 19 000 minor page faults (74 MB) per energy+forces call, 10-30 % of
its time on two cores. :func:`keep_freed_memory` raises both thresholds with ``mallopt`` so that
freed blocks are reused instead.

This changes a process-wide setting, so the library never calls it by itself: the ``mlip`` command
line and the benchmark scripts call it (their processes are their own) and say so; in your own
program call it once at start-up, or set the equivalent environment variables before Python starts::

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864

The cost is a resident size that stays near its peak. On other C libraries (musl, macOS, Windows)
it does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MALLOC_ENV", "keep_freed_memory"]

# mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: the largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2)
_MMAP_MAX = 32 * 1024 * 1024

#: the same settings as environment variables (for a child process, e.g. a peer benchmark)
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(_MMAP_MAX),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(64 << 20),
}


def keep_freed_memory(trim_threshold: int = 1 << 30, top_pad: int = 64 << 20) -> bool:
    """Raise glibc's mmap threshold to 32 MiB, its trim threshold to ``trim_threshold`` bytes and its
    top pad to ``top_pad`` bytes (process-wide). Returns whether all three were accepted (False
    where the C library is not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, int(min(trim_threshold, 2**31 - 1))) == 1
    ok &= mallopt(_M_TOP_PAD, int(min(top_pad, 2**31 - 1))) == 1
    return bool(ok)
