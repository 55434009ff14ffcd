"""Argument checks shared by the symbolic core and the numeric runtime.

This module must stay free of SymPy so that the run-time path can use it.
"""

from __future__ import annotations

import numbers

LAYOUTS = ("compact", "full")
NORMALIZATIONS = ("unit", "published", "raw")
HARMONIC_NORMALIZATIONS = ("published", "unit")


def check_rank(l: object, name: str = "l") -> int:
    """Return ``l`` as an int if it is a non-negative integer rank, else raise.

    Booleans and floats (even integral ones like ``2.0``) are rejected so that a
    wrong argument is never silently accepted.
    """
    if isinstance(l, bool) or not isinstance(l, numbers.Integral):
        raise TypeError(f"rank {name} must be a non-negative integer, got {l!r} ({type(l).__name__})")
    if l < 0:
        raise ValueError(f"rank {name} must be >= 0, got {l}")
    return int(l)


def check_triple(l1: object, l2: object, l3: object) -> tuple[int, int, int]:
    """Validate a product triple ``l1 x l2 -> l3`` against the triangle rule.

    Raises ``ValueError`` naming the violated condition ``|l1-l2| <= l3 <= l1+l2``.
    """
    a, b, c = check_rank(l1, "l1"), check_rank(l2, "l2"), check_rank(l3, "l3")
    if not abs(a - b) <= c <= a + b:
        raise ValueError(
            f"triple ({a}, {b}, {c}) is off the triangle: need |l1-l2| <= l3 <= l1+l2, "
            f"i.e. {abs(a - b)} <= l3 <= {a + b}"
        )
    return a, b, c


def check_choice(value: object, choices: tuple[str, ...], what: str) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise a clear ``ValueError``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


def parity_of(l1: int, l2: int, l3: int) -> str:
    """``'even'`` when ``l1+l2-l3`` is even (pure contraction), ``'odd'`` when a Levi-Civita is needed."""
    return "even" if (l1 + l2 - l3) % 2 == 0 else "odd"


def triples(lmax: int, parity: str | None = None) -> list[tuple[int, int, int]]:
    """All triangle triples with every rank <= ``lmax``, in lexicographic order.

    ``parity`` may be ``'even'`` or ``'odd'`` to keep only those products.
    """
    lmax = check_rank(lmax, "lmax")
    out = []
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                if parity is None or parity_of(l1, l2, l3) == parity:
                    out.append((l1, l2, l3))
    return out
