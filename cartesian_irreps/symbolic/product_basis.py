"""Exact coefficients of the product basis (symmetric contractions of A up to correlation order 3).

Notation (see :mod:`cartesian_irreps.runtime.product_basis` for the tree of paths): ``a`` (D,) is the
stacked A (keys ``k`` with ``2l_k+1`` orthonormal compact components each); index ``i`` of ``a`` is
component ``m_i`` of key ``k_i``, with the Frobenius norm ``N_i = N_{l_i, m_i}`` of the rational
harmonic basis ``h`` (:mod:`.basis`). A path of order ``nu`` is the chain of unit couplings

    U[m, i1..inu] = sum C_1 ... C_{nu-1},   C[a, b, k] = R[a, b, k] sqrt(N_k / (S N_a N_b))

(``R`` the rational raw table, ``1/sqrt(S)`` the unit scale, :mod:`.coupling`). The square roots
telescope along the chain, so with the rational chain ``V`` of the tables ``R``::

    U[m, i1..inu] = V[m, i1..inu] sqrt(N_m / (S_path N_i1 ... N_inu)),   S_path = prod of the S.

Folding onto the sorted monomials sums ``U`` over the orderings of each index tuple ``t``; the
square-root factor is the same for all of them, so every coefficient is exact::

    M[t, path, m] = v sqrt(N_m / (S_path prod_k N_tk)),   v = sum over orderings of V (rational),

stored as its *signed square* ``sign(v) v^2 N_m / (S_path prod N)`` (a rational) and rounded to
float64 only when generating code. Exact zeros are dropped (no float cut-off) and monomials that no
output uses are pruned, as the model expects.

:func:`check_product_basis` verifies a derived table exactly (rational arithmetic, at random rational
points): the folded polynomial equals the coupling chain, it is equivariant under exact rational
rotations, inversion/mirrors act with the parity sign of each key, and it is unchanged when equal
factors of a monomial are taken in another order.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import cache

import numpy as np
from sympy import QQ

from ..runtime.product_basis import Key, Node, _infer, product_tree, table_key
from .basis import harmonic_basis
from .coupling import derive_coupling, raw_table, signed_sqrt_float

__all__ = ["CHECK_NAMES", "ExactProductBasis", "check_product_basis", "derive_product_basis"]

CHECK_NAMES = (
    "fold == coupling chain (exact)",
    "SO(3): exact Cayley rotations",
    "O(3): inversion/mirror with parity of each key",
    "symmetric in the factors",
)


@dataclass(frozen=True)
class ExactProductBasis:
    """One layer's product basis, exactly: pruned monomial levels and signed-square coefficients.

    * ``levels[nu - 2] = (parent, last)``: kept degree-``nu`` monomials from kept degree-``nu-1`` ones;
    * ``tuples``: the index tuple of every kept monomial (all degrees, in row order);
    * ``entries[key]``: ``(row, col, signed square)`` with ``col = path * (2l+1) + m``;
    * ``path_scale[key][p]``: ``S_path`` (rational) of the ``p``-th path of ``key``.
    """

    key: tuple
    a_keys: tuple[Key, ...]
    nodes: tuple[Node, ...]
    basis: dict[Key, tuple[int, ...]]
    dim: int
    levels: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    tuples: tuple[tuple[int, ...], ...]
    entries: dict[Key, tuple[tuple[int, int, object], ...]]
    path_scale: dict[Key, tuple[object, ...]]

    def shape(self, key: Key) -> tuple[int, int]:
        return (len(self.tuples), len(self.basis[key]) * (2 * key[0] + 1))

    def floats(self) -> dict[Key, np.ndarray]:
        """Dense float64 matrices, each entry correctly rounded from its exact value."""
        out = {}
        for key, ents in self.entries.items():
            m = np.zeros(self.shape(key))
            for r, c, sq in ents:
                m[r, c] = signed_sqrt_float(sq)
            out[key] = m
        return out


def _offsets(a_keys: tuple[Key, ...]) -> tuple[dict[Key, int], list]:
    offsets, norms = {}, []
    for k in a_keys:
        offsets[k] = len(norms)
        norms.extend(harmonic_basis(k[0]).norms)
    return offsets, norms


@cache
def _raw_by_first(triple: tuple[int, int, int]) -> tuple[dict[int, list[tuple[int, int, object]]], object]:
    """Nonzeros of ``R`` grouped by the first index, and ``S`` (``1/C'^2`` of the unit normalisation)."""
    table = raw_table(*triple)
    grouped: dict[int, list] = {}
    for (a, b, k), r in np.ndenumerate(table):
        if r:
            grouped.setdefault(a, []).append((b, k, r))
    return grouped, 1 / derive_coupling(*triple, "unit").scale_squared()


def _chains(a_keys: tuple[Key, ...], nodes: tuple[Node, ...]) -> tuple[dict[int, dict], dict[int, object]]:
    """``V`` (sparse ``{(m, idx tuple): rational}``) and ``S_path`` of every node."""
    offsets, _ = _offsets(a_keys)
    chain: dict[int, dict] = {}
    scale: dict[int, object] = {}
    for nid, _key, parent, ak, tr in nodes:
        if parent < 0:
            chain[nid] = {(m, (offsets[ak] + m,)): QQ(1) for m in range(2 * ak[0] + 1)}
            scale[nid] = QQ(1)
            continue
        grouped, s = _raw_by_first(tr)
        v: dict = {}
        for (a, idx), val in chain[parent].items():
            for b, k, r in grouped.get(a, ()):
                key = (k, (*idx, offsets[ak] + b))
                v[key] = v.get(key, QQ(0)) + r * val
        chain[nid] = {k: x for k, x in v.items() if x}
        scale[nid] = scale[parent] * s
    return chain, scale


@cache
def derive_product_basis(
    a_keys: tuple[Key, ...], out_keys: tuple[Key, ...], lmax: int, correlation: int, products: str
) -> ExactProductBasis:
    """Derive one layer's product-basis tables exactly (see the module docstring)."""
    a_keys = tuple(map(tuple, a_keys))
    nodes, basis = product_tree(a_keys, tuple(out_keys), lmax, correlation, products)
    _, norms = _offsets(a_keys)
    D = len(norms)
    chain, scale = _chains(a_keys, nodes)
    # every sorted tuple, by degree (the unpruned numbering of the model)
    all_tuples = [[(i,) for i in range(D)]]
    all_levels = []
    for _ in range(2, correlation + 1):
        prev, nxt, parent, last = all_tuples[-1], [], [], []
        for t_idx, t in enumerate(prev):
            for c in range(t[-1], D):
                nxt.append((*t, c))
                parent.append(t_idx)
                last.append(c)
        all_tuples.append(nxt)
        all_levels.append((parent, last))
    position = [{t: i for i, t in enumerate(level)} for level in all_tuples]
    folded: dict[Key, dict] = {}
    for key, ids in basis.items():
        width = 2 * key[0] + 1
        acc: dict = {}
        for p, nid in enumerate(ids):
            for (m, idx), v in chain[nid].items():
                t = tuple(sorted(idx))
                cell = (len(t), position[len(t) - 1][t], p * width + m)
                acc[cell] = acc.get(cell, QQ(0)) + v
        folded[key] = {c: v for c, v in acc.items() if v}
    # prune: keep used monomials and the parents of kept ones; degree 1 always
    keep = [set() for _ in all_tuples]
    keep[0] = set(range(D))
    for acc in folded.values():
        for deg, row, _ in acc:
            keep[deg - 1].add(row)
    for deg in range(len(all_levels), 0, -1):
        parent = all_levels[deg - 1][0]
        for row in keep[deg]:
            keep[deg - 1].add(parent[row])
    kept = [sorted(k) for k in keep]
    renumber = [{old: new for new, old in enumerate(k)} for k in kept]
    base = np.cumsum([0] + [len(k) for k in kept]).tolist()
    levels = tuple(
        (
            tuple(renumber[deg - 1][all_levels[deg - 1][0][r]] for r in kept[deg]),
            tuple(all_levels[deg - 1][1][r] for r in kept[deg]),
        )
        for deg in range(1, len(kept))
    )
    tuples = tuple(all_tuples[deg][r] for deg in range(len(kept)) for r in kept[deg])
    entries, path_scale = {}, {}
    for key, acc in folded.items():
        ids = basis[key]
        width = 2 * key[0] + 1
        rows = []
        for (deg, row, col), v in sorted(
            acc.items(), key=lambda it: (base[it[0][0] - 1] + renumber[it[0][0] - 1][it[0][1]], it[0][2])
        ):
            t = all_tuples[deg - 1][row]
            prod_n = QQ(1)
            for i in t:
                prod_n *= norms[i]
            m = col % width
            sq = v * v * harmonic_basis(key[0]).norms[m] / (scale[ids[col // width]] * prod_n)
            rows.append((base[deg - 1] + renumber[deg - 1][row], col, sq if v > 0 else -sq))
        entries[key] = tuple(rows)
        path_scale[key] = tuple(scale[n] for n in ids)
    lmax_i, products_i = _infer(a_keys, nodes)
    return ExactProductBasis(
        key=table_key(a_keys, tuple(basis), lmax_i, correlation, products_i),
        a_keys=a_keys,
        nodes=nodes,
        basis=basis,
        dim=D,
        levels=levels,
        tuples=tuples,
        entries=entries,
        path_scale=path_scale,
    )


# --------------------------------------------------------------------------- exact verification
def _rational_sqrt(q: object) -> object | None:
    """The rational square root of a non-negative rational, or None when it is irrational."""
    import gmpy2

    num, den = gmpy2.mpz(int(q.numerator)), gmpy2.mpz(int(q.denominator))
    rn, ok_n = gmpy2.isqrt_rem(num)
    rd, ok_d = gmpy2.isqrt_rem(den)
    if ok_n or ok_d:
        return None
    return QQ(int(rn), int(rd))


def _rational_tables(pb: ExactProductBasis) -> dict[Key, dict[tuple[int, int], object]]:
    """``Q[t, col] = M sqrt(S_path prod N_t / N_m)`` (the coefficients in the rational h-basis times
    ``sqrt(S_path)``), which must be rational; raises ``ArithmeticError`` otherwise."""
    _, norms = _offsets(pb.a_keys)
    out = {}
    for key, ents in pb.entries.items():
        width = 2 * key[0] + 1
        q = {}
        for r, c, sq in ents:
            prod_n = QQ(1)
            for i in pb.tuples[r]:
                prod_n *= norms[i]
            s = pb.path_scale[key][c // width]
            v2 = abs(sq) * s * prod_n / harmonic_basis(key[0]).norms[c % width]
            v = _rational_sqrt(v2)
            if v is None:
                raise ArithmeticError(f"coefficient ({r}, {c}) of key {key} is not of the form sqrt(rational)")
            q[(r, c)] = v if sq > 0 else -v
        out[key] = q
    return out


def _evaluate(pb: ExactProductBasis, q: dict, key: Key, a: list) -> list:
    """``sum_t Q[t, col] prod a[t]`` for every column (rational h-coordinates ``a``)."""
    width = len(pb.basis[key]) * (2 * key[0] + 1)
    out = [QQ(0)] * width
    for (r, c), v in q.items():
        term = v
        for i in pb.tuples[r]:
            term *= a[i]
        out[c] += term
    return out


def _chain_value(pb: ExactProductBasis, factors: list[list]) -> dict[int, list]:
    """The rational chain ``sum R ... R`` of every node, the node at depth ``d`` reading its A block from
    ``factors[d - 1]`` (h-coordinates; pass one point repeated for the product basis itself)."""
    offsets, _ = _offsets(pb.a_keys)
    val: dict[int, list] = {}
    depth: dict[int, int] = {}
    for nid, key, parent, ak, tr in pb.nodes:
        depth[nid] = 1 if parent < 0 else depth[parent] + 1
        a = factors[depth[nid] - 1]
        block = a[offsets[ak] : offsets[ak] + 2 * ak[0] + 1]
        if parent < 0:
            val[nid] = list(block)
            continue
        grouped, _ = _raw_by_first(tr)
        z = [QQ(0)] * (2 * key[0] + 1)
        for i, x in enumerate(val[parent]):
            if x:
                for b, k, r in grouped.get(i, ()):
                    z[k] += r * x * block[b]
        val[nid] = z
    return val


def _act(pb: ExactProductBasis, rep: dict[Key, np.ndarray], a: list) -> list:
    offsets, _ = _offsets(pb.a_keys)
    out = list(a)
    for k in pb.a_keys:
        o, d = offsets[k], 2 * k[0] + 1
        out[o : o + d] = list(rep[k].dot(np.array(a[o : o + d], dtype=object)))
    return out


def check_product_basis(pb: ExactProductBasis, points: int = 2, seed: int = 0) -> list[tuple[str, bool, str]]:
    """Exact checks of one derived table: ``[(check, ok, detail)]``.

    At ``points`` random rational ``a`` (h-coordinates, fixed ``seed``):

    1. the folded monomial polynomial equals the coupling chain of every path;
    2. ``Pi(D(g) a) = D(g) Pi(a)`` for exact Cayley rotations;
    3. the same for inversion, a mirror and a rotoreflection, where a pseudotensor key (``s = -1``)
       picks up an extra ``det(g) = -1`` (parity);
    4. symmetry: with distinct factors, the chain summed over the orderings of its factors equals the
       polarisation of the folded polynomial (each sorted monomial stands for all its orderings).
    """
    from ..verify import IMPROPER, ROTATIONS, determinant

    rng = random.Random(seed)
    try:
        q = _rational_tables(pb)
    except ArithmeticError as exc:  # every check needs the rational form
        return [(name, False, str(exc)) for name in CHECK_NAMES]
    results = []
    pts = [[QQ(rng.randint(-9, 9), rng.randint(1, 7)) for _ in range(pb.dim)] for _ in range(points)]

    def fold_vs_chain() -> tuple[bool, str]:
        for a in pts:
            chain = _chain_value(pb, [a] * (len(pb.levels) + 1))
            for key, ids in pb.basis.items():
                got = _evaluate(pb, q[key], key, a)
                width = 2 * key[0] + 1
                for p, nid in enumerate(ids):
                    if got[p * width : (p + 1) * width] != chain[nid]:
                        return False, f"key {key} path {p}"
        return True, ""

    def group(names: dict) -> tuple[bool, str]:
        for name, g in names.items():
            det = determinant(g)
            rep = {}
            for k in {*pb.a_keys, *pb.basis}:
                d = np.array(harmonic_basis(k[0]).representation(g), dtype=object)
                # a pseudotensor (s = -1) picks up det(g) on top of the polynomial action
                rep[k] = d * (det if k[1] < 0 else 1)
            for a in pts:
                ga = _act(pb, rep, a)
                for key in pb.basis:
                    width = 2 * key[0] + 1
                    lhs = _evaluate(pb, q[key], key, ga)
                    rhs = _evaluate(pb, q[key], key, a)
                    for p in range(len(pb.basis[key])):
                        want = list(rep[key].dot(np.array(rhs[p * width : (p + 1) * width], dtype=object)))
                        if lhs[p * width : (p + 1) * width] != want:
                            return False, f"fails for {name}, key {key} path {p}"
        return True, ""

    def symmetric() -> tuple[bool, str]:
        # polarisation: for a path of degree nu with distinct factors a_1..a_nu,
        # sum_sigma chain(a_sigma) == sum_{S} (-1)^(nu-|S|) P(sum_{k in S} a_k)
        depth: dict[int, int] = {}
        for nid, _k, parent, _ak, _tr in pb.nodes:
            depth[nid] = 1 if parent < 0 else depth[parent] + 1
        top = max(depth.values())
        factors = [[QQ(rng.randint(-9, 9), rng.randint(1, 7)) for _ in range(pb.dim)] for _ in range(top)]
        for nu in range(1, top + 1):
            lhs: dict[int, list] = {}
            for perm in itertools.permutations(range(nu)):
                val = _chain_value(pb, [factors[i] for i in perm] + factors[nu:])
                for nid, v in val.items():
                    if depth[nid] == nu:
                        lhs[nid] = [x + y for x, y in zip(lhs.get(nid, [QQ(0)] * len(v)), v)]
            for key, ids in pb.basis.items():
                width = 2 * key[0] + 1
                rhs = [QQ(0)] * (len(ids) * width)
                for size in range(1, nu + 1):
                    for subset in itertools.combinations(range(nu), size):
                        point = [sum((factors[k][i] for k in subset), QQ(0)) for i in range(pb.dim)]
                        sign = -1 if (nu - size) % 2 else 1
                        rhs = [r + sign * v for r, v in zip(rhs, _evaluate(pb, q[key], key, point))]
                for p, nid in enumerate(ids):
                    if depth[nid] == nu and rhs[p * width : (p + 1) * width] != lhs[nid]:
                        return False, f"key {key} path {p}: the fold is not the symmetrised chain"
        return True, ""

    for name, fn in zip(CHECK_NAMES, (fold_vs_chain, lambda: group(ROTATIONS), lambda: group(IMPROPER), symmetric)):
        try:
            ok, detail = fn()
        except Exception as exc:  # a crashing check has failed
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        results.append((name, ok, detail))
    return results
