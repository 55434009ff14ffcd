"""Proofs by computation: exact checks of projectors, bases, harmonics and couplings.

Every check here runs in exact rational arithmetic (no floats). Square roots never need to be
simplified: the orthonormal compact layout only rescales the rational harmonic basis h_{l,m} by
``1/sqrt(N_{l,m})``, so identities are checked on rational tables, and irrational numbers are
compared through their *signed squares* ``sign(v) v^2``.

Each ``check_*`` function returns a list of :class:`CheckResult`; :func:`run` collects them for
all ranks and triples up to ``lmax``. The test suite reuses the same functions.

Modules: :mod:`.common` (the result row, exact rotations and reflections), :mod:`.projectors`
(projectors and the compact basis), :mod:`.harmonics` (Cartesian harmonics), :mod:`.couplings`
(couplings, selection rule, mutants). Every public name is importable from ``cartesian_irreps.verify``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict

from .._validate import check_rank, check_triple, triples
from ..symbolic.coupling import derive_coupling
from .common import (
    FULL_PROJECTOR_CHECK_L,
    IMPROPER,
    ROTATIONS,
    SELECTION_RULE_L,
    CheckResult,
    cayley,
    determinant,
)
from .couplings import _check_group as _check_group
from .couplings import check_coupling, check_selection_rule, mutated
from .harmonics import check_harmonic
from .product_basis import product_basis_groups
from .projectors import check_basis, check_projector

__all__ = [
    "FULL_PROJECTOR_CHECK_L",
    "IMPROPER",
    "ROTATIONS",
    "SELECTION_RULE_L",
    "CheckResult",
    "as_dicts",
    "cayley",
    "check_basis",
    "check_coupling",
    "check_harmonic",
    "check_projector",
    "check_selection_rule",
    "determinant",
    "mutated",
    "plan",
    "run",
]


def _entries(
    lmax: int, layout: str = "both", mutate: tuple[int, int, int] | None = None
) -> Iterator[tuple[int, str, Callable[[], list[CheckResult]]]]:
    """``(rank, label, thunk)`` of every check group in plan order; rank is the largest l involved."""
    lmax = check_rank(lmax, "lmax")
    full = layout in ("both", "full")
    for l in range(lmax + 1):
        yield l, f"P_{l}", lambda l=l: check_projector(l)
        yield l, f"basis_{l}", lambda l=l: check_basis(l)
        yield l, f"T_{l}", lambda l=l: check_harmonic(l)
    sel = min(lmax, SELECTION_RULE_L)
    for l1, l2, l3 in itertools.product(range(sel + 1), repeat=3):
        yield (
            max(l1, l2, l3),
            f"selection ({l1},{l2},{l3})",
            lambda t=(l1, l2, l3): [check_selection_rule(*t)],
        )
    for t in triples(lmax):
        for norm in ("unit", "published"):

            def thunk(t=t, norm=norm) -> list[CheckResult]:
                cpl = derive_coupling(*t, norm)
                return check_coupling(mutated(cpl) if t == mutate else cpl, full and norm == "unit")

            yield max(t), f"C{t} {norm}", thunk
    yield from product_basis_groups(lmax)


def plan(
    lmax: int, layout: str = "both", mutate: tuple[int, int, int] | None = None
) -> Iterator[tuple[str, Callable[[], list[CheckResult]]]]:
    """Yield ``(label, thunk)`` for every check group up to ``lmax``.

    ``mutate=(l1, l2, l3)`` corrupts one coefficient of that product (see :func:`mutated`).
    """
    for _, label, thunk in _entries(lmax, layout, mutate):
        yield label, thunk


def run(
    lmax: int,
    layout: str = "both",
    progress: Callable[[int, int, str], None] | None = None,
    mutate: tuple[int, int, int] | None = None,
    on_rank: Callable[[int, int, int, float], None] | None = None,
) -> list[CheckResult]:
    """Run every check up to ``lmax`` and return the results in plan order.

    The groups run rank by rank (rank = largest l of the group), so the cheap low ranks finish first:
    ``progress(done, total, label)`` is called after each group and ``on_rank(l, checks, failed, seconds)``
    once all groups of rank l are done (``seconds``: time spent on that rank).
    """
    lmax = check_rank(lmax, "lmax")
    if mutate is not None:
        mutate = check_triple(*mutate)
        if max(mutate) > lmax:
            raise ValueError(f"--mutate {mutate} is beyond --lmax {lmax}")
    entries = list(_entries(lmax, layout, mutate))
    order = sorted(range(len(entries)), key=lambda i: entries[i][0])  # stable: plan order within a rank
    by_index: list[list[CheckResult]] = [[] for _ in entries]
    done, start, checks, failed = 0, time.perf_counter(), 0, 0
    for pos, i in enumerate(order):
        rank, label, thunk = entries[i]
        by_index[i] = thunk()
        checks += len(by_index[i])
        failed += sum(not r.ok for r in by_index[i])
        done += 1
        if progress:
            progress(done, len(entries), label)
        last_of_rank = pos + 1 == len(order) or entries[order[pos + 1]][0] != rank
        if last_of_rank:
            if on_rank:
                on_rank(rank, checks, failed, time.perf_counter() - start)
            start, checks, failed = time.perf_counter(), 0, 0
    return [r for results in by_index for r in results]


def as_dicts(results: list[CheckResult]) -> list[dict]:
    return [asdict(r) for r in results]
