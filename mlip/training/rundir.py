"""The output folder of a run: one run at a time (a lock file), and an old run kept until the new one starts.

**Lock.** ``<output_dir>/.mlip-train.lock`` is created with ``O_CREAT | O_EXCL`` and holds the pid and
host of the run; a second run into the folder fails with an error naming them. A lock left by a process
that no longer exists on this host (a killed run) is taken over with a warning. The lock is removed
when the run ends.

**An old run** (``overwrite=True`` with files of another run in the folder) is moved aside, into
``<output_dir>.old-<YYYYmmdd-HHMMSS>``, when the new run starts; once the new run has written its first
checkpoint the old files are deleted, and if it fails before that they are moved back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import TrainingError

__all__ = ["LOCK_NAME", "RUN_FILES", "RunFolder", "check_output_dir"]

LOCK_NAME = ".mlip-train.lock"
#: Files (and folders) a training run writes into its output folder.
RUN_FILES = (
    "checkpoint.npz",
    "best.npz",
    "log.csv",
    "learning_curve.png",
    "train_config.json",
    "test_metrics.json",
    "test",
)


def check_output_dir(out_dir: Path) -> None:
    """Raise :class:`TrainingError` when ``out_dir`` cannot be a writable folder (without creating anything)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingError(f"the output folder {out_dir} is a file, not a folder: choose another --output-dir")
    parent = out_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise TrainingError(f"the output folder {out_dir} cannot be made: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrainingError(f"cannot write into {parent} (permission denied): choose another --output-dir")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunFolder:
    """The output folder of one run (see the module docstring).

    Args:
        path: the folder.
        warn: where warnings go (stderr by default).
    """

    def __init__(self, path: Path, warn: object = None) -> None:
        self.path = path
        self.lock_path = path / LOCK_NAME
        self.aside: Path | None = None
        self._warn = warn

    def _say(self, text: str) -> None:
        print(text, file=sys.stderr if self._warn is None else self._warn, flush=True)

    # ---------------------------------------------------------------------------------- lock
    def _take_lock(self) -> None:
        host = socket.gethostname()
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid_text, _, other_host = self.lock_path.read_text().strip().partition(" ")
                    pid = int(pid_text)
                except (OSError, ValueError):
                    pid, other_host = -1, host
                if pid > 0 and (other_host != host or _alive(pid)):
                    raise TrainingError(
                        f"the output folder {self.path} is in use by another training run (pid {pid} on {other_host}; "
                        f"lock file {self.lock_path}): wait for it to end, or choose another --output-dir"
                    ) from None
                self._say(
                    f"warning: taking over the stale lock {self.lock_path} of a run that no longer exists "
                    f"(pid {pid if pid > 0 else 'unknown'})"
                )
                self.lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {host}\n")
            return
        raise TrainingError(f"could not take the lock {self.lock_path}: another run took it at the same time")

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunFolder]:
        """Create the folder and hold its lock within the block (errors of the file system as TrainingError)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._take_lock()
        except OSError as err:
            raise TrainingError(
                f"cannot write into the output folder {self.path}: {err.strerror or err} ({err.filename or self.path})"
            ) from err
        try:
            yield self
        finally:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()

    # -------------------------------------------------------------------------------- old run
    def old_files(self) -> list[Path]:
        """The files of a previous run in the folder."""
        return [self.path / n for n in RUN_FILES if (self.path / n).exists()]

    def set_aside(self) -> Path | None:
        """Move the files of a previous run into ``<folder>.old-<timestamp>``; that folder (None if nothing moved).

        Only a run with a checkpoint or a model (``checkpoint.npz``, ``best.npz``) is kept aside; files left
        by a run that stopped before its first checkpoint are deleted.
        """
        old = self.old_files()
        if not any(f.name in ("checkpoint.npz", "best.npz") for f in old):
            for f in old:
                shutil.rmtree(f) if f.is_dir() else f.unlink()
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.old-{stamp}")
        k = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.old-{stamp}-{k}")
            k += 1
        aside.mkdir()
        for f in old:
            os.replace(f, aside / f.name)
        self.aside = aside
        self._say(f"the previous run in {self.path} is set aside in {aside} until this run writes its first checkpoint")
        return aside

    def discard_aside(self) -> None:
        """The new run has started: delete the previous run's files."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self._say(f"removed the previous run ({self.aside})")
            self.aside = None

    def restore_aside(self) -> None:
        """The new run failed before its first checkpoint: put the previous run's files back."""
        if self.aside is None:
            return
        for n in RUN_FILES:
            new = self.path / n
            if new.is_dir():
                shutil.rmtree(new, ignore_errors=True)
            else:
                new.unlink(missing_ok=True)
        for f in self.aside.iterdir():
            os.replace(f, self.path / f.name)
        self.aside.rmdir()
        self._say(f"this run failed before its first checkpoint: the previous run is back in {self.path}")
        self.aside = None
