"""Symmetric tensors as homogeneous polynomials, in exact rational arithmetic.

A symmetric rank-l tensor X on R^3 is the same thing as the homogeneous polynomial
of degree l

    p_X(n) = X . n^{(x)l} = sum_{i1..il} X_{i1..il} n_{i1} ... n_{il}.

The coefficient of the monomial x^a y^b z^c (a+b+c = l) is
``multinomial(l; a, b, c) * X_abc``, where ``X_abc`` is any entry of X with a
x-indices, b y-indices and c z-indices. Under this dictionary

* the Frobenius inner product of symmetric tensors is
  ``<X, Y> = sum_abc p_abc q_abc / multinomial(l; a, b, c)``;
* a single trace is the Laplacian: ``p_{Tr X} = Delta p_X / (l (l-1))``;
* traceless symmetric tensors are harmonic polynomials;
* the rotation ``(g.X)_{i..} = g_{ij} ... X_{j..}`` acts as ``p -> p(g^T n)``.

All polynomials live in one SymPy sparse ring ``RING = QQ[x, y, z]`` whose
coefficients are exact rationals (``gmpy2.mpq`` when gmpy2 is installed).
"""

from __future__ import annotations

import itertools
from functools import cache
from math import factorial

import numpy as np
from sympy import QQ
from sympy.polys.rings import PolyElement, ring

RING, X, Y, Z = ring("x,y,z", QQ)
VARS = (X, Y, Z)

Monomial = tuple[int, int, int]


@cache
def monomials(l: int) -> tuple[Monomial, ...]:
    """Exponents ``(a, b, c)`` with ``a+b+c = l``, in a fixed order (x-power descending, then y).

    There are ``(l+1)(l+2)/2`` of them; they index the "symmetric" coordinates.
    """
    return tuple((a, b, l - a - b) for a in range(l, -1, -1) for b in range(l - a, -1, -1))


def multinomial(m: Monomial) -> int:
    """``l! / (a! b! c!)``: the number of index tuples with exponent pattern ``m``."""
    a, b, c = m
    return factorial(a + b + c) // (factorial(a) * factorial(b) * factorial(c))


def exponent_of_index(index: tuple[int, ...]) -> Monomial:
    """Exponent pattern of a full-layout multi-index (entries 0, 1, 2 for x, y, z)."""
    return (index.count(0), index.count(1), index.count(2))


@cache
def full_indices(l: int) -> tuple[tuple[int, ...], ...]:
    """All ``3^l`` multi-indices in C (row-major) order: the full layout's flattening."""
    return tuple(itertools.product(range(3), repeat=l))


def frobenius(p: PolyElement, q: PolyElement) -> QQ:
    """Frobenius inner product ``<X, Y>`` of the symmetric tensors with polynomials ``p``, ``q``."""
    total = QQ(0)
    for m, c in p.items():
        d = q.get(m)
        if d:
            total += c * d / multinomial(m)
    return total


def laplacian(p: PolyElement) -> PolyElement:
    """``Delta p = p_xx + p_yy + p_zz``."""
    return sum((p.diff(v).diff(v) for v in VARS), RING.zero)


def r2() -> PolyElement:
    """``|n|^2 = x^2 + y^2 + z^2``."""
    return X**2 + Y**2 + Z**2


def monomial_poly(m: Monomial) -> PolyElement:
    """The monomial ``x^a y^b z^c``."""
    return RING({m: QQ(1)})


def derivative(p: PolyElement, alpha: Monomial) -> PolyElement:
    """``d^alpha p = d_x^a d_y^b d_z^c p``."""
    for v, times in zip(VARS, alpha):
        for _ in range(times):
            p = p.diff(v)
    return p


def coordinates(p: PolyElement, l: int) -> list:
    """Coefficient vector of ``p`` in ``monomials(l)`` order (exact rationals)."""
    return [p.get(m, QQ(0)) for m in monomials(l)]


def from_coordinates(coeffs, l: int) -> PolyElement:
    """Inverse of :func:`coordinates`."""
    return RING({m: QQ(c) for m, c in zip(monomials(l), coeffs) if c})


def tensor_from_poly(p: PolyElement, l: int) -> np.ndarray:
    """Full-layout symmetric tensor (object array of shape ``(3,)*l``) with polynomial ``p``.

    ``X[i1..il] = p_{abc} / multinomial(l; a, b, c)``.
    """
    out = np.empty((3,) * l, dtype=object)
    for idx in full_indices(l):
        m = exponent_of_index(idx)
        out[idx] = p.get(m, QQ(0)) / multinomial(m)
    return out


def poly_from_tensor(t: np.ndarray) -> PolyElement:
    """Polynomial ``X . n^l`` of any full-layout tensor (symmetrises implicitly)."""
    l = t.ndim
    terms: dict[Monomial, object] = {}
    for idx in full_indices(l):
        v = t[idx]
        if v:
            m = exponent_of_index(idx)
            terms[m] = terms.get(m, QQ(0)) + QQ(v)
    return RING({m: c for m, c in terms.items() if c})


def substitute_linear(p: PolyElement, g) -> PolyElement:
    """``p(g^T n)`` for a 3x3 matrix ``g`` of rationals: the action of ``g`` on tensors."""
    images = [sum((QQ(g[j][i]) * VARS[j] for j in range(3)), RING.zero) for i in range(3)]
    return p.compose(list(zip(VARS, images)))
