"""Exact relation of the Cartesian couplings to spherical coupling (Wigner 3j symbols).

The complex 3j symbols come from :func:`sympy.physics.wigner.wigner_3j` (Condon-Shortley states
``|l m>``). Our compact basis is, up to one positive factor per l, the real basis

    |l, +m> = ((-1)^m |l m> + |l -m>) / sqrt(2),    |l, -m> = ((-1)^m |l m> - |l -m>) / (i sqrt(2)),
    |l, 0>  = |l 0>                                                        (m > 0)

(real spherical harmonics without the Condon-Shortley phase), rotated so that y is the polar axis.
A cyclic permutation of the axes is a proper rotation and leaves invariant tensors unchanged, so
the real-basis 3j symbol

    W[mu1, mu2, mu3] = i^{-(l1+l2+l3 mod 2)} sum_m conj(U1[mu1, m1] U2[mu2, m2] U3[mu3, m3]) (l1 l2 l3; m1 m2 m3)

is a real invariant tensor and every coupling satisfies ``C = c W`` with ``c`` exact (``c^2``
rational). Everything is computed with *signed squares* ``sign(v) v^2``, which are rational for
all the numbers involved, so the comparison is exact without simplifying radicals.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy
from sympy import QQ
from sympy.physics.wigner import wigner_3j

from .._validate import check_triple


def _complex_components(mu: int) -> list[tuple[int, complex]]:
    """``conj(U[mu, m])`` up to the common factor ``(1/sqrt 2)^[mu != 0]``: pairs ``(m, phase)``.

    Phases are Gaussian integers written as Python complex numbers with integer parts.
    """
    if mu == 0:
        return [(0, 1)]
    m = abs(mu)
    sign = (-1) ** m
    if mu > 0:
        return [(m, sign), (-m, 1)]
    # conj(1/i) = i
    return [(m, 1j * sign), (-m, -1j)]


@cache
def real_wigner_3j_signed_squares(l1: int, l2: int, l3: int) -> np.ndarray:
    """Exact ``sign(W) W^2`` of the real-basis 3j symbol, shape ``(2l1+1, 2l2+1, 2l3+1)``."""
    l1, l2, l3 = check_triple(l1, l2, l3)
    odd = (l1 + l2 + l3) % 2
    out = np.empty((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1), dtype=object)
    cache: dict[tuple[int, int, int], QQ] = {}

    def w3j_ss(m1: int, m2: int, m3: int) -> QQ:
        key = (m1, m2, m3)
        if key not in cache:
            v = wigner_3j(l1, l2, l3, m1, m2, m3)
            sq = sympy.Rational(v**2)
            cache[key] = QQ(int(sq.p), int(sq.q)) * (1 if v >= 0 else -1)
        return cache[key]

    for a, mu1 in enumerate(range(-l1, l1 + 1)):
        for b, mu2 in enumerate(range(-l2, l2 + 1)):
            for c, mu3 in enumerate(range(-l3, l3 + 1)):
                # All admissible complex terms share |3j| (they are related by m -> -m), so
                # W = (1/sqrt2)^n |w| * G with G a Gaussian integer sum of phases and signs.
                magnitude_sq = None
                gauss = 0
                for m1, u1 in _complex_components(mu1):
                    for m2, u2 in _complex_components(mu2):
                        for m3, u3 in _complex_components(mu3):
                            if m1 + m2 + m3 != 0:
                                continue
                            ss = w3j_ss(m1, m2, m3)
                            if not ss:
                                continue
                            if magnitude_sq is None:
                                magnitude_sq = abs(ss)
                            elif abs(ss) != magnitude_sq:
                                raise ArithmeticError("admissible 3j terms differ in magnitude")
                            gauss += u1 * u2 * u3 * (1 if ss > 0 else -1)
                if magnitude_sq is None or gauss == 0:
                    out[a, b, c] = QQ(0)
                    continue
                value = gauss * (-1j) ** odd  # multiply by i^{-odd}
                if abs(value.imag) > 0:
                    raise ArithmeticError("real-basis 3j symbol came out complex")
                g = int(round(value.real))
                n_nonzero = sum(1 for mu in (mu1, mu2, mu3) if mu != 0)
                sq = magnitude_sq * g * g / QQ(2**n_nonzero)
                out[a, b, c] = sq if g > 0 else -sq
    out.flags.writeable = False
    return out


def real_wigner_3j(l1: int, l2: int, l3: int) -> sympy.Array:
    """The real-basis Wigner 3j symbol in our compact basis, exact (SymPy)."""
    ss = real_wigner_3j_signed_squares(l1, l2, l3)
    flat = [sympy.Integer(0) if not v else (1 if v > 0 else -1) * sympy.sqrt(abs(QQ.to_sympy(v))) for v in ss.ravel()]
    return sympy.Array(flat, ss.shape)


def proportionality(c_ss: np.ndarray, w_ss: np.ndarray) -> QQ | None:
    """Signed square of ``c`` with ``C = c W`` from signed squares, or ``None`` if not proportional.

    ``sign(cW)(cW)^2 = ss(c) ss(W)`` entrywise, so proportionality is a rational identity.
    """
    ratio = None
    for cv, wv in zip(c_ss.ravel(), w_ss.ravel()):
        if not wv:
            if cv:
                return None
            continue
        r = cv / wv
        if ratio is None:
            ratio = r
        elif r != ratio:
            return None
    return ratio


def wigner_ratio(l1: int, l2: int, l3: int, normalization: str = "unit") -> sympy.Expr:
    """Exact ``c`` with ``C_compact = c W`` for the coupling of the given normalisation."""
    from .coupling import derive_coupling

    cpl = derive_coupling(l1, l2, l3, normalization)
    ss = proportionality(cpl.signed_squares(), real_wigner_3j_signed_squares(l1, l2, l3))
    if ss is None:
        raise ArithmeticError(f"coupling ({l1}, {l2}, {l3}) is not proportional to the Wigner 3j symbol")
    root = sympy.sqrt(abs(QQ.to_sympy(ss)))
    return root if ss > 0 else -root
