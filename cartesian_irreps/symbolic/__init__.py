"""Exact derivation (SymPy, rationals and square roots only): one module per piece of math.

* :mod:`.polynomials` - symmetric tensors as homogeneous polynomials (the exact workhorse)
* :mod:`.projector`   - the traceless projector P_l, built two independent ways
* :mod:`.basis`       - the compact orthonormal (2l+1) layout (real spherical-harmonic convention)
* :mod:`.harmonics`   - Cartesian harmonics T_l(n) and their gradients
* :mod:`.coupling`    - every product l1 x l2 -> l3, even and odd, with exact normalisations
* :mod:`.spherical`   - the exact relation to Wigner 3j symbols
* :mod:`.formula`     - readable formulas (plain text and LaTeX)
"""

from .basis import compact_basis, harmonic_basis, real_solid_harmonic
from .coupling import Coupling, coupling, derive_coupling
from .harmonics import cartesian_harmonic, cartesian_harmonic_gradient, harmonic_normalization
from .projector import harmonic_projection, projector
from .spherical import real_wigner_3j, wigner_ratio

__all__ = [
    "Coupling",
    "cartesian_harmonic",
    "cartesian_harmonic_gradient",
    "compact_basis",
    "coupling",
    "derive_coupling",
    "harmonic_basis",
    "harmonic_normalization",
    "harmonic_projection",
    "projector",
    "real_solid_harmonic",
    "real_wigner_3j",
    "wigner_ratio",
]
