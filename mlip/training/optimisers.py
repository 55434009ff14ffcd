"""Adam with AMSGrad, the exponential moving average of the weights and the plateau scheduler.

All act in place on flat parameter vectors (NumPy or CuPy, the module of the inputs).

**Adam / AMSGrad** (PyTorch semantics), step ``t`` with gradient ``g``::

    g ← g + λ · mask · θ                       (L2 weight decay on the masked entries)
    m ← β1 m + (1 - β1) g,   v ← β2 v + (1 - β2) g²,   v̂ ← max(v̂, v)   (AMSGrad; else v̂ = v)
    θ ← θ - (lr / (1 - β1^t)) · m / (sqrt(v̂) / sqrt(1 - β2^t) + ε)

**EMA** after ``n`` updates: ``θ_ema ← d θ_ema + (1 - d) θ`` with ``d = min(decay, (1 + n) / (10 + n))``
(decay 0: ``θ_ema = θ``).

**Plateau scheduler**: the learning rate is multiplied by ``factor`` (not below ``min_lr``) when the
validation loss has not improved for ``patience`` epochs.
"""

from __future__ import annotations

import math
from typing import Any

from cartesian_irreps.runtime.backend import module_of

__all__ = ["EMA", "AdamW", "PlateauScheduler"]


class AdamW:
    """Adam (optionally AMSGrad) with L2 weight decay on a mask of the parameters.

    Args:
        theta: the flat parameter vector (updated in place), shape ``(P,)``.
        lr, beta1, beta2, eps: Adam constants.
        weight_decay: ``λ`` of the L2 term (added to the gradient).
        decay_mask: ``(P,)`` array, 1 where weight decay applies, else 0.
        amsgrad: use ``max(v̂, v)`` as the second moment.

    Attributes:
        m, v, vmax: first, second and largest second moments, shape ``(P,)``.
        step: updates done.
    """

    def __init__(
        self,
        theta: Any,
        *,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        weight_decay: float,
        decay_mask: Any,
        amsgrad: bool,
    ) -> None:
        xp = module_of(theta)
        self.theta = theta
        self.lr = float(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.decay_mask = decay_mask
        self.amsgrad = amsgrad
        self.m = xp.zeros_like(theta)
        self.v = xp.zeros_like(theta)
        self.vmax = xp.zeros_like(theta)
        self.step = 0

    def update(self, g: Any) -> None:
        """One in-place update of ``theta`` with the gradient ``g`` (the formulas of the module docstring)."""
        xp = module_of(self.theta)
        if self.weight_decay > 0:
            g = g + self.weight_decay * self.decay_mask * self.theta
        self.step += 1
        b1, b2 = self.beta1, self.beta2
        self.m *= b1
        self.m += (1.0 - b1) * g
        self.v *= b2
        self.v += (1.0 - b2) * (g * g)
        bc1 = 1.0 - b1**self.step
        bc2 = 1.0 - b2**self.step
        if self.amsgrad:
            xp.maximum(self.vmax, self.v, out=self.vmax)
            second = self.vmax
        else:
            second = self.v
        denom = xp.sqrt(second) * (1.0 / math.sqrt(bc2)) + self.eps
        self.theta -= (self.lr / bc1) * (self.m / denom)

    def is_finite(self) -> bool:
        """Whether the parameters and both moments hold only finite numbers."""
        xp = module_of(self.theta)
        second = self.vmax if self.amsgrad else self.v
        return all(bool(xp.isfinite(a).all()) for a in (self.theta, self.m, second))


class EMA:
    """Exponential moving average of a flat parameter vector (warm-up as in the module docstring).

    Args:
        theta: the parameters followed (read at each :meth:`update`).
        decay: the largest decay ``d`` (0 disables averaging: the average is ``theta``).

    Attributes:
        values: the averaged vector (a copy of ``theta`` at the start).
        updates: updates done.
    """

    def __init__(self, theta: Any, decay: float) -> None:
        self.theta = theta
        self.decay = decay
        self.values = theta.copy()
        self.updates = 0

    def update(self) -> None:
        """Fold the current ``theta`` into the average."""
        if self.decay > 0:
            self.updates += 1
            n = self.updates
            d = min(self.decay, (1.0 + n) / (10.0 + n))
            self.values -= (1.0 - d) * (self.values - self.theta)
        else:
            self.values[...] = self.theta


class PlateauScheduler:
    """Learning-rate reduction on a plateau of the validation loss.

    Args:
        patience: epochs without improvement before a reduction.
        factor: multiplier of the learning rate then (0 < factor <= 1).
        min_lr: floor of the learning rate.

    Attributes:
        best: the lowest validation loss seen (``inf`` at first).
        bad_epochs: epochs since it was last lowered.
    """

    def __init__(self, patience: int, factor: float, min_lr: float) -> None:
        self.patience = patience
        self.factor = factor
        self.min_lr = min_lr
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, metric: float, lr: float) -> float:
        """Record an epoch's validation loss; returns the learning rate of the next epoch."""
        if metric < self.best:
            self.best = metric
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                lr = max(lr * self.factor, self.min_lr)
                self.bad_epochs = 0
        return lr
