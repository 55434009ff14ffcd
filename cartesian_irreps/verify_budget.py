"""How long ``cartesian-irreps verify`` takes, and the largest lmax it runs without ``--force``.

Exact verification cost grows steeply with the largest rank: the number of product triples grows as
lmax^3 and the exact work per coupling (tables of (2l+1)^3 rationals, 3^l full tensors) grows polynomially
too. Fitted to the measurements of ``docs/math.md`` (2-core machine: 6 s at lmax 4, 25 s at lmax 6,
117 s at lmax 8 with ``--layout compact``), the time is about

    t(lmax) ~ 117 s * (lmax / 8)^6,

so lmax 10 takes minutes, lmax 16 hours and lmax 100 years. :data:`SAFE_LMAX` is the largest lmax that the
command line runs without ``--force``. This module does not import SymPy (the refusal is instant).
"""

from __future__ import annotations

from ._validate import check_rank

#: Largest lmax that ``cartesian-irreps verify`` runs without ``--force`` (about 2 minutes).
SAFE_LMAX = 8
#: Reference measurement the estimate is scaled from: (lmax, seconds).
REFERENCE = (8, 117.0)
#: Exponent of the power law ``t ~ lmax^GROWTH``.
GROWTH = 6


def estimated_seconds(lmax: int) -> float:
    """Rough wall time of ``verify --lmax lmax`` on the reference machine (seconds)."""
    lmax = check_rank(lmax, "lmax")
    ref_l, ref_s = REFERENCE
    return ref_s * (max(lmax, 1) / ref_l) ** GROWTH


def format_duration(seconds: float) -> str:
    """``under 1 s``, ``42 s``, ``3.5 min``, ``2.1 h``, ``4.0 days`` or ``14 years``."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{seconds:.0f} s" if seconds >= 1 else "under 1 s"


def check_lmax(lmax: int, force: bool = False) -> int:
    """Return ``lmax`` if it is a valid rank within :data:`SAFE_LMAX` (or ``force``), else raise ``ValueError``.

    The message gives the estimated time at ``lmax`` and how it grows.
    """
    lmax = check_rank(lmax, "lmax")
    if lmax > SAFE_LMAX and not force:
        ref_l, ref_s = REFERENCE
        estimate = format_duration(estimated_seconds(lmax))
        raise ValueError(
            f"--lmax {lmax} is above the safe bound {SAFE_LMAX}: exact verification time grows about as "
            f"lmax^{GROWTH} ({format_duration(ref_s)} at lmax {ref_l}, estimated ~{estimate} at lmax {lmax}); "
            "pass --force to run it anyway"
        )
    return lmax
