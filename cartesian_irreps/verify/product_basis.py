"""Exact checks of the generated product-basis tables (see :mod:`cartesian_irreps.symbolic.product_basis`):
the fold equals the coupling chain, equivariance under exact rotations, parity under inversion and
mirrors, symmetry in the factors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from .common import CheckResult

__all__ = ["product_basis_groups"]


def product_basis_groups(lmax: int) -> Iterator[tuple[int, str, Callable[[], list[CheckResult]]]]:
    """``(rank, label, thunk)`` for the generated product-basis tables with ranks <= ``lmax``."""
    from ..generator.product_basis import PRODUCT_BASIS_CONFIGS, derived_tables
    from ..symbolic.product_basis import check_product_basis

    for key, pb in derived_tables(tuple(c for c in PRODUCT_BASIS_CONFIGS if c[0] <= lmax)).items():
        obj = f"Pi(L={key[2]},nu={key[3]},{key[4]}) {len(pb.a_keys)}->{len(pb.basis)} keys"

        def thunk(pb=pb, obj=obj) -> list[CheckResult]:
            start = time.perf_counter()
            checks = check_product_basis(pb)
            secs = (time.perf_counter() - start) / len(checks)
            return [CheckResult(obj, name, ok, secs, detail) for name, ok, detail in checks]

        yield key[2], f"product basis {key[2:]}", thunk
