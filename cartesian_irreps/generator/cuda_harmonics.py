"""Generated CUDA C kernels of the Cartesian harmonics and their first and second derivatives.

Conventions of :mod:`.cuda` (plain C in ``KERNEL`` functions, one thread per vector, C twin). For
``r`` (E, 3), ``rho = |r|``, ``n = r / rho``, the stacked harmonics ``T_k(r) = f_k(n)``
(``k = l^2 + m``, ``K = (lmax+1)^2``) are polynomials ``f_k`` of ``n`` whose coefficients (the
generated exact basis times the normalisation, times ``sqrt(2l+1)`` for the 'component' scaling) are
baked into the source. With ``g_k = grad f_k (n)``, ``H_k`` its Hessian and ``P = 1 - n n^T``::

    dT_k/dr = P g_k / rho
    D_v (dT_k/dr) = (P H_k u - u (n . g_k) - n (u . g_k)) / rho - P g_k (n . v) / rho^2,   u = P v / rho

Kernels (parameters ``r, G, v, values, out, E``; unused ones are passed anyway):

* ``<prefix>_values``: ``values (E, K) = T``;
* ``<prefix>_jacobian``: ``values`` and ``out (E, K, 3) = dT/dr``;
* ``<prefix>_vjp``: ``out (E, 3) = sum_k G[e, k] dT_k/dr`` (forces);
* ``<prefix>_jvp``: ``values (E, K) = sum_d dT_k/dr_d v[e, d]`` (the VJP of the VJP with respect to G);
* ``<prefix>_hvp``: ``out (E, 3) = sum_k G[e, k] D_v (dT_k/dr)`` (its VJP with respect to r: force training).

A zero vector gives non-finite values: callers check lengths first.
"""

from __future__ import annotations

import math

from ..runtime import tables
from .cuda import PRELUDE, CudaSource, Kernel, _function, literal

__all__ = ["harmonics_source"]

AXES = range(3)


def _polynomials(l: int, normalization: str, component: bool) -> list[dict[tuple[int, int, int], float]]:
    """``f_{l,m}`` for m = 0..2l as ``{exponent: coefficient}``."""
    scale = tables.harmonic_scale(l, normalization) * (math.sqrt(2 * l + 1) if component else 1.0)
    basis = tables.harmonic_basis_floats(l) * scale  # (2l+1, n_mono)
    expo = [tuple(e) for e in tables.monomial_exponents(l).tolist()]
    return [{e: float(c) for e, c in zip(expo, row) if c != 0} for row in basis]


def _derivative(poly: dict, axis: int) -> dict:
    out: dict = {}
    for e, c in poly.items():
        if e[axis]:
            d = list(e)
            d[axis] -= 1
            out[tuple(d)] = out.get(tuple(d), 0.0) + e[axis] * c
    return {e: c for e, c in out.items() if c != 0}


def _expr(poly: dict) -> str:
    def mono(e: tuple[int, int, int]) -> str:
        return " * ".join(f"p{a}_{e[a]}" for a in AXES if e[a]) or "1.0"

    terms = [f"{literal(c)} * {mono(e)}" for e, c in sorted(poly.items())]
    return " + ".join(terms) if terms else "0.0"


def harmonics_source(
    lmax: int, normalization: str = "unit", component: bool = True, prefix: str = "harm"
) -> CudaSource:
    """The harmonics kernels for ranks ``0..lmax`` (see the module docstring)."""
    tables.check_harmonics_lmax(lmax)
    K = (lmax + 1) ** 2
    params = (
        ("const REAL* __restrict__", "r"),
        ("const REAL* __restrict__", "G"),
        ("const REAL* __restrict__", "v"),
        ("REAL* __restrict__", "values"),
        ("REAL* __restrict__", "out"),
        ("idx_t", "E"),
    )
    ks = {op: Kernel(f"{prefix}_{op}", params, ("E",)) for op in ("values", "jacobian", "vjp", "jvp", "hvp")}
    head = [
        "const ACC rx = (ACC)r[tid * 3], ry = (ACC)r[tid * 3 + 1], rz = (ACC)r[tid * 3 + 2];",
        "const ACC rho = sqrt(rx * rx + ry * ry + rz * rz);",
        "const ACC inv = 1.0 / rho;",
        "const ACC n0 = rx * inv, n1 = ry * inv, n2 = rz * inv;",
    ]
    for a in AXES:
        head.append(f"const ACC p{a}_0 = 1.0;")
        head += [f"const ACC p{a}_{k} = p{a}_{k - 1} * n{a};" for k in range(1, lmax + 1)]
    polys = [p for l in range(lmax + 1) for p in _polynomials(l, normalization, component)]
    grads1 = [[_derivative(p, a) for a in AXES] for p in polys]
    values = [f"const ACC t{k} = {_expr(p)};" for k, p in enumerate(polys)]
    # g_k (gradient in n) and dT_k/dr = (g_k - (g_k . n) n) / rho
    grad = []
    for k in range(K):
        grad += [f"const ACC g{k}_{a} = {_expr(grads1[k][a])};" for a in AXES]
        grad.append(f"const ACC gn{k} = g{k}_0 * n0 + g{k}_1 * n1 + g{k}_2 * n2;")
        grad += [f"const ACC d{k}_{a} = (g{k}_{a} - gn{k} * n{a}) * inv;" for a in AXES]
    write_values = [f"values[tid * {K} + {k}] = (REAL)t{k};" for k in range(K)]
    write_jac = [f"out[tid * {3 * K} + {3 * k + a}] = (REAL)d{k}_{a};" for k in range(K) for a in AXES]
    load_g = [f"const ACC G{k} = (ACC)G[tid * {K} + {k}];" for k in range(K)]
    load_v = [f"const ACC v{a} = (ACC)v[tid * 3 + {a}];" for a in AXES]
    vjp = [f"out[tid * 3 + {a}] = (REAL)({' + '.join(f'G{k} * d{k}_{a}' for k in range(K))});" for a in AXES]
    jvp = [f"values[tid * {K} + {k}] = (REAL)(d{k}_0 * v0 + d{k}_1 * v1 + d{k}_2 * v2);" for k in range(K)]
    # HVP: gG = sum_k G_k g_k, HGu = sum_k G_k H_k u
    hvp = ["const ACC nv = n0 * v0 + n1 * v1 + n2 * v2;"]
    hvp += [f"const ACC u{a} = (v{a} - nv * n{a}) * inv;" for a in AXES]
    hvp += [f"const ACC gG{a} = {' + '.join(f'G{k} * g{k}_{a}' for k in range(K))};" for a in AXES]
    for a in AXES:
        terms = []
        for k in range(K):
            row = " + ".join(
                f"({_expr(_derivative(grads1[k][a], b))}) * u{b}" for b in AXES if _derivative(grads1[k][a], b)
            )
            if row:
                terms.append(f"G{k} * ({row})")
        hvp.append(f"const ACC hu{a} = {' + '.join(terms) if terms else '0.0'};")
    hvp += [
        "const ACC ngG = n0 * gG0 + n1 * gG1 + n2 * gG2, ugG = u0 * gG0 + u1 * gG1 + u2 * gG2;",
        "const ACC nhu = n0 * hu0 + n1 * hu1 + n2 * hu2;",
    ]
    hvp += [
        f"out[tid * 3 + {a}] = (REAL)(((hu{a} - nhu * n{a}) - u{a} * ngG - n{a} * ugG) * inv"
        f" - (gG{a} - ngG * n{a}) * nv * inv * inv);"
        for a in AXES
    ]
    src = [
        _function(ks["values"], head + values + write_values),
        _function(ks["jacobian"], head + values + grad + write_values + write_jac),
        _function(ks["vjp"], head + grad + load_g + vjp),
        _function(ks["jvp"], head + grad + load_v + jvp),
        _function(ks["hvp"], head + grad + load_g + load_v + hvp),
    ]
    return CudaSource(PRELUDE + "\n" + "\n".join(src), tuple(ks.values()))
