"""The exceptions of training (both end a command-line run with one ``error:`` line)."""

from __future__ import annotations

__all__ = ["DataError", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, divergence, an unusable checkpoint, a locked output folder)."""


class DataError(ValueError):
    """A data file or a set of structures is unusable (names the file and the problem)."""
