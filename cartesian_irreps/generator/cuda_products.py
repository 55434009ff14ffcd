"""Generated CUDA C kernels of the product basis (monomials times a baked sparse basis) and of the
Cartesian harmonics. Same conventions as :mod:`.cuda` (plain C in ``KERNEL`` functions, one thread per
output row, C twin).

**Product basis** (:func:`product_basis_source`): a monomial table ``(parent, last)`` (``T`` entries,
``m_t = a[last_t]`` or ``m_parent * a[last_t]``) and a sparse basis ``B`` (T, W) baked in; for
``a`` (R, D) one thread per row computes (straight-line code, no loops):

* ``<prefix>_forward``: ``out (R, W) = m(a) B``;
* ``<prefix>_vjp``: ``out (R, D) = J(a)^T (B g)`` for ``g`` (R, W);
* ``<prefix>_jvp``: ``out (R, W) = (J(a) h)^T B`` for ``h`` (R, D);
* ``<prefix>_hvp``: ``out (R, D) = d/da (J^T B g) . h`` (the second-order term of force training),

the same four ops as the CPU kernel ``_kernels/monomials.c`` and
:mod:`cartesian_irreps.runtime.monomials` (whose reference they are tested against). Every kernel
takes ``a, g, h, out, R`` (the unused inputs are passed anyway).

**Harmonics** (:func:`harmonics_source`): for vectors ``r`` (E, 3), ``n = r/|r|``, one thread per
vector: ``<prefix>_values`` writes ``T (E, K)`` (``K = (lmax+1)^2``, ranks stacked), ``<prefix>_jacobian``
also ``dT/dr (E, K, 3) = (dT/dn)(1 - n n^T)/|r|``, and ``<prefix>_vjp`` writes
``sum_k G[e, k] dT_k/dr`` into ``grads`` (E, 3) for ``G`` (E, K). Coefficients (generated exact basis times the
normalisation, times ``sqrt(2l+1)`` for the 'component' scaling) are baked in. A zero vector gives
non-finite values: callers check lengths first.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..runtime import tables
from .cuda import PRELUDE, CudaSource, Kernel, _function, literal

__all__ = ["harmonics_source", "product_basis_source"]


def _rows_of(basis: tuple[Any, Any, Any, int], T: int) -> tuple[list[list[tuple[int, float]]], list[list]]:
    rows, cols, values, W = basis
    by_row: list[list[tuple[int, float]]] = [[] for _ in range(T)]
    by_col: list[list[tuple[int, float]]] = [[] for _ in range(int(W))]
    for r, c, v in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist(), np.asarray(values).tolist()):
        by_row[r].append((c, v))
        by_col[c].append((r, v))
    return by_row, by_col


def _lin(pairs: list[tuple[int, float]], var: str) -> str:
    return " + ".join(f"{literal(v)} * {var}{i}" for i, v in pairs) if pairs else "(ACC)0"


def product_basis_source(
    parent: Any, last: Any, basis: tuple[Any, Any, Any, int], dim: int, prefix: str = "pbasis"
) -> CudaSource:
    """The four product-basis kernels for one monomial table and sparse basis (see the module docstring)."""
    parent = np.asarray(parent).astype(int).tolist()
    last = np.asarray(last).astype(int).tolist()
    T, D, W = len(parent), int(dim), int(basis[3])
    if len(last) != T or any(p >= t for t, p in enumerate(parent)) or any(not 0 <= c < D for c in last):
        raise ValueError("monomial table: parent[t] < t and 0 <= last[t] < dim are required")
    by_row, by_col = _rows_of(basis, T)
    params = (
        ("const REAL* __restrict__", "a"),
        ("const REAL* __restrict__", "g"),
        ("const REAL* __restrict__", "h"),
        ("REAL* __restrict__", "out"),
        ("idx_t", "R"),
    )
    ks = {op: Kernel(f"{prefix}_{op}", params, ("R",)) for op in ("forward", "vjp", "jvp", "hvp")}
    # monomials needed: those with basis entries and their ancestors
    need = [bool(by_row[t]) for t in range(T)]
    for t in range(T - 1, -1, -1):
        if need[t] and parent[t] >= 0:
            need[parent[t]] = True
    load_a = [f"const ACC a{c} = (ACC)a[tid * {D} + {c}];" for c in range(D)]

    def forward_values(var: str = "m") -> list[str]:
        out = []
        for t in range(T):
            if need[t]:
                p, c = parent[t], last[t]
                out.append(f"const ACC {var}{t} = a{c};" if p < 0 else f"const ACC {var}{t} = {var}{p} * a{c};")
        return out

    def tangents() -> list[str]:
        out = [f"const ACC h{c} = (ACC)h[tid * {D} + {c}];" for c in range(D)]
        for t in range(T):
            if need[t]:
                p, c = parent[t], last[t]
                out.append(f"const ACC dm{t} = h{c};" if p < 0 else f"const ACC dm{t} = dm{p} * a{c} + m{p} * h{c};")
        return out

    def write(var: str, cols: int, src: str) -> list[str]:
        lines = [f"REAL* o = out + tid * {cols};"]
        if src == "cols":
            lines += [f"o[{c}] = (REAL)({_lin(by_col[c], var)});" for c in range(cols)]
        else:
            lines += [f"o[{c}] = (REAL)ga{c};" for c in range(cols)]
        return lines

    def cotangents() -> list[str]:
        lines = [f"const ACC g{c} = (ACC)g[tid * {W} + {c}];" for c in range(W) if by_col[c]]
        lines += [f"ACC gm{t} = {_lin(by_row[t], 'g')};" for t in range(T) if need[t]]
        return lines + [f"ACC ga{c} = 0;" for c in range(D)]

    src = [_function(ks["forward"], load_a + forward_values() + write("m", W, "cols"))]
    src.append(_function(ks["jvp"], load_a + forward_values() + tangents() + write("dm", W, "cols")))
    body = load_a + forward_values() + cotangents()
    for t in range(T - 1, -1, -1):
        if not need[t]:
            continue
        p, c = parent[t], last[t]
        if p < 0:
            body.append(f"ga{c} += gm{t};")
        else:
            body += [f"ga{c} += gm{t} * m{p};", f"gm{p} += gm{t} * a{c};"]
    src.append(_function(ks["vjp"], body + write("", D, "ga")))
    body = load_a + forward_values() + tangents() + cotangents()
    body += [f"ACC dgm{t} = 0;" for t in range(T) if need[t]]
    for t in range(T - 1, -1, -1):
        if not need[t]:
            continue
        p, c = parent[t], last[t]
        if p < 0:
            body.append(f"ga{c} += dgm{t};")
        else:
            body += [
                f"ga{c} += dgm{t} * m{p} + gm{t} * dm{p};",
                f"gm{p} += gm{t} * a{c};",
                f"dgm{p} += dgm{t} * a{c} + gm{t} * h{c};",
            ]
    src.append(_function(ks["hvp"], body + write("", D, "ga")))
    return CudaSource(PRELUDE + "\n" + "\n".join(src), tuple(ks.values()))


# --------------------------------------------------------------------------- harmonics
def _harmonic_coefficients(l: int, normalization: str, component: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(coeff (n_mono(l), 2l+1), deriv (3, 2l+1, n_mono(l-1)))`` in float64."""
    from ..runtime.harmonics import _derivative_coefficients

    scale = tables.harmonic_scale(l, normalization) * (math.sqrt(2 * l + 1) if component else 1.0)
    coeff = tables.harmonic_basis_floats(l).T * scale
    deriv = _derivative_coefficients(l) * scale if l else np.zeros((3, 1, 0))
    return coeff, deriv


def harmonics_source(
    lmax: int, normalization: str = "unit", component: bool = True, prefix: str = "harm"
) -> CudaSource:
    """Cartesian harmonics ``T_0..T_lmax`` of unit vectors, with gradient and VJP (module docstring)."""
    tables.check_harmonics_lmax(lmax)
    K = (lmax + 1) ** 2
    params = (
        ("const REAL* __restrict__", "r"),
        ("const REAL* __restrict__", "G"),
        ("REAL* __restrict__", "values"),
        ("REAL* __restrict__", "grads"),
        ("idx_t", "E"),
    )
    ks = {op: Kernel(f"{prefix}_{op}", params, ("E",)) for op in ("values", "jacobian", "vjp")}
    head = [
        "const ACC rx = (ACC)r[tid * 3], ry = (ACC)r[tid * 3 + 1], rz = (ACC)r[tid * 3 + 2];",
        "const ACC len = sqrt(rx * rx + ry * ry + rz * rz);",
        "const ACC inv = 1.0 / len;",
        "const ACC n0 = rx * inv, n1 = ry * inv, n2 = rz * inv;",
    ]
    for axis in range(3):
        head.append(f"const ACC p{axis}_0 = 1.0;")
        for k in range(1, lmax + 1):
            head.append(f"const ACC p{axis}_{k} = p{axis}_{k - 1} * n{axis};")

    def mono(e: tuple[int, int, int]) -> str:
        return " * ".join(f"p{a}_{e[a]}" for a in range(3) if e[a]) or "1.0"

    vals, grads = [], []
    for l in range(lmax + 1):
        coeff, deriv = _harmonic_coefficients(l, normalization, component)
        expo = tables.monomial_exponents(l).tolist()
        lower = tables.monomial_exponents(l - 1).tolist() if l else []
        for m in range(2 * l + 1):
            k = l * l + m
            terms = [f"{literal(coeff[a, m])} * {mono(e)}" for a, e in enumerate(expo) if coeff[a, m] != 0]
            vals.append(f"const ACC t{k} = {' + '.join(terms) if terms else '0.0'};")
            if l == 0:
                grads += [f"const ACC d{k}_{axis} = 0.0;" for axis in range(3)]
                continue
            for axis in range(3):
                terms = [f"{literal(deriv[axis, m, a])} * {mono(e)}" for a, e in enumerate(lower) if deriv[axis, m, a]]
                grads.append(f"const ACC dn{k}_{axis} = {' + '.join(terms) if terms else '0.0'};")
            grads.append(f"const ACC rad{k} = dn{k}_0 * n0 + dn{k}_1 * n1 + dn{k}_2 * n2;")
            grads += [f"const ACC d{k}_{axis} = (dn{k}_{axis} - rad{k} * n{axis}) * inv;" for axis in range(3)]
    write_vals = [f"REAL* v = values + tid * {K};"] + [f"v[{k}] = (REAL)t{k};" for k in range(K)]
    write_grads = [f"REAL* d = grads + tid * {K * 3};"]
    write_grads += [f"d[{3 * k + axis}] = (REAL)d{k}_{axis};" for k in range(K) for axis in range(3)]
    src = [_function(ks["values"], head + vals + write_vals)]
    src.append(_function(ks["jacobian"], head + vals + grads + write_vals + write_grads))
    vjp = [f"const ACC G{k} = (ACC)G[tid * {K} + {k}];" for k in range(K)]
    vjp += [
        f"grads[tid * 3 + {axis}] = (REAL)(" + " + ".join(f"G{k} * d{k}_{axis}" for k in range(K)) + ");"
        for axis in range(3)
    ]
    src.append(_function(ks["vjp"], head + grads + vjp))
    return CudaSource(PRELUDE + "\n" + "\n".join(src), tuple(ks.values()))
