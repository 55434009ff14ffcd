"""Generated CUDA C kernels of the product basis (monomials times a baked sparse basis). Same
conventions as :mod:`.cuda` (plain C in ``KERNEL`` functions, one thread per output row, C twin);
the harmonics kernels are in :mod:`.cuda_harmonics`.

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cuda import PRELUDE, CudaSource, Kernel, _function, literal

__all__ = ["product_basis_source"]


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
