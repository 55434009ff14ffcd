"""One call to train: :func:`train` builds a :class:`~mlip.training.Trainer` and runs it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TextIO

from ase import Atoms

from .config import TrainConfig
from .log import TrainResult
from .trainer import Callback, Trainer

__all__ = ["train"]


def train(
    config: TrainConfig,
    train_structures: Sequence[Atoms] | None = None,
    valid_structures: Sequence[Atoms] | None = None,
    isolated_energies: Mapping[str, float] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    stream: TextIO | None = None,
) -> TrainResult:
    """Build a :class:`Trainer` and run :meth:`Trainer.fit` (arguments as for :class:`Trainer`)."""
    trainer = Trainer(
        config,
        train_structures,
        valid_structures,
        isolated_energies,
        resume=resume,
        overwrite=overwrite,
        callbacks=callbacks,
        stream=stream,
    )
    return trainer.fit()
