"""Exact coupling tensors of the products l1 (x) l2 -> l3 of irreducible Cartesian tensors.

For ``|l1-l2| <= l3 <= l1+l2`` put ``s = l1 + l2 - l3``.

* **Even** (s = 2k): contract k index pairs of x and y, then project,
  ``z = C' P_l3(x_{i.. a1..ak} y_{a1..ak j..})``.
* **Odd** (s = 2k+1): contract k pairs and one more index of each through the Levi-Civita
  symbol, ``A_{i.. c j..} = eps_{cab} x_{i.. A a} y_{A b j..}``, then ``z = C' P_l3(A)``. For
  ``(1, 1, 1)`` this is the cross product; the result is a pseudotensor (odd under inversion).

In the polynomial picture (:mod:`.polynomials`), with ``p, q`` the polynomials of x and y,

    even: B(p, q) = (l1-k)!(l2-k)!/(l1! l2!)     sum_{|alpha|=k} k!/alpha!  d^alpha p  d^alpha q
    odd:  B(p, q) = (l1-k-1)!(l2-k-1)!/(l1! l2!) sum_{|alpha|=k} k!/alpha!  n . (grad d^alpha p x grad d^alpha q)

is the polynomial of the (symmetrised) contraction, and the product is its harmonic part.

**Normalisations** (all exact):

* ``'raw'``: ``C' = 1``, the plain contract-then-project definition above.
* ``'published'``: for even products the ICTP code's ``C'``, the unique constant with
  ``T_l1(n) (x) T_l2(n) -> T_l3(n)`` for the published harmonics (a rational number). Odd products
  vanish on equal vectors, so no such constant exists; for them ``'published'`` means ``C' = 1``
  (the raw definition: exactly the cross product for (1, 1, 1)).
* ``'unit'``: the coupling tensor has unit Frobenius norm, ``sum C_{m1 m2 m3}^2 = 1`` in the
  compact layout (which equals the Frobenius norm of the full-layout tensor restricted to ICT
  inputs). ``C'`` is then the square root of a rational.

**Representation.** A :class:`Coupling` stores ``scale`` (C', exact) and the rational table
``R[m1, m2, m3]`` of the raw product in the rational harmonic basis of :mod:`.basis`
(``B(h_m1, h_m2)`` has harmonic part ``sum_m3 R h_m3``). In the orthonormal compact layout

    C[m1, m2, m3] = C' R[m1, m2, m3] sqrt(N_m3 / (N_m1 N_m2)),

each entry the signed square root of a rational, and in the full layout (inputs projected)

    F[I, J, K] = C' sum R[m1, m2, m3] h_m1[I] h_m2[J] h_m3[K] / (N_m1 N_m2),

which is rational whenever C' is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from math import factorial

import gmpy2
import numpy as np
import sympy
from sympy import QQ
from sympy.polys.rings import PolyElement

from .._validate import LAYOUTS, NORMALIZATIONS, check_choice, check_triple, parity_of
from .basis import harmonic_basis, to_sympy
from .polynomials import RING, VARS, derivative, frobenius, monomials, multinomial
from .projector import double_factorial, harmonic_projection

FULL_LAYOUT_MAX_TOTAL = 12


def _prefactor(l1: int, l2: int, l3: int) -> QQ:
    s = l1 + l2 - l3
    k = s // 2
    m = k + s % 2  # indices of each input consumed
    return QQ(factorial(l1 - m) * factorial(l2 - m), factorial(l1) * factorial(l2))


def _cross_dot(gp: list[PolyElement], gq: list[PolyElement]) -> PolyElement:
    """``n . (gp x gq)`` for two polynomial 3-vectors."""
    return sum(
        (VARS[c] * (gp[(c + 1) % 3] * gq[(c + 2) % 3] - gp[(c + 2) % 3] * gq[(c + 1) % 3]) for c in range(3)),
        RING.zero,
    )


def _derivative_list(p: PolyElement, k: int, odd: bool) -> list:
    """``[d^alpha p for |alpha| = k]`` (and their gradients when ``odd``)."""
    ds = [derivative(p, a) for a in monomials(k)]
    return [[d.diff(v) for v in VARS] for d in ds] if odd else ds


def _contract(dp: list, dq: list, k: int, odd: bool) -> PolyElement:
    """``sum_{|alpha|=k} k!/alpha! (d^alpha p d^alpha q  or  n . (grad d^alpha p x grad d^alpha q))``."""
    out = RING.zero
    for w, u, v in zip((multinomial(a) for a in monomials(k)), dp, dq):
        out += w * (_cross_dot(u, v) if odd else u * v)
    return out


def raw_product_polynomial(p: PolyElement, q: PolyElement, l1: int, l2: int, l3: int) -> PolyElement:
    """``B(p, q)``: polynomial of the symmetrised contraction (before projection), C' = 1."""
    l1, l2, l3 = check_triple(l1, l2, l3)
    k, odd = (l1 + l2 - l3) // 2, (l1 + l2 - l3) % 2 == 1
    return _contract(_derivative_list(p, k, odd), _derivative_list(q, k, odd), k, odd) * _prefactor(l1, l2, l3)


def product_polynomial(p: PolyElement, q: PolyElement, l1: int, l2: int, l3: int) -> PolyElement:
    """The raw product ``P_l3 B(p, q)`` of two ICTs given as polynomials (closed-form projection)."""
    return harmonic_projection(raw_product_polynomial(p, q, l1, l2, l3), l3)


@dataclass(frozen=True)
class Coupling:
    """One product ``l1 (x) l2 -> l3`` with its exact normalisation constant and rational table."""

    l1: int
    l2: int
    l3: int
    normalization: str
    scale: sympy.Expr
    table: np.ndarray  # object array (2l1+1, 2l2+1, 2l3+1) of exact rationals (R above)

    @property
    def parity(self) -> str:
        """``'even'`` (pure contraction, a tensor) or ``'odd'`` (Levi-Civita, a pseudotensor)."""
        return parity_of(self.l1, self.l2, self.l3)

    @property
    def contracted_pairs(self) -> int:
        """k: the number of index pairs contracted (besides the Levi-Civita pair when odd)."""
        return (self.l1 + self.l2 - self.l3) // 2

    @property
    def shape(self) -> tuple[int, int, int]:
        return (2 * self.l1 + 1, 2 * self.l2 + 1, 2 * self.l3 + 1)

    def scale_squared(self) -> QQ:
        """``C'^2`` as an exact rational (C' is rational or the square root of one)."""
        sq = sympy.Rational(self.scale**2)
        return QQ(int(sq.p), int(sq.q))

    def signed_squares(self) -> np.ndarray:
        """Exact ``sign(C) C^2`` of every compact entry: rationals that determine C exactly."""
        n1, n2, n3 = (harmonic_basis(l).norms for l in (self.l1, self.l2, self.l3))
        k2 = self.scale_squared()
        sign = 1 if self.scale > 0 else -1
        out = np.empty(self.shape, dtype=object)
        for (a, b, c), r in np.ndenumerate(self.table):
            sq = k2 * r * r * n3[c] / (n1[a] * n2[b])
            out[a, b, c] = sq if sign * r >= 0 else -sq
        return out

    def compact(self) -> sympy.Array:
        """Exact compact-layout tensor ``C[m1, m2, m3]`` (SymPy, entries +-sqrt(rational))."""
        flat = [_signed_sqrt_sympy(v) for v in self.signed_squares().ravel()]
        return sympy.Array(flat, self.shape)

    def floats(self) -> np.ndarray:
        """Compact table in float64, each entry correctly rounded from its exact value."""
        return np.array(
            [signed_sqrt_float(v) for v in self.signed_squares().ravel()],
            dtype=np.float64,
        ).reshape(self.shape)

    def full_rational(self) -> np.ndarray:
        """``F / C'``: the full-layout tensor divided by the scale, exact rationals.

        Shape ``(3,)*l1 + (3,)*l2 + (3,)*l3``; offered while ``l1+l2+l3 <= 12``.
        """
        total = self.l1 + self.l2 + self.l3
        if total > FULL_LAYOUT_MAX_TOTAL:
            raise ValueError(
                f"full layout of ({self.l1}, {self.l2}, {self.l3}) has 3^{total} entries; it is offered for "
                f"l1+l2+l3 <= {FULL_LAYOUT_MAX_TOTAL}, use layout='compact'"
            )
        b1, b2, b3 = (harmonic_basis(l) for l in (self.l1, self.l2, self.l3))
        t1 = np.array([t.ravel() / n for t, n in zip(b1.full_tensors, b1.norms)], dtype=object)
        t2 = np.array([t.ravel() / n for t, n in zip(b2.full_tensors, b2.norms)], dtype=object)
        t3 = np.array([t.ravel() for t in b3.full_tensors], dtype=object)
        n1, n2, n3 = self.shape
        # sum_{m3} R[m1, m2, m3] h3[K] -> (m1, m2, K); then contract m2 and m1.
        step = self.table.reshape(n1 * n2, n3).dot(t3).reshape(n1, n2, -1)
        step = np.tensordot(t2, step, axes=([0], [1]))  # (J, m1, K)
        full = np.tensordot(t1, step, axes=([0], [1]))  # (I, J, K)
        return full.reshape((3,) * total)

    def full(self) -> sympy.Array:
        """Exact full-layout tensor ``F[i1..il1, j1..jl2, k1..kl3]`` (SymPy)."""
        f = self.full_rational()
        return sympy.Array([to_sympy(v) * self.scale for v in f.ravel()], f.shape)

    def with_table(self, table: np.ndarray) -> Coupling:
        """A copy with another table (used by mutation tests of the verifier)."""
        return replace(self, table=table)


def signed_sqrt_float(v) -> float:
    """``sign(v) sqrt(|v|)`` of an exact rational, rounded to float64 from 200-bit precision."""
    if not v:
        return 0.0
    with gmpy2.context(precision=200):
        root = float(gmpy2.sqrt(abs(gmpy2.mpq(v))))
    return root if v > 0 else -root


def _signed_sqrt_sympy(v) -> sympy.Expr:
    if not v:
        return sympy.Integer(0)
    r = to_sympy(v)
    return sympy.sqrt(r) if r > 0 else -sympy.sqrt(-r)


@cache
def raw_table(l1: int, l2: int, l3: int) -> np.ndarray:
    """Rational ``R[m1, m2, m3]`` of the raw product (C' = 1) in the rational harmonic basis."""
    l1, l2, l3 = check_triple(l1, l2, l3)
    b1, b2, b3 = harmonic_basis(l1), harmonic_basis(l2), harmonic_basis(l3)
    k, odd = (l1 + l2 - l3) // 2, (l1 + l2 - l3) % 2 == 1
    pre = _prefactor(l1, l2, l3)
    d1 = [_derivative_list(h, k, odd) for h in b1.polys]
    d2 = [_derivative_list(h, k, odd) for h in b2.polys]
    table = np.empty((b1.dim, b2.dim, b3.dim), dtype=object)
    for a in range(b1.dim):
        for b in range(b2.dim):
            poly = _contract(d1[a], d2[b], k, odd) * pre
            for c, (h, n) in enumerate(zip(b3.polys, b3.norms)):
                table[a, b, c] = frobenius(h, poly) / n
    table.flags.writeable = False
    return table


def harmonic_coordinates(l: int, n: tuple, normalization: str = "published") -> list:
    """h-basis coordinates of ``T_l(n)`` for a rational vector n: ``N_l h_m(n) / N_m`` (times |n|^0).

    Only the published normalisation is rational; used to fix the published ``C'``.
    """
    if normalization != "published":
        raise ValueError("rational harmonic coordinates exist for the published normalisation only")
    basis = harmonic_basis(l)
    nl = QQ(double_factorial(2 * l - 1), factorial(l))
    return [nl * h(*[QQ(c) for c in n]) / norm for h, norm in zip(basis.polys, basis.norms)]


def apply_table(table: np.ndarray, x: list, y: list) -> list:
    """``z[m3] = sum R[m1, m2, m3] x[m1] y[m2]`` in exact arithmetic (h-basis coordinates)."""
    n1, n2, n3 = table.shape
    out = [QQ(0)] * n3
    for a in range(n1):
        if not x[a]:
            continue
        for b in range(n2):
            if not y[b]:
                continue
            w = x[a] * y[b]
            for c in range(n3):
                r = table[a, b, c]
                if r:
                    out[c] += r * w
    return out


@cache
def published_scale(l1: int, l2: int, l3: int) -> sympy.Rational:
    """The ICTP constant C' with ``T_l1(n) (x) T_l2(n) -> T_l3(n)`` (even); 1 for odd products."""
    l1, l2, l3 = check_triple(l1, l2, l3)
    if parity_of(l1, l2, l3) == "odd":
        return sympy.Integer(1)
    n = (0, 1, 0)  # the polar axis: only m = 0 components are non-zero
    z = apply_table(raw_table(l1, l2, l3), harmonic_coordinates(l1, n), harmonic_coordinates(l2, n))
    t = harmonic_coordinates(l3, n)
    ratios = {t[c] / z[c] for c in range(len(t)) if z[c] or t[c]}
    if len(ratios) != 1 or 0 in ratios:
        raise ArithmeticError(f"product ({l1}, {l2}, {l3}) of equal harmonics is not a multiple of T_{l3}")
    return to_sympy(ratios.pop())


def _unit_scale(table: np.ndarray, l1: int, l2: int, l3: int) -> sympy.Expr:
    n1, n2, n3 = (harmonic_basis(l).norms for l in (l1, l2, l3))
    total = QQ(0)
    for (a, b, c), r in np.ndenumerate(table):
        if r:
            total += r * r * n3[c] / (n1[a] * n2[b])
    return 1 / sympy.sqrt(to_sympy(total))


@cache
def derive_coupling(l1: int, l2: int, l3: int, normalization: str = "unit") -> Coupling:
    """Derive (and cache) the exact coupling of ``l1 (x) l2 -> l3`` with the given normalisation."""
    l1, l2, l3 = check_triple(l1, l2, l3)
    normalization = check_choice(normalization, NORMALIZATIONS, "normalisation")
    table = raw_table(l1, l2, l3)
    if normalization == "raw":
        scale = sympy.Integer(1)
    elif normalization == "published":
        scale = published_scale(l1, l2, l3)
    else:
        scale = _unit_scale(table, l1, l2, l3)
    return Coupling(l1, l2, l3, normalization, scale, table)


def coupling(l1: int, l2: int, l3: int, normalization: str = "unit", layout: str = "compact") -> sympy.Array:
    """Exact coupling tensor of ``l1 (x) l2 -> l3`` as a SymPy array.

    ``layout='compact'``: shape ``(2l1+1, 2l2+1, 2l3+1)``, ``z_m3 = sum C[m1, m2, m3] x_m1 y_m2``.
    ``layout='full'``: shape ``(3,)*(l1+l2+l3)``, ``z_K = sum F[I, J, K] x_I y_J`` (l1+l2+l3 <= 12).
    """
    layout = check_choice(layout, LAYOUTS, "layout")
    c = derive_coupling(l1, l2, l3, normalization)
    return c.compact() if layout == "compact" else c.full()
