"""Stopping a run that went wrong: non-finite numbers and divergence.

A run stops with :class:`~mlip.training.TrainingError` (the last good checkpoint and ``best.npz`` are
kept; the bad state is never saved) when

* the loss of a batch or of the validation set is not finite, or the gradient has a non-finite entry;
* the optimiser state is not finite after an update (``θ``, Adam's ``m`` or ``v̂``: with a huge
  learning rate the second moment overflows to ``inf`` and the updates stop while the loss stays at
  a huge finite value, so no loss check would fire);
* the loss diverges: a batch loss per structure above :data:`STEP_FACTOR` times the reference, or an
  epoch's training or validation loss per structure above :data:`EPOCH_FACTOR` times the reference.
  The reference is the first epoch's mean training loss per structure (during the first epoch, the
  loss per structure of the first batch, i.e. of the untrained model).
"""

from __future__ import annotations

import math

__all__ = ["EPOCH_FACTOR", "STEP_FACTOR", "DivergenceGuard", "stop_message"]

#: An epoch's loss above this multiple of the reference is divergence.
EPOCH_FACTOR = 1e3
#: A batch's loss above this multiple of the reference is divergence (batches vary more than epochs).
STEP_FACTOR = 1e6


class DivergenceGuard:
    """Decides whether a loss means divergence (see the module docstring).

    Attributes:
        first_batch: loss per structure of the run's first batch (``None`` before it).
        first_epoch: mean training loss per structure of the first epoch (``None`` before its end).
    """

    def __init__(self, first_batch: float | None = None, first_epoch: float | None = None) -> None:
        self.first_batch = first_batch
        self.first_epoch = first_epoch

    @property
    def reference(self) -> float | None:
        """The loss per structure that later losses are compared with."""
        return self.first_epoch if self.first_epoch is not None else self.first_batch

    def _over(self, value: float, factor: float) -> str | None:
        ref = self.reference
        if ref is None or not ref > 0 or value <= factor * ref:
            return None
        return f"{value:.4g} per structure, {value / ref:.3g} times its start ({ref:.4g})"

    def check_step(self, loss_per_structure: float) -> str | None:
        """After a batch: a description of the divergence, or ``None``."""
        if self.first_batch is None and math.isfinite(loss_per_structure):
            self.first_batch = loss_per_structure
            return None
        over = self._over(loss_per_structure, STEP_FACTOR)
        return None if over is None else f"the training loss of the batch is {over}"

    def check_epoch(self, train_loss: float, valid_loss: float) -> str | None:
        """At the end of an epoch (losses per structure): a description of the divergence, or ``None``."""
        for what, value in (("training", train_loss), ("validation", valid_loss)):
            over = self._over(value, EPOCH_FACTOR)
            if over is not None:
                return f"the {what} loss of the epoch is {over}"
        if self.first_epoch is None:
            self.first_epoch = train_loss
        return None

    def state(self) -> dict[str, float | None]:
        """For the checkpoint."""
        return {"first_batch": self.first_batch, "first_epoch": self.first_epoch}


def stop_message(what: str, where: str, lr: float, kept: str, diverged: bool) -> str:
    """The error of a stopped run: what happened, where (epoch, batch), what is kept, what to do."""
    if diverged:
        return (
            f"training diverged at {where}: {what} (learning rate {lr:.3g}); {kept}; the diverged state is "
            f"not saved. Lower the learning rate, e.g. --lr {lr / 10:.3g}"
            + (
                " (with --resume to go on from the checkpoint)."
                if "checkpoint" in kept and "no checkpoint" not in kept
                else "."
            )
        )
    return (
        f"training stopped: {what} at {where} (learning rate {lr:.3g}); {kept}. "
        "Check the data, lower lr, or use float64."
    )
