"""Strategy lookup in the generated plans (with a safe default before anything is generated)."""

from __future__ import annotations

from typing import Any

from .contractions import STRATEGIES

try:  # the plans are generated; the couplings can exist without them during generation itself
    from ..generated import plans as _plans
except ImportError:  # pragma: no cover - only while bootstrapping the generator
    _plans = None

FULL_ROUTES = ("convert", "direct")


def compact(kind: str, key: tuple[int, int, int], strategy: str | None = None) -> tuple[str, Any]:
    """``(strategy, einsum path)`` for contraction ``kind`` of the coupling with ranks ``key``."""
    if strategy is not None:
        if strategy not in STRATEGIES[kind]:
            raise ValueError(
                f"unknown strategy {strategy!r} for a {kind} contraction; expected one of {STRATEGIES[kind]}"
            )
        chosen = strategy
    elif _plans is not None and key in _plans.COMPACT[kind]:
        chosen = _plans.COMPACT[kind][key][0]
    else:
        chosen = "einsum"
    path = _plans.EINSUM_PATHS[kind].get(key) if _plans is not None else None
    return chosen, list(path) if path else None


def full(triple: tuple[int, int, int], shared: str | None, strategy: str | None = None) -> str:
    """``'convert'`` (to compact and back) or ``'direct'`` (contract, then remove traces)."""
    if strategy is not None:
        if strategy not in FULL_ROUTES:
            raise ValueError(f"unknown full-layout strategy {strategy!r}; expected one of {FULL_ROUTES}")
        return strategy
    if _plans is None:
        return "convert"
    return _plans.FULL.get((tuple(triple), shared), ("convert",))[0]
