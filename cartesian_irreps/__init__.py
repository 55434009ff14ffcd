"""cartesian-irreps: exact irreducible Cartesian tensors, their products, and fast kernels.

The flow is derive -> verify -> generate -> run:

* :mod:`cartesian_irreps.symbolic` derives projectors, the compact basis, Cartesian harmonics and
  every product coupling in exact arithmetic (SymPy);
* :mod:`cartesian_irreps.verify` proves their properties by exact computation
  (``cartesian-irreps verify --lmax N``).

Public names are imported lazily, so that importing a numeric sub-package never pulls in SymPy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Coupling": "cartesian_irreps.symbolic.coupling",
    "coupling": "cartesian_irreps.symbolic.coupling",
    "derive_coupling": "cartesian_irreps.symbolic.coupling",
    "projector": "cartesian_irreps.symbolic.projector",
    "harmonic_projection": "cartesian_irreps.symbolic.projector",
    "compact_basis": "cartesian_irreps.symbolic.basis",
    "real_solid_harmonic": "cartesian_irreps.symbolic.basis",
    "cartesian_harmonic": "cartesian_irreps.symbolic.harmonics",
    "cartesian_harmonic_gradient": "cartesian_irreps.symbolic.harmonics",
    "harmonic_normalization": "cartesian_irreps.symbolic.harmonics",
    "real_wigner_3j": "cartesian_irreps.symbolic.spherical",
    "wigner_ratio": "cartesian_irreps.symbolic.spherical",
    "product_formula": "cartesian_irreps.symbolic.formula",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cartesian_irreps' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
