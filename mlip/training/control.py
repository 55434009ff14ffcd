"""Stopping a run cleanly: SIGINT / SIGTERM ask to stop after the current batch.

A second Ctrl-C (SIGINT while a stop is already asked for) raises :class:`KeyboardInterrupt` at once.
The handlers are installed only in the main thread and restored on exit.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None], stop_requested: Callable[[], bool]) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM call ``request_stop(signal name)`` instead of ending the process.

    Args:
        request_stop: records the request (the trainer stops after the current batch).
        stop_requested: whether a stop was already asked for (then SIGINT raises ``KeyboardInterrupt``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stop_requested() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request_stop(name)
        with contextlib.suppress(Exception):
            sys.stderr.write(f"\n{name}: finishing the current batch, then saving a checkpoint ...\n")

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in old:
            signal.signal(s, handler)
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
