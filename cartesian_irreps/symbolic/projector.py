"""The orthogonal projector P_l onto symmetric traceless rank-l tensors, built two ways.

**Closed form (the detracer).** For a rank-l tensor A with symmetric part S,

    P_l(A) = sum_{m=0}^{floor(l/2)} (-1)^m (2l-2m-1)!!/(2l-1)!!  { delta^{(x)m} (x) Tr^m S },

where ``{...}`` sums over the ``l! / ((l-2m)! m! 2^m)`` distinct placements of the indices.
In the polynomial picture (see :mod:`.polynomials`) this is the harmonic projection

    h = sum_m (-1)^m (2l-2m-1)!! / ((2l-1)!! 2^m m!)  |n|^{2m} Delta^m p.

**Null space.** Independently, the symmetric traceless tensors are the kernel of the trace
map (the Laplacian) from degree-l to degree-(l-2) polynomials; with a kernel basis K and the
Frobenius metric G (diagonal, ``1/multinomial``) the orthogonal projector is
``K (K^T G K)^{-1} K^T G``.

Both are exact rational matrices in the ``(l+1)(l+2)/2`` symmetric coordinates (monomial
coefficients). The full 3^l x 3^l matrix is ``P_full[I, J] = Q[m(I), m(J)] / multinomial(m(I))``
where ``m(I)`` is the exponent pattern of multi-index I (the symmetrisation is built in).
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import sympy
from sympy import QQ
from sympy.polys.matrices import DomainMatrix
from sympy.polys.rings import PolyElement

from .._validate import check_choice, check_rank
from .polynomials import (
    coordinates,
    exponent_of_index,
    full_indices,
    laplacian,
    monomial_poly,
    monomials,
    multinomial,
    r2,
)

CONSTRUCTIONS = ("closed_form", "nullspace")
PROJECTOR_LAYOUTS = ("symmetric", "full")
FULL_PROJECTOR_MAX_L = 6


def double_factorial(n: int) -> int:
    """``n!! = n (n-2) (n-4) ...``, with ``(-1)!! = 0!! = 1``."""
    out = 1
    while n > 1:
        out *= n
        n -= 2
    return out


def detracer_coefficient(l: int, m: int) -> sympy.Rational:
    """Coefficient ``(-1)^m (2l-2m-1)!!/(2l-1)!!`` of the m-th term of the closed-form detracer."""
    return sympy.Rational((-1) ** m * double_factorial(2 * l - 2 * m - 1), double_factorial(2 * l - 1))


def harmonic_projection(p: PolyElement, l: int) -> PolyElement:
    """Closed-form harmonic part of a degree-l polynomial (the detracer applied to its tensor).

    ``h = sum_m (-1)^m (2l-2m-1)!! / ((2l-1)!! 2^m m!) |n|^{2m} Delta^m p``.
    """
    out = p
    term = p
    rr = r2()
    for m in range(1, l // 2 + 1):
        term = laplacian(term)
        if not term:
            break
        coeff = QQ(
            (-1) ** m * double_factorial(2 * l - 2 * m - 1),
            double_factorial(2 * l - 1) * 2**m,
        )
        fact = 1
        for i in range(2, m + 1):
            fact *= i
        out = out + term * rr**m * (coeff / fact)
    return out


def _as_domain(rows: list[list]) -> DomainMatrix:
    return DomainMatrix(
        [[QQ(v) for v in row] for row in rows],
        (len(rows), len(rows[0]) if rows else 0),
        QQ,
    )


@cache
def _closed_form_symmetric(l: int) -> DomainMatrix:
    mons = monomials(l)
    cols = [coordinates(harmonic_projection(monomial_poly(m), l), l) for m in mons]
    return _as_domain([list(r) for r in zip(*cols)])


def trace_map(l: int) -> DomainMatrix:
    """The Laplacian as an exact matrix from degree-l to degree-(l-2) symmetric coordinates."""
    mons = monomials(l)
    if l < 2:
        return DomainMatrix.zeros((0, len(mons)), QQ)
    cols = [coordinates(laplacian(monomial_poly(m)), l - 2) for m in mons]
    return _as_domain([list(r) for r in zip(*cols)])


def frobenius_metric(l: int) -> DomainMatrix:
    """Diagonal Gram matrix ``G = diag(1/multinomial)`` of the Frobenius product in symmetric coordinates."""
    return DomainMatrix.diag([QQ(1, multinomial(m)) for m in monomials(l)], QQ)


@cache
def _nullspace_symmetric(l: int) -> DomainMatrix:
    n = len(monomials(l))
    trace = trace_map(l)
    if trace.shape[0] == 0:
        kernel = DomainMatrix.eye(n, QQ)
    else:
        kernel = trace.nullspace().transpose()  # columns span the traceless symmetric tensors
    g = frobenius_metric(l)
    gram = kernel.transpose() * g * kernel
    return (kernel * gram.inv() * kernel.transpose() * g).to_dense()


def projector_symmetric(l: int, construction: str = "closed_form") -> DomainMatrix:
    """Exact projector in symmetric coordinates (acts on monomial-coefficient column vectors)."""
    l = check_rank(l)
    construction = check_choice(construction, CONSTRUCTIONS, "projector construction")
    return _closed_form_symmetric(l) if construction == "closed_form" else _nullspace_symmetric(l)


def symmetric_to_full(q: DomainMatrix, l: int) -> DomainMatrix:
    """Lift a symmetric-coordinate projector to the full 3^l x 3^l layout.

    ``P_full[I, J] = Q[m(I), m(J)] / multinomial(m(I))``: the input is first read as a polynomial
    (which symmetrises it), mapped, and the output tensor entries are read back.
    """
    mons = monomials(l)
    pos = {m: i for i, m in enumerate(mons)}
    idx = [pos[exponent_of_index(i)] for i in full_indices(l)]
    dense = q.to_list()
    rows = [[dense[idx[a]][idx[b]] / multinomial(mons[idx[a]]) for b in range(len(idx))] for a in range(len(idx))]
    return _as_domain(rows)


def projector(l: int, construction: str = "closed_form", layout: str = "full") -> sympy.Matrix:
    """The orthogonal projector P_l as an exact SymPy matrix.

    Args:
        l: rank (>= 0).
        construction: ``'closed_form'`` (detracer) or ``'nullspace'`` (kernel of the trace map).
        layout: ``'full'`` (3^l x 3^l, rows/columns in C order of the multi-index; only for
            l <= 6) or ``'symmetric'`` ((l+1)(l+2)/2 monomial coordinates).
    """
    l = check_rank(l)
    layout = check_choice(layout, PROJECTOR_LAYOUTS, "projector layout")
    q = projector_symmetric(l, construction)
    if layout == "symmetric":
        return q.to_Matrix()
    if l > FULL_PROJECTOR_MAX_L:
        raise ValueError(
            f"the full-layout projector for l={l} has 3^{2 * l} entries; use layout='symmetric' "
            f"(full layout is offered for l <= {FULL_PROJECTOR_MAX_L})"
        )
    return symmetric_to_full(q, l).to_Matrix()


def detrace_by_placements(t: np.ndarray) -> np.ndarray:
    """Apply the closed-form detracer to a full-layout tensor by explicit index placements.

    This is the textbook formula evaluated literally (symmetrise, take m-fold traces, place m
    Kronecker deltas in every distinct way); it shares no code with the polynomial route and
    serves as an independent reference for small l. ``t`` is an object array of shape (3,)*l.
    """
    l = t.ndim
    if l == 0:
        return t.copy()
    perms = list(itertools.permutations(range(l)))
    sym = sum((np.transpose(t, p) for p in perms), np.zeros_like(t)) * QQ(1, len(perms))
    out = np.zeros_like(t)
    for m in range(l // 2 + 1):
        coeff = QQ(detracer_coefficient(l, m).p, detracer_coefficient(l, m).q)
        tr = sym
        for _ in range(m):
            tr = np.trace(tr, axis1=0, axis2=1)
        for placement in _delta_placements(l, m):
            paired = {i for pair in placement for i in pair}
            rest = [i for i in range(l) if i not in paired]
            for idx in full_indices(l):
                if all(idx[a] == idx[b] for a, b in placement):
                    value = tr[tuple(idx[i] for i in rest)] if rest else tr
                    out[idx] += coeff * value
    return out


def _delta_placements(l: int, m: int) -> list[tuple[tuple[int, int], ...]]:
    """All sets of m disjoint unordered index pairs among l positions."""

    def rec(avail: tuple[int, ...], need: int) -> list[tuple[tuple[int, int], ...]]:
        if need == 0:
            return [()]
        if len(avail) < 2 * need:
            return []
        first, rest = avail[0], avail[1:]
        out = rec(rest, need)  # first index not in a pair
        for j, partner in enumerate(rest):
            remaining = rest[:j] + rest[j + 1 :]
            out += [((first, partner),) + tail for tail in rec(remaining, need - 1)]
        return out

    return rec(tuple(range(l)), m)
