"""One file format for arrays plus metadata: a pickle-free ``.npz`` with a ``__meta__`` JSON entry.

Model files (:func:`mlip.model.save_model`) and training checkpoints
(:func:`mlip.training.save_checkpoint`) are both written by :func:`write_archive` and read by
:func:`read_archive`:

* the arrays are stored as NumPy ``.npy`` members of a zip file (``np.savez``, host copies of NumPy
  or CuPy arrays), read back with ``allow_pickle=False``;
* ``__meta__`` is a ``uint8`` array holding UTF-8 JSON (configs, counters, ...);
* writing is atomic: the file is written to ``<path>.tmp``, flushed and fsynced, then renamed over
  ``path`` with :func:`os.replace` (and the folder fsynced where the platform allows), so a crash
  leaves the old file or the new one, never a partial one; the temporary file is removed when
  writing fails.

:func:`atomic_write_text` gives text files (logs, JSON) the same guarantee.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cartesian_irreps.runtime.backend import to_host

__all__ = ["ArchiveError", "atomic_write", "atomic_write_text", "jsonable", "read_archive", "write_archive"]

META_KEY = "__meta__"


class ArchiveError(ValueError):
    """A file is not a readable archive of the expected kind (truncated, foreign, no metadata)."""


def jsonable(v: Any) -> Any:
    """``v`` with tuples as lists, dict keys as strings and NumPy scalars as Python numbers."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # makes the rename durable (not possible on every platform)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills ``<path>.tmp``, which is fsynced and renamed.

    Raises whatever ``write`` or the file system raises; the temporary file is then removed and
    ``path`` is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text), mode="w")


def write_archive(path: str | os.PathLike[str], meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> Path:
    """Atomically write ``arrays`` (NumPy or CuPy; host copies are stored) and ``meta`` (JSON) to ``path``.

    Args:
        path: the ``.npz`` file (its folder is created).
        meta: JSON-serialisable metadata (tuples, NumPy scalars allowed; non-finite floats are
            written as JSON ``NaN``/``Infinity``).
        arrays: name -> array; the name ``__meta__`` is reserved.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if META_KEY in arrays:
        raise ValueError(f"the array name {META_KEY!r} is reserved for the metadata")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: to_host(v) for k, v in arrays.items()}
    payload[META_KEY] = np.frombuffer(json.dumps(jsonable(dict(meta))).encode(), dtype=np.uint8)
    return atomic_write(path, lambda fh: np.savez(fh, **payload))


def read_archive(
    path: str | os.PathLike[str],
    kind: str = "archive",
    error: type[Exception] = ArchiveError,
    identity: str | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_archive`: ``(meta, arrays)`` (host NumPy arrays, no pickle).

    Args:
        path: the file.
        kind: what the file should be, for the messages (e.g. ``"checkpoint"``, ``"model file"``).
        error: the exception class raised for an unreadable file.
        identity: what a file with metadata is (``"<path> is not a <identity> (no metadata)"``); ``kind``
            by default.

    Raises:
        FileNotFoundError: no file at ``path`` (``"no <kind> at <path>"``).
        error: a file that is not a zip of ``.npy`` arrays, is truncated, or has no ``__meta__`` JSON.
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise FileNotFoundError(f"no {kind} at {path} (it is a folder)")
        raise FileNotFoundError(f"no {kind} at {path}")
    meta: Any = None
    arrays: dict[str, np.ndarray] = {}
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if META_KEY in data.files:
                    meta = json.loads(bytes(data[META_KEY]).decode())
                    arrays = {k: data[k] for k in data.files if k != META_KEY}
    except (OSError, ValueError, EOFError, KeyError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        raise error(f"{path} is not a readable {kind} (truncated or foreign): {err}") from err
    if meta is None:
        raise error(f"{path} is not a {identity or kind} (no metadata)")
    if not isinstance(meta, dict):
        raise error(f"{path} is not a {identity or kind} (its metadata is not a JSON object)")
    return meta, arrays


def json_float(v: float) -> float | str:
    """A float for JSON metadata: finite values as they are, others as ``repr`` (``'inf'``, ``'nan'``)."""
    return v if math.isfinite(v) else repr(v)
