"""Emit ``cartesian_irreps/generated/product_basis.py``: the exact product-basis tables of the model layers.

For every configuration in :data:`PRODUCT_BASIS_CONFIGS` (``lmax, hidden_lmax, correlation,
products``) and each distinct layer of such a model with 1 to :data:`NUM_LAYERS` layers (first, inner, last;
:func:`cartesian_irreps.runtime.product_basis.model_layers`) the tables are derived exactly
(:func:`cartesian_irreps.symbolic.product_basis.derive_product_basis`) and written as

* ``VALUES``: the distinct coefficients, each correctly rounded to float64 from its exact value, and
  ``EXACT``: that value's signed square ``"p/q"`` (the coefficient is ``sign * sqrt(|p/q|)``);
* ``TABLES[key]``: one string of integers per layer (parsed on demand, so importing the module stays
  fast): the monomial levels ``(parent, last)`` per degree and each output key's matrix in CSR form
  (layout in the generated file's comment).

Keys are :func:`cartesian_irreps.runtime.product_basis.table_key`. Deterministic: sorted keys, values
ordered by their exact value.
"""

from __future__ import annotations

from sympy import QQ

from ..runtime.product_basis import model_layers
from ..symbolic.coupling import signed_sqrt_float
from ..symbolic.product_basis import ExactProductBasis, derive_product_basis

#: (lmax, hidden_lmax, correlation, products) of the generated model configurations; lmax = 3 with
#: parity-complete products and nu = 3 stops at hidden_lmax 1 (hidden 2 alone would add 80k entries)
PRODUCT_BASIS_CONFIGS: tuple[tuple[int, int, int, str], ...] = tuple(
    (L, H, nu, p)
    for L in range(4)
    for H in range(min(L, 2) + 1)
    for nu in (1, 2, 3)
    for p in ("even", "parity_complete")
    if not (L == 3 and p == "parity_complete" and nu == 3 and H >= 2)
) + tuple((4, H, nu, "even") for H in (0, 1) for nu in (1, 2, 3))


#: models of 1..NUM_LAYERS layers are covered (from the third layer on the keys repeat)
NUM_LAYERS = 4


def derived_tables(configs=PRODUCT_BASIS_CONFIGS) -> dict[tuple, ExactProductBasis]:
    """Every distinct layer table of ``configs``, by key."""
    out: dict[tuple, ExactProductBasis] = {}
    for L, H, nu, products in configs:
        layers = [layer for n in range(1, NUM_LAYERS + 1) for layer in model_layers(L, H, nu, products, n)]
        for a_keys, out_keys in layers:
            pb = derive_product_basis(a_keys, out_keys, L, nu, products)
            out.setdefault(pb.key, pb)
    return out


def _ratio(q: object) -> str:
    q = QQ(q)
    return f"{int(q.numerator)}/{int(q.denominator)}"


def product_basis_source(header: str, configs=PRODUCT_BASIS_CONFIGS) -> str:
    """The module text (``header`` is the generator's common header)."""
    tables = derived_tables(configs)
    exact = sorted({sq for pb in tables.values() for ents in pb.entries.values() for _, _, sq in ents})
    index = {v: i for i, v in enumerate(exact)}
    lmax = max(c[0] for c in configs)
    nu = max(c[2] for c in configs)
    lines = [
        header,
        f"LMAX = {lmax}",
        f"CORRELATION = {nu}",
        "",
        "# configurations (lmax, hidden_lmax, correlation, products) whose layers are tabulated",
        f"CONFIGS = {tuple(configs)!r}",
        "",
        "# signed squares p/q of the distinct coefficients (value = sign * sqrt(|p/q|)), in increasing order",
        "EXACT = (" + ", ".join(repr(_ratio(v)) for v in exact) + ",)",
        "# the same, correctly rounded to float64",
        "VALUES = (" + ", ".join(repr(signed_sqrt_float(v)) for v in exact) + ",)",
        "",
        "# key (a_keys, out_keys, lmax, correlation, products): the layer's tables as one string of integers",
        "# (parsed only when a model needs them), in this order:",
        "#   n_levels, then per level (degree 2, 3, ...): size, parent[size], last[size];",
        "#   n_keys, then per output key: l, s, T, W, nnz, row_ptr[T + 1], cols[nnz], value_index[nnz]",
        "TABLES = {",
    ]
    for key in sorted(tables, key=repr):
        pb = tables[key]
        ints = [len(pb.levels)]
        for p, c in pb.levels:
            ints += [len(p), *p, *c]
        ints.append(len(pb.entries))
        for k, ents in pb.entries.items():
            T, W = pb.shape(k)
            ptr = [0] * (T + 1)
            for r, _, _ in ents:
                ptr[r + 1] += 1
            for r in range(T):
                ptr[r + 1] += ptr[r]
            ints += [k[0], k[1], T, W, len(ents), *ptr, *(c for _, c, _ in ents), *(index[sq] for _, _, sq in ents)]
        lines.append(f"    {key!r}:")
        text = " ".join(map(str, ints))
        chunks = [text[i : i + 100] for i in range(0, len(text), 100)]
        lines += [f"        {c!r}" for c in chunks[:-1]] + [f"        {chunks[-1]!r},"]
    lines += ["}", ""]
    return "\n".join(lines)
