"""Radial basis (Bessel functions with a polynomial envelope) and the scaled SiLU, as autodiff ops.

    B_n(r) = sqrt(2/r_c) sin(n pi r / r_c) / r * f(r / r_c),   n = 1..num_bessel
    f(x)   = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)   (x < 1; 0 beyond)

f and its first two derivatives vanish at the cutoff, so energies and forces are continuous there.
Lengths in Å.
"""

from __future__ import annotations

import math

import numpy as np

from . import autodiff as ad
from .autodiff import Tensor

#: 1 / sqrt(E[silu(z)^2]) for z ~ N(0, 1): keeps activations at unit scale (as in the published code)
SILU_SCALE = 1.6765324703310907


def envelope(x: Tensor, p: int = 5) -> Tensor:
    """Polynomial envelope ``f(x)`` for ``0 <= x <= 1`` (edges are built inside the cutoff)."""
    xp_ = ad.power(x, float(p))
    c0 = (p + 1) * (p + 2) / 2.0
    c1 = float(p * (p + 2))
    c2 = p * (p + 1) / 2.0
    return 1.0 - c0 * xp_ + c1 * xp_ * x - c2 * xp_ * x * x


def bessel_basis(r: Tensor, cutoff: float, num: int = 8, p: int = 5) -> Tensor:
    """``(E, num)`` Bessel radial basis times the envelope, for edge lengths ``r`` ``(E,)`` in Å."""
    xp = r.xp
    freqs = ad.constant(xp.asarray(np.arange(1, num + 1, dtype=r.dtype) * (math.pi / cutoff)))
    rr = ad.reshape(r, (-1, 1))
    pref = math.sqrt(2.0 / cutoff)
    basis = ad.sin(rr * freqs) * (pref / rr)
    return basis * ad.reshape(envelope(r * (1.0 / cutoff), p), (-1, 1))


def scaled_silu(x: Tensor) -> Tensor:
    """``SILU_SCALE * x * sigmoid(x)``."""
    return ad.silu(x) * SILU_SCALE
