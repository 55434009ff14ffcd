"""Readable formulas (plain text and LaTeX) for a derived product l1 (x) l2 -> l3.

The product is written in index notation as the paper defines it:

    A = x .^k y            (k contracted pairs; odd products add eps_{c u v} x_{..u} y_{v..})
    S = A symmetrised over all its l3 indices
    z = C' P_l3(A),   P_l3(A) = sum_m (-1)^m (2l-2m-1)!!/(2l-1)!! {delta^m S_(traced m times)}

where ``{...}`` is the sum over the ``l!/((l-2m)! m! 2^m)`` distinct placements of the free indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import sympy

from .._validate import check_triple, parity_of
from .coupling import derive_coupling
from .projector import detracer_coefficient
from .spherical import wigner_ratio

FREE = "ijklpqrstw"
DUMMY = "abcdefgh" + "ABCDEFGH"
MAX_SHOW_RANK = len(FREE)


@dataclass(frozen=True)
class Formula:
    """The pieces of a product formula in both notations."""

    plain: str
    latex: str


def placements(l: int, m: int) -> int:
    """Number of distinct placements of m Kronecker deltas among l symmetric indices."""
    return factorial(l) // (factorial(l - 2 * m) * factorial(m) * 2**m)


def _contraction(l1: int, l2: int, l3: int, latex: bool) -> str:
    k = (l1 + l2 - l3) // 2
    odd = parity_of(l1, l2, l3) == "odd"
    dummies = DUMMY[:k]
    xfree = FREE[: l1 - k - odd]
    yfree = FREE[l1 - k - odd : l1 - k - odd + l2 - k - odd]
    out_idx = xfree + (FREE[len(xfree) + len(yfree)] if odd else "") + yfree
    x_idx = xfree + dummies + ("u" if odd else "")
    y_idx = dummies + ("v" if odd else "") + yfree
    if latex:
        eps = rf"\varepsilon_{{{out_idx[len(xfree)]}uv}}\," if odd else ""
        return rf"A_{{{out_idx}}} = {eps}x_{{{x_idx}}}\,y_{{{y_idx}}}"
    eps = f"ε_{out_idx[len(xfree)]}uv " if odd else ""
    return f"A_{{{out_idx}}} = {eps}x_{{{x_idx}}} y_{{{y_idx}}}"


def _detracer_terms(l: int, latex: bool) -> list[str]:
    terms = []
    for m in range(l // 2 + 1):
        coeff = detracer_coefficient(l, m)
        free = FREE[: l - 2 * m]
        traced = "".join(c * 2 for c in DUMMY[:m])
        deltas = "".join(
            (
                rf"\delta_{{{FREE[l - 2 * m + 2 * j]}{FREE[l - 2 * m + 2 * j + 1]}}}"
                if latex
                else f"δ_{FREE[l - 2 * m + 2 * j]}{FREE[l - 2 * m + 2 * j + 1]}"
            )
            for j in range(m)
        )
        s = f"S_{{{free}{traced}}}" if (free or traced) else "S"
        body = s if m == 0 else (rf"\{{{deltas}\,{s}\}}" if latex else f"{{{deltas} {s}}}")
        if latex:
            mag = sympy.latex(abs(coeff)) if abs(coeff) != 1 else ""
            mag = mag.replace(r"\frac", r"\tfrac")
        else:
            mag = f"{abs(coeff)} " if abs(coeff) != 1 else ""
        sign = "-" if coeff < 0 else "+"
        terms.append(f"{sign} {mag}{body}" if m else body)
    return terms


def product_formula(l1: int, l2: int, l3: int) -> Formula:
    """Plain-text and LaTeX formula of the product with every exact normalisation constant."""
    l1, l2, l3 = check_triple(l1, l2, l3)
    if max(l1, l2, l3) > MAX_SHOW_RANK:
        raise ValueError(f"formulas are written for ranks up to {MAX_SHOW_RANK}, got ({l1}, {l2}, {l3})")
    parity = parity_of(l1, l2, l3)
    k = (l1 + l2 - l3) // 2
    out = FREE[:l3]
    published = derive_coupling(l1, l2, l3, "published")
    unit = derive_coupling(l1, l2, l3, "unit")
    n_nonzero = sum(1 for v in unit.table.ravel() if v)
    size = unit.table.size

    plain = [
        f"Product {l1} ⊗ {l2} -> {l3}: {parity} ({'tensor' if parity == 'even' else 'pseudotensor'}), "
        f"k = {k} contracted pair(s){' + one Levi-Civita pair' if parity == 'odd' else ''}",
        "",
        "  " + _contraction(l1, l2, l3, latex=False),
        f"  S = A symmetrised over its {l3} indices",
        f"  z_{{{out}}} = C' P_{l3}(A)_{{{out}}} = C' [ " + " ".join(_detracer_terms(l3, latex=False)) + " ]",
        "  {…} sums over the distinct placements of the free indices: "
        + ", ".join(f"{placements(l3, m)} for m = {m}" for m in range(1, l3 // 2 + 1))
        if l3 >= 2
        else "  (no traces to remove)",
        "",
        "Normalisations (exact):",
        "  raw        C' = 1",
        f"  published  C' = {published.scale}"
        + (
            "    (T_l1(n) ⊗ T_l2(n) -> T_l3(n))" if parity == "even" else "    (odd: vanishes on equal vectors; C' = 1)"
        ),
        f"  unit       C' = {unit.scale}    (sum of squared compact coefficients = 1)",
        "",
        f"Compact layout: z_m3 = sum C[m1, m2, m3] x_m1 y_m2, {n_nonzero} of {size} coefficients non-zero;",
        f"  C = c W (real-basis Wigner 3j from sympy.physics.wigner): c = {wigner_ratio(l1, l2, l3, 'unit')} (unit), "
        f"c = {wigner_ratio(l1, l2, l3, 'published')} (published)",
    ]
    latex_terms = " ".join(_detracer_terms(l3, latex=True))
    latex = [
        _contraction(l1, l2, l3, latex=True),
        rf"z_{{{out}}} = C'\,\Big[{latex_terms}\Big],\qquad C'_\mathrm{{published}} = {sympy.latex(published.scale)},"
        rf"\quad C'_\mathrm{{unit}} = {sympy.latex(unit.scale)}",
    ]
    return Formula("\n".join(plain), "\n".join(latex))


def compact_entries(l1: int, l2: int, l3: int, normalization: str = "unit") -> list[tuple[int, int, int, sympy.Expr]]:
    """Non-zero exact compact coefficients ``(m1, m2, m3, C)`` with m running from -l to l."""
    cpl = derive_coupling(l1, l2, l3, normalization)
    arr = cpl.compact()
    out = []
    for a in range(2 * l1 + 1):
        for b in range(2 * l2 + 1):
            for c in range(2 * l3 + 1):
                if arr[a, b, c] != 0:
                    out.append((a - l1, b - l2, c - l3, arr[a, b, c]))
    return out
