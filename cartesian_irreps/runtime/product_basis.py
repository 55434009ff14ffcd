"""The product basis of MACE-like layers: its path tree and its generated, exactly derived tables.

For a layer whose messages ``A`` have the irrep keys ``a_keys`` (``(l, s)``: rank and parity label,
``s = +1`` natural, ``-1`` pseudo), the product basis up to correlation order ``nu`` is
``Pi_1 = A_k``, ``Pi_{n+1} = C_{(l, l_k, l3)}(Pi_n, A_k)`` channel-wise, every path kept (intermediate
ranks ``<= lmax``, the last step only into the layer's output keys; with ``products="even"`` only
natural-parity couplings, with ``"parity_complete"`` also the odd ones, which flip ``s``).
:func:`product_tree` lists the paths as a tree (the order the model uses).

Every path is a symmetric polynomial of the stacked ``a`` (D,), so
``Pi_path[m] = sum_t M[t, path, m] mono_t(a)`` over the monomials ``a_i1 ... a_inu`` (``i1 <= ... <= inu``).
The coefficients ``M`` are derived exactly (:mod:`cartesian_irreps.symbolic.product_basis`: each is
the signed square root of a rational), verified (``cartesian-irreps verify``) and generated into
:mod:`cartesian_irreps.generated.product_basis`; :func:`product_tables` returns them in the layout of
the model (a per-degree monomial selection and one dense ``(T, P * (2l+1))`` matrix per output key).
This module is free of SymPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import parity_of

__all__ = [
    "PRODUCT_SETS",
    "allowed_path",
    "message_keys",
    "model_layers",
    "parity_out",
    "product_tables",
    "product_tree",
    "table_key",
]

Key = tuple[int, int]
Node = tuple[int, Key, int, Key, tuple[int, int, int]]  # (id, key, parent id, A key, triple)
PRODUCT_SETS = ("even", "parity_complete")


def allowed_path(triple: tuple[int, int, int], products: str) -> bool:
    """Whether a product ``l1 x l2 -> l3`` belongs to the product set (``even``: natural-parity products only)."""
    return products == "parity_complete" or parity_of(*triple) == "even"


def parity_out(s1: int, s2: int, triple: tuple[int, int, int]) -> int:
    """Parity label (+1 natural, -1 pseudo) of ``(l1, s1) x (l2, s2) -> l3``: odd products flip it."""
    return s1 * s2 * (1 if parity_of(*triple) == "even" else -1)


def message_keys(in_keys: tuple[Key, ...], lmax: int, products: str) -> tuple[Key, ...]:
    """The keys of ``A``: every ``(l1, s1) x (l2, +1) -> (l3, s3)``, ``l2, l3 <= lmax``, sorted by
    ``(l3, -s3)`` (the order of the model)."""
    keys = set()
    for l1, s1 in in_keys:
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                if allowed_path((l1, l2, l3), products):
                    keys.add((l3, parity_out(s1, 1, (l1, l2, l3))))
    return tuple(sorted(keys, key=lambda k: (k[0], -k[1])))


def product_tree(
    a_keys: tuple[Key, ...], out_keys: tuple[Key, ...], lmax: int, correlation: int, products: str
) -> tuple[tuple[Node, ...], dict[Key, tuple[int, ...]]]:
    """``(nodes, basis)``: the product-basis paths as a tree and the node ids feeding each output key.

    A node is ``(id, key, parent id, A key, (l_parent, l_A, l))``; level-1 nodes (parent -1) are the
    A keys themselves. ``basis`` keeps only the output keys some path reaches, in ``out_keys`` order.
    """
    nodes: list[Node] = []
    basis: dict[Key, list[int]] = {k: [] for k in out_keys}
    level = []
    for k in a_keys:
        nodes.append((len(nodes), k, -1, k, (k[0], 0, k[0])))
        level.append(len(nodes) - 1)
    for nu in range(1, correlation + 1):
        for nid in level:
            if nodes[nid][1] in basis:
                basis[nodes[nid][1]].append(nid)
        if nu == correlation:
            break
        final = nu + 1 == correlation
        nxt = []
        for nid in level:
            key = nodes[nid][1]
            for ak in a_keys:
                for l3 in range(abs(key[0] - ak[0]), min(key[0] + ak[0], lmax) + 1):
                    tr = (key[0], ak[0], l3)
                    if not allowed_path(tr, products):
                        continue
                    k3 = (l3, parity_out(key[1], ak[1], tr))
                    if final and k3 not in basis:
                        continue
                    nodes.append((len(nodes), k3, nid, ak, tr))
                    nxt.append(len(nodes) - 1)
        level = nxt
    return tuple(nodes), {k: tuple(v) for k, v in basis.items() if v}


def model_layers(
    lmax: int, hidden_lmax: int, correlation: int, products: str, num_layers: int = 3
) -> list[tuple[tuple[Key, ...], tuple[Key, ...]]]:
    """``(a_keys, out_keys)`` of the distinct layers of a model (first, inner, last), as the model builds them."""
    signs = (1, -1) if products == "parity_complete" else (1,)
    hidden = tuple((l, s) for l in range(hidden_lmax + 1) for s in signs)
    in_keys: tuple[Key, ...] = ((0, 1),)
    out = []
    for t in range(num_layers):
        last = t == num_layers - 1
        a_keys = message_keys(in_keys, lmax, products)
        wanted = ((0, 1),) if last else hidden
        _, basis = product_tree(a_keys, wanted, lmax, correlation, products)
        if (a_keys, wanted) not in out:
            out.append((a_keys, wanted))
        in_keys = tuple(k for k in wanted if k in basis)
    return out


def table_key(a_keys: tuple[Key, ...], out_keys: tuple[Key, ...], lmax: int, correlation: int, products: str) -> tuple:
    """The key of one layer's tables in :mod:`cartesian_irreps.generated.product_basis`."""
    return (tuple(map(tuple, a_keys)), tuple(map(tuple, out_keys)), int(lmax), int(correlation), str(products))


def _infer(a_keys: tuple[Key, ...], nodes: tuple[Node, ...] | list[Node]) -> tuple[int, str]:
    """``lmax`` and the product set of a tree built by the model (A holds every rank up to lmax)."""
    lmax = max(k[0] for k in a_keys)
    odd = any(parent >= 0 and parity_of(*tr) == "odd" for _, _, parent, _, tr in nodes)
    odd = odd or any(s < 0 for _, s in a_keys)
    return lmax, "parity_complete" if odd else "even"


def product_tables(
    a_keys: tuple[Key, ...],
    nodes: tuple[Node, ...] | list[Node],
    basis: dict[Key, Any],
    correlation: int,
) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], dict[Key, np.ndarray]]:
    """The generated exact product-basis tables of one layer, in the model's layout.

    Returns ``(select, matrices)``: ``select[nu - 2] = (parent, last)`` (intp) builds the kept monomials
    of degree ``nu`` from those of degree ``nu - 1`` and a column of ``a``; ``matrices[key]`` (float64,
    ``(T, P * (2l+1))``, ``T`` the kept monomials of all degrees) holds ``M[t, p * (2l+1) + m]``, every
    entry correctly rounded from its exact value (exact zeros are absent; monomials no output uses are
    pruned). ``nodes``/``basis`` must be the tree of :func:`product_tree` (checked); a configuration
    that was not generated raises ``KeyError`` naming the command that generates it.
    """
    from ..generated import product_basis as generated

    a_keys = tuple(map(tuple, a_keys))
    lmax, products = _infer(a_keys, nodes)
    out_keys = tuple(basis)
    tree = product_tree(a_keys, out_keys, lmax, correlation, products)
    given = (tuple(tuple(n) for n in nodes), {k: tuple(v) for k, v in basis.items()})
    if tree != given:
        raise ValueError(
            "product_tables: nodes/basis are not the product tree of "
            f"a_keys={a_keys}, out_keys={out_keys}, lmax={lmax}, correlation={correlation}, products={products!r}"
        )
    key = table_key(a_keys, out_keys, lmax, correlation, products)
    entry = generated.TABLES.get(key)
    if entry is None:
        raise KeyError(
            f"no generated product-basis tables for a_keys={a_keys}, out_keys={out_keys}, lmax={lmax}, "
            f"correlation={correlation}, products={products!r}; generated: lmax <= {generated.LMAX}, "
            f"correlation <= {generated.CORRELATION} (extend PRODUCT_BASIS_CONFIGS in "
            "cartesian_irreps/generator/product_basis.py and run `cartesian-irreps generate`)"
        )
    ints = np.array(entry.split(), dtype=np.int64)
    values = np.array(generated.VALUES, dtype=np.float64)
    pos = 0

    def take(n: int) -> np.ndarray:
        nonlocal pos
        pos += n
        return ints[pos - n : pos]

    select = []
    for _ in range(int(take(1)[0])):
        n = int(take(1)[0])
        select.append((take(n).astype(np.intp), take(n).astype(np.intp)))
    matrices = {}
    for _ in range(int(take(1)[0])):
        l, s, T, W, nnz = (int(v) for v in take(5))
        ptr = take(T + 1)
        cols, index = take(nnz), take(nnz)
        m = np.zeros((T, W), dtype=np.float64)
        m[np.repeat(np.arange(T), np.diff(ptr)), cols] = values[index]
        matrices[(l, s)] = m
    if pos != len(ints):
        raise ValueError(f"generated product-basis table {key} is malformed (regenerate it)")
    return tuple(select), matrices
