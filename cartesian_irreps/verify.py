"""Proofs by computation: exact checks of projectors, bases, harmonics and couplings.

Every check here runs in exact rational arithmetic (no floats). Square roots never need to be
simplified: the orthonormal compact layout only rescales the rational harmonic basis h_{l,m} by
``1/sqrt(N_{l,m})``, so identities are checked on rational tables, and irrational numbers are
compared through their *signed squares* ``sign(v) v^2``.

Each ``check_*`` function returns a list of :class:`CheckResult`; :func:`run` collects them for
all ranks and triples up to ``lmax``. The test suite reuses the same functions.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
import sympy
from sympy import QQ
from sympy.polys.matrices import DomainMatrix
from sympy.polys.rings import ring

from ._validate import check_rank, check_triple, triples
from .symbolic.basis import HarmonicBasis, harmonic_basis
from .symbolic.coupling import (
    FULL_LAYOUT_MAX_TOTAL,
    Coupling,
    apply_table,
    derive_coupling,
    harmonic_coordinates,
)
from .symbolic.harmonics import (
    SYMBOLS,
    cartesian_harmonic,
    cartesian_harmonic_gradient,
    harmonic_normalization,
)
from .symbolic.polynomials import (
    coordinates,
    frobenius,
    full_indices,
    laplacian,
    monomial_poly,
    monomials,
    multinomial,
)
from .symbolic.projector import (
    detrace_by_placements,
    projector_symmetric,
    symmetric_to_full,
    trace_map,
)
from .symbolic.spherical import proportionality, real_wigner_3j_signed_squares

#: Largest rank whose 3^l x 3^l projector is checked entry by entry in the full layout.
FULL_PROJECTOR_CHECK_L = 4
#: Largest rank for which the dimension of all equivariant bilinear maps is computed (selection rule).
SELECTION_RULE_L = 3


@dataclass
class CheckResult:
    """One row of the verification table."""

    obj: str
    check: str
    ok: bool
    seconds: float
    detail: str = ""


def _timed(obj: str, check: str, fn: Callable[[], tuple[bool, str] | bool]) -> CheckResult:
    start = time.perf_counter()
    try:
        out = fn()
        ok, detail = out if isinstance(out, tuple) else (bool(out), "")
    except Exception as exc:  # a check that crashes has failed, and says why
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return CheckResult(obj, check, bool(ok), time.perf_counter() - start, detail)


# --------------------------------------------------------------------------- rotations
def cayley(a: QQ, b: QQ, c: QQ) -> list[list]:
    """Exact rational rotation ``(1 - A)(1 + A)^{-1}`` for the antisymmetric A of (a, b, c)."""
    amat = DomainMatrix(
        [[QQ(0), -QQ(c), QQ(b)], [QQ(c), QQ(0), -QQ(a)], [-QQ(b), QQ(a), QQ(0)]],
        (3, 3),
        QQ,
    )
    eye = DomainMatrix.eye(3, QQ)
    return ((eye - amat) * (eye + amat).inv()).to_list()


def determinant(g: list[list]) -> QQ:
    return DomainMatrix([[QQ(v) for v in row] for row in g], (3, 3), QQ).det()


ROTATIONS = {
    "cayley(1/2,-1/3,2)": cayley(QQ(1, 2), QQ(-1, 3), QQ(2)),
    "cayley(-3,1/5,1/7)": cayley(QQ(-3), QQ(1, 5), QQ(1, 7)),
}
IMPROPER = {
    "inversion": [[-1, 0, 0], [0, -1, 0], [0, 0, -1]],
    "mirror y": [[1, 0, 0], [0, -1, 0], [0, 0, 1]],
    "rotoreflection": [[-v for v in row] for row in cayley(QQ(2, 3), QQ(1), QQ(-1, 4))],
}


@cache
def _representation(l: int, name: str) -> np.ndarray:
    g = {**ROTATIONS, **IMPROPER}[name]
    return np.array(harmonic_basis(l).representation(g), dtype=object)


@cache
def _generators(l: int) -> tuple[np.ndarray, ...]:
    return tuple(np.array(harmonic_basis(l).generator(a), dtype=object) for a in range(3))


def _all_zero(a) -> bool:
    return not any(v for v in np.asarray(a, dtype=object).ravel())


# --------------------------------------------------------------------------- projector
def check_projector(l: int) -> list[CheckResult]:
    """P_l: both constructions agree; self-adjoint; idempotent; rank 2l+1; image symmetric traceless."""
    l = check_rank(l)
    obj = f"P_{l}"
    closed = projector_symmetric(l, "closed_form")
    g = DomainMatrix.diag([QQ(1, multinomial(m)) for m in monomials(l)], QQ)
    out = [
        _timed(
            obj,
            "closed form == null-space construction",
            lambda: closed == projector_symmetric(l, "nullspace"),
        ),
        _timed(
            obj,
            "self-adjoint (Frobenius)",
            lambda: g * closed == (g * closed).transpose(),
        ),
        _timed(obj, "idempotent", lambda: closed * closed == closed),
        _timed(obj, "rank == 2l+1", lambda: (closed.rank() == 2 * l + 1, f"rank {closed.rank()}")),
        _timed(
            obj,
            "image traceless",
            lambda: _all_zero(np.array((trace_map(l) * closed).to_list() or [[0]], dtype=object)),
        ),
    ]
    if l <= FULL_PROJECTOR_CHECK_L:
        out.append(
            _timed(
                obj,
                "full layout: symmetric, idempotent, image symmetric",
                lambda: _check_full_projector(l),
            )
        )
        out.append(
            _timed(
                obj,
                "full layout == literal placement formula",
                lambda: _check_placements(l),
            )
        )
    return out


def _full_projector(l: int) -> np.ndarray:
    return np.array(symmetric_to_full(projector_symmetric(l), l).to_list(), dtype=object).reshape(3**l, 3**l)


def _check_full_projector(l: int) -> tuple[bool, str]:
    p = _full_projector(l)
    if not (p == p.T).all():
        return False, "P_full is not symmetric"
    if not (p.dot(p) == p).all():
        return False, "P_full is not idempotent"
    cols = p.T.reshape((3**l,) + (3,) * l)
    for col in cols:
        for perm in itertools.permutations(range(l)):
            if not (np.transpose(col, perm) == col).all():
                return False, "image not symmetric"
        if l >= 2 and not _all_zero(np.trace(col, axis1=0, axis2=1)):
            return False, "image not traceless"
    return True, ""


def _check_placements(l: int) -> tuple[bool, str]:
    p = _full_projector(l)
    for j, idx in enumerate(full_indices(l)):
        unit = np.full((3,) * l, QQ(0), dtype=object)
        unit[idx] = QQ(1)
        if not (detrace_by_placements(unit).ravel() == p[:, j]).all():
            return False, f"column {idx} differs"
    return True, ""


# --------------------------------------------------------------------------- basis
def check_basis(l: int) -> list[CheckResult]:
    """Compact basis: harmonic, orthonormal, spans the image of P_l; so(3) generators consistent."""
    l = check_rank(l)
    basis = harmonic_basis(l)
    obj = f"basis_{l}"
    return [
        _timed(
            obj,
            "harmonic (traceless)",
            lambda: all(not laplacian(h) for h in basis.polys),
        ),
        _timed(obj, "orthonormal after 1/sqrt(N)", lambda: _check_orthogonal(basis)),
        _timed(obj, "U^T U == P_l", lambda: _check_spans(basis)),
        _timed(obj, "so(3): antisymmetric, [J_x, J_y] = J_z", lambda: _check_generators(l)),
    ]


def _check_orthogonal(basis: HarmonicBasis) -> bool:
    n = basis.dim
    return all(
        frobenius(basis.polys[a], basis.polys[b]) == (basis.norms[a] if a == b else 0)
        for a in range(n)
        for b in range(n)
    ) and all(v > 0 for v in basis.norms)


def _check_spans(basis: HarmonicBasis) -> bool:
    q = projector_symmetric(basis.l).to_list()
    for j, m in enumerate(monomials(basis.l)):
        u = monomial_poly(m)
        image = basis.combine(basis.coordinates(u))  # sum_m <e_m, u> e_m
        if coordinates(image, basis.l) != [row[j] for row in q]:
            return False
    return True


def _check_generators(l: int) -> tuple[bool, str]:
    norms = harmonic_basis(l).norms
    gens = _generators(l)
    for gm in gens:
        # antisymmetric in the orthonormal basis: A = S M S^{-1} with S = diag(sqrt N)
        for a, b in itertools.product(range(2 * l + 1), repeat=2):
            if gm[a, b] * norms[a] != -gm[b, a] * norms[b]:
                return False, "generator not antisymmetric in the orthonormal basis"
    jx, jy, jz = gens
    if not ((jx.dot(jy) - jy.dot(jx)) == jz).all():
        return False, "[J_x, J_y] != J_z"
    return True, ""


# --------------------------------------------------------------------------- harmonics
def check_harmonic(l: int) -> list[CheckResult]:
    """T_l(n): equals N_l P_l(n^l) (addition theorem), contraction with n^l gives |n|^{2l}, gradient."""
    l = check_rank(l)
    obj = f"T_{l}"
    return [
        _timed(
            obj,
            "compact T_l(n) == N_l P_l(n^l) (closed form)",
            lambda: _check_addition_theorem(l),
        ),
        _timed(
            obj,
            "published: T_l(n) . n^l == |n|^2l",
            lambda: _check_harmonic_norm(l, "published"),
        ),
        _timed(obj, "unit: |T_l(n)|^2 == |n|^2l", lambda: _check_harmonic_norm(l, "unit")),
        _timed(
            obj,
            "gradient == exact difference quotient",
            lambda: _check_harmonic_gradient(l),
        ),
    ]


_RING6, *_V6 = ring("x,y,z,u,v,w", QQ)


def _check_addition_theorem(l: int) -> bool:
    """``sum_m h_m(n) h_m(u)/N_m == harm_u((n.u)^l)`` in QQ[n, u] (scaled by N_l on both sides)."""
    basis = harmonic_basis(l)
    n, u = _V6[:3], _V6[3:]

    def lift(p, vars3):
        return _RING6({_place(m, vars3 is u): c for m, c in p.items()})

    left = sum(
        (lift(h, n) * lift(h, u) * (1 / nm) for h, nm in zip(basis.polys, basis.norms)),
        _RING6.zero,
    )
    # closed-form detracer in u applied to (n.u)^l
    p = (n[0] * u[0] + n[1] * u[1] + n[2] * u[2]) ** l
    right, term = p, p
    ru = u[0] ** 2 + u[1] ** 2 + u[2] ** 2
    for m in range(1, l // 2 + 1):
        term = sum((term.diff(x).diff(x) for x in u), _RING6.zero)
        coeff = QQ((-1) ** m * _dfact(2 * l - 2 * m - 1), _dfact(2 * l - 1) * 2**m * _fact(m))
        right += coeff * term * ru**m
    return left == right


def _place(m: tuple[int, int, int], second: bool) -> tuple[int, ...]:
    return (0, 0, 0) + tuple(m) if second else tuple(m) + (0, 0, 0)


def _dfact(n: int) -> int:
    return 1 if n <= 1 else n * _dfact(n - 2)


def _fact(n: int) -> int:
    return 1 if n <= 1 else n * _fact(n - 1)


def _check_harmonic_norm(l: int, normalization: str) -> bool:
    t = cartesian_harmonic(l, normalization, "compact")
    x, y, z = SYMBOLS
    r2l = (x**2 + y**2 + z**2) ** l
    if normalization == "published":
        en = cartesian_harmonic(l, "published", "compact")  # e_m(n) = T_m / N_l
        total = sum(t[m] * en[m] for m in range(2 * l + 1)) / harmonic_normalization(l, "published")
    else:
        total = sum(t[m] ** 2 for m in range(2 * l + 1))
    return sympy.expand(total - r2l) == 0


def _check_harmonic_gradient(l: int) -> bool:
    t = cartesian_harmonic(l, "published", "compact")
    grad = cartesian_harmonic_gradient(l, "published", "compact")
    eps = sympy.Symbol("eps")
    for a in range(3):
        shift = {s: s + (eps if i == a else 0) for i, s in enumerate(SYMBOLS)}
        for m in range(2 * l + 1):
            diff = sympy.expand(t[m].subs(shift, simultaneous=True) - t[m])
            if sympy.expand(diff.coeff(eps, 1) - grad[m, a]) != 0:
                return False
    return True


# --------------------------------------------------------------------------- couplings
def check_coupling(cpl: Coupling, full_layout: bool = True) -> list[CheckResult]:
    """All exact checks of one coupling (its table and its normalisation)."""
    l1, l2, l3 = cpl.l1, cpl.l2, cpl.l3
    obj = f"C({l1},{l2},{l3}) {cpl.parity} {cpl.normalization}"
    sign = 1 if cpl.parity == "even" else -1
    out = [
        _timed(obj, "selection: non-zero on the triangle", lambda: not _all_zero(cpl.table)),
        _timed(obj, "so(3): C(Jx,y) + C(x,Jy) == J C(x,y)", lambda: _check_lie(cpl)),
        _timed(
            obj,
            "SO(3): exact Cayley rotations",
            lambda: _check_group(cpl, ROTATIONS, 1),
        ),
        _timed(
            obj,
            f"O(3): inversion/mirror with sign {sign:+d}",
            lambda: _check_group(cpl, IMPROPER, sign),
        ),
        _timed(
            obj,
            f"O(3): wrong sign {-sign:+d} fails",
            lambda: _check_wrong_sign(cpl, -sign),
        ),
        _timed(
            obj,
            f"normalisation '{cpl.normalization}'",
            lambda: _check_normalization(cpl),
        ),
        _timed(obj, "C == c * Wigner-3j (sympy), c exact", lambda: _check_wigner(cpl)),
    ]
    if full_layout and l1 + l2 + l3 <= FULL_LAYOUT_MAX_TOTAL:
        out.append(
            _timed(
                obj,
                "full layout: literal contraction == compact table",
                lambda: _check_full_contraction(cpl),
            )
        )
    return out


def _check_lie(cpl: Coupling) -> tuple[bool, str]:
    r = cpl.table
    for axis, (m1, m2, m3) in enumerate(zip(*(_generators(l) for l in (cpl.l1, cpl.l2, cpl.l3)))):
        lhs = np.tensordot(m1, r, axes=([0], [0])) + np.tensordot(m2, r, axes=([0], [1])).transpose(1, 0, 2)
        rhs = np.tensordot(r, m3, axes=([2], [1]))
        if not _all_zero(lhs - rhs):
            return False, f"fails for generator {'xyz'[axis]}"
    return True, ""


def _group_sides(cpl: Coupling, name: str) -> tuple[np.ndarray, np.ndarray]:
    d1, d2, d3 = (_representation(l, name) for l in (cpl.l1, cpl.l2, cpl.l3))
    r = cpl.table
    lhs = np.tensordot(np.tensordot(d1, r, axes=([0], [0])), d2, axes=([1], [0])).transpose(0, 2, 1)
    rhs = np.tensordot(r, d3, axes=([2], [1]))
    return lhs, rhs


def _check_group(cpl: Coupling, group: dict, sign: int) -> tuple[bool, str]:
    for name, g in group.items():
        det = determinant(g)
        expected = sign if det < 0 else 1
        lhs, rhs = _group_sides(cpl, name)
        if not _all_zero(lhs - expected * rhs):
            return False, f"fails for {name}"
    return True, ""


def _check_wrong_sign(cpl: Coupling, wrong: int) -> tuple[bool, str]:
    lhs, rhs = _group_sides(cpl, "inversion")
    if _all_zero(lhs - wrong * rhs):
        return False, "the opposite parity sign also holds (coupling is zero?)"
    return True, ""


UNIT_VECTORS = ((QQ(2, 7), QQ(3, 7), QQ(6, 7)), (QQ(-1, 9), QQ(4, 9), QQ(8, 9)))


def _check_normalization(cpl: Coupling) -> tuple[bool, str]:
    if cpl.normalization == "unit":
        total = sum((abs(v) for v in cpl.signed_squares().ravel()), QQ(0))
        return total == 1, f"sum C^2 = {total}"
    if cpl.normalization == "raw" or cpl.parity == "odd":
        if cpl.scale != 1:
            return False, "scale != 1"
        if cpl.parity == "even":
            return True, "C' = 1"
    scale = QQ(int(sympy.Rational(cpl.scale).p), int(sympy.Rational(cpl.scale).q))
    for n in UNIT_VECTORS:
        z = apply_table(cpl.table, harmonic_coordinates(cpl.l1, n), harmonic_coordinates(cpl.l2, n))
        z = [scale * v for v in z]
        target = [QQ(0)] * len(z) if cpl.parity == "odd" else harmonic_coordinates(cpl.l3, n)
        if z != target:
            what = "vanish on equal vectors" if cpl.parity == "odd" else f"give T_{cpl.l3}(n)"
            return False, f"T(n) x T(n) does not {what} for n = {n}"
    return True, f"C' = {cpl.scale}"


def _check_wigner(cpl: Coupling) -> tuple[bool, str]:
    c2 = proportionality(cpl.signed_squares(), real_wigner_3j_signed_squares(cpl.l1, cpl.l2, cpl.l3))
    if c2 is None:
        return False, "not proportional"
    if cpl.normalization == "unit" and abs(c2) != 1:
        return False, f"unit coupling should be +-W, got c^2 = {c2}"
    return True, f"c = {'-' if c2 < 0 else ''}sqrt({abs(c2)})"


def _check_full_contraction(cpl: Coupling) -> tuple[bool, str]:
    """Contract the full-layout basis tensors index by index (Levi-Civita when odd) and project.

    ``R[m1, m2, m3] = <h_m3, A(h_m1, h_m2)>_F / N_m3`` must equal the table, and the full coupling
    tensor applied to the basis inputs must reproduce ``sum_m3 R h_m3`` (symmetric, traceless).
    """
    l1, l2, l3 = cpl.l1, cpl.l2, cpl.l3
    b1, b2, b3 = (harmonic_basis(l) for l in (l1, l2, l3))
    k, odd = (l1 + l2 - l3) // 2, (l1 + l2 - l3) % 2 == 1
    eps = _levi_civita()
    flat3 = np.array([t.ravel() for t in b3.full_tensors], dtype=object)
    full = cpl.full_rational().reshape(3**l1, 3**l2, 3**l3) if l1 + l2 + l3 <= 8 else None
    for a, x in enumerate(b1.full_tensors):
        for b, y in enumerate(b2.full_tensors):
            if odd:  # A_{.. c ..} = eps_{cab} x_{.. K a} y_{K b ..}
                xy = (
                    np.tensordot(x, y, axes=(list(range(l1 - k - 1, l1 - 1)), list(range(k))))
                    if k
                    else np.multiply.outer(x, y)
                )
                # axes of xy: x free (l1-k-1), a, b, y free (l2-k-1)
                xy = np.moveaxis(xy, [l1 - k - 1, l1 - k], [0, 1])
                prod = np.tensordot(eps, xy, axes=([1, 2], [0, 1]))  # c, x free, y free
                prod = np.moveaxis(prod, 0, l1 - k - 1)
            else:
                prod = np.tensordot(x, y, axes=(list(range(l1 - k, l1)), list(range(k))))
            prod = np.asarray(prod, dtype=object).ravel()
            # Frobenius product over all 3^l3 entries; h_m3 is symmetric traceless, so P_l3 is implied
            coords = [flat3[c].dot(prod) / n for c, n in enumerate(b3.norms)]
            if coords != list(cpl.table[a, b]):
                return False, f"table differs at (m1, m2) = ({a - l1}, {b - l2})"
            if full is not None:
                applied = np.tensordot(
                    np.tensordot(x.ravel(), full, axes=([0], [0])),
                    y.ravel(),
                    axes=([0], [0]),
                )
                expected = sum(
                    (cpl.table[a, b, c] * flat3[c] for c in range(b3.dim)),
                    np.zeros(3**l3, dtype=object),
                )
                if not (applied == expected).all():
                    return False, "full coupling tensor differs from the table"
    return True, ""


@cache
def _levi_civita() -> np.ndarray:
    eps = np.full((3, 3, 3), QQ(0), dtype=object)
    for (i, j, k), s in zip(itertools.permutations(range(3)), (1, -1, -1, 1, 1, -1)):
        eps[i, j, k] = QQ(s)
    return eps


# --------------------------------------------------------------------------- selection rule
def check_selection_rule(l1: int, l2: int, l3: int) -> CheckResult:
    """Dimension of all so(3)-equivariant bilinear maps l1 x l2 -> l3: 1 on the triangle, else 0."""
    expected = 1 if abs(l1 - l2) <= l3 <= l1 + l2 else 0

    def run() -> tuple[bool, str]:
        g1, g2, g3 = (_generators(l) for l in (l1, l2, l3))
        n1, n2, n3 = 2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1
        rows = []
        for m1, m2, m3 in zip(g1, g2, g3):
            # linear map R -> M1^T.R + R.M2 - M3.R on the flattened unknown R[a, b, c]
            e1 = np.kron(np.kron(m1.T, np.eye(n2, dtype=int)), np.eye(n3, dtype=int))
            e2 = np.kron(np.kron(np.eye(n1, dtype=int), m2.T), np.eye(n3, dtype=int))
            e3 = np.kron(np.kron(np.eye(n1, dtype=int), np.eye(n2, dtype=int)), m3)
            rows.extend((e1 + e2 - e3).tolist())
        mat = DomainMatrix([[QQ(v) for v in row] for row in rows], (len(rows), n1 * n2 * n3), QQ)
        dim = n1 * n2 * n3 - mat.rank()
        return dim == expected, f"dimension {dim}"

    return _timed(f"({l1},{l2},{l3})", f"selection rule: {expected} invariant(s)", run)


# --------------------------------------------------------------------------- driver
def mutated(cpl: Coupling) -> Coupling:
    """A copy of ``cpl`` with its first non-zero coefficient off by one part in a thousand."""
    table = cpl.table.copy()
    idx = next(i for i, v in np.ndenumerate(table) if v)
    table[idx] = table[idx] * QQ(1001, 1000)
    return cpl.with_table(table)


def _entries(
    lmax: int, layout: str = "both", mutate: tuple[int, int, int] | None = None
) -> Iterator[tuple[int, str, Callable[[], list[CheckResult]]]]:
    """``(rank, label, thunk)`` of every check group in plan order; rank is the largest l involved."""
    lmax = check_rank(lmax, "lmax")
    full = layout in ("both", "full")
    for l in range(lmax + 1):
        yield l, f"P_{l}", lambda l=l: check_projector(l)
        yield l, f"basis_{l}", lambda l=l: check_basis(l)
        yield l, f"T_{l}", lambda l=l: check_harmonic(l)
    sel = min(lmax, SELECTION_RULE_L)
    for l1, l2, l3 in itertools.product(range(sel + 1), repeat=3):
        yield (
            max(l1, l2, l3),
            f"selection ({l1},{l2},{l3})",
            lambda t=(l1, l2, l3): [check_selection_rule(*t)],
        )
    for t in triples(lmax):
        for norm in ("unit", "published"):

            def thunk(t=t, norm=norm) -> list[CheckResult]:
                cpl = derive_coupling(*t, norm)
                return check_coupling(mutated(cpl) if t == mutate else cpl, full and norm == "unit")

            yield max(t), f"C{t} {norm}", thunk
    yield from _product_basis_groups(lmax)


def _product_basis_groups(lmax: int) -> Iterator[tuple[int, str, Callable[[], list[CheckResult]]]]:
    """The generated product-basis tables with ranks <= ``lmax`` (see :mod:`.symbolic.product_basis`)."""
    from .generator.product_basis import PRODUCT_BASIS_CONFIGS, derived_tables
    from .symbolic.product_basis import check_product_basis

    for key, pb in derived_tables(tuple(c for c in PRODUCT_BASIS_CONFIGS if c[0] <= lmax)).items():
        obj = f"Pi(L={key[2]},nu={key[3]},{key[4]}) {len(pb.a_keys)}->{len(pb.basis)} keys"

        def thunk(pb=pb, obj=obj) -> list[CheckResult]:
            start = time.perf_counter()
            checks = check_product_basis(pb)
            secs = (time.perf_counter() - start) / len(checks)
            return [CheckResult(obj, name, ok, secs, detail) for name, ok, detail in checks]

        yield key[2], f"product basis {key[2:]}", thunk


def plan(
    lmax: int, layout: str = "both", mutate: tuple[int, int, int] | None = None
) -> Iterator[tuple[str, Callable[[], list[CheckResult]]]]:
    """Yield ``(label, thunk)`` for every check group up to ``lmax``.

    ``mutate=(l1, l2, l3)`` corrupts one coefficient of that product (see :func:`mutated`).
    """
    for _, label, thunk in _entries(lmax, layout, mutate):
        yield label, thunk


def run(
    lmax: int,
    layout: str = "both",
    progress: Callable[[int, int, str], None] | None = None,
    mutate: tuple[int, int, int] | None = None,
    on_rank: Callable[[int, int, int, float], None] | None = None,
) -> list[CheckResult]:
    """Run every check up to ``lmax`` and return the results in plan order.

    The groups run rank by rank (rank = largest l of the group), so the cheap low ranks finish first:
    ``progress(done, total, label)`` is called after each group and ``on_rank(l, checks, failed, seconds)``
    once all groups of rank l are done (``seconds``: time spent on that rank).
    """
    lmax = check_rank(lmax, "lmax")
    if mutate is not None:
        mutate = check_triple(*mutate)
        if max(mutate) > lmax:
            raise ValueError(f"--mutate {mutate} is beyond --lmax {lmax}")
    entries = list(_entries(lmax, layout, mutate))
    order = sorted(range(len(entries)), key=lambda i: entries[i][0])  # stable: plan order within a rank
    by_index: list[list[CheckResult]] = [[] for _ in entries]
    done, start, checks, failed = 0, time.perf_counter(), 0, 0
    for pos, i in enumerate(order):
        rank, label, thunk = entries[i]
        by_index[i] = thunk()
        checks += len(by_index[i])
        failed += sum(not r.ok for r in by_index[i])
        done += 1
        if progress:
            progress(done, len(entries), label)
        last_of_rank = pos + 1 == len(order) or entries[order[pos + 1]][0] != rank
        if last_of_rank:
            if on_rank:
                on_rank(rank, checks, failed, time.perf_counter() - start)
            start, checks, failed = time.perf_counter(), 0, 0
    return [r for results in by_index for r in results]


def as_dicts(results: list[CheckResult]) -> list[dict]:
    return [asdict(r) for r in results]
