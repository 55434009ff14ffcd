"""Test helpers for code built on cartesian-irreps: O(3) equivariance, VJPs, fast path against reference.

Three assertions, in the spirit of the helpers e3nn ships (``e3nn.util.test``), for NumPy or CuPy code:

* :func:`assert_equivariant` checks ``fn(Q . x) = Q . fn(x)`` for random proper rotations and for improper
  ones (inversion, a mirror, rotoreflections), where a rank-l tensor of parity p transforms as

      (Q . x)_{i1..il} = det(Q)^p Q_{i1 j1} ... Q_{il jl} x_{j1..jl}          (full layout, 3^l entries)
      Q . x = det(Q)^p D_l(Q) x,   D_l(Q) = U Q^{(x)l} U^T                       (compact layout, 2l+1 entries)

  with ``U`` the orthonormal full -> compact map of :mod:`cartesian_irreps.runtime.layouts`
  (``to_compact``/``to_full``); parity 1 marks a pseudotensor (sign flip under improper Q);
* :func:`assert_vjp` checks a vector-Jacobian product ``u -> J^T v`` against central finite differences
  ``<v, J u> ~ (<v, f(x + eps u)> - <v, f(x - eps u)>) / (2 eps)`` in float64, i.e. the adjoint identity
  ``<J u, v> = <u, J^T v>``, and, given a JVP, the same identity exactly;
* :func:`assert_matches_reference` compares a fast path with a reference and names the worst entry.

Everything is deterministic (random draws come from a ``numpy.random.Generator``, seed 0 unless given;
the global NumPy RNG is never touched), float32 and float64 both work, CuPy arrays are accepted (the array
module comes from :mod:`cartesian_irreps.runtime.backend`), and SymPy is not imported. Failures raise
``AssertionError`` with a message that says which transformation, which output and how large the error is.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._validate import LAYOUTS, check_choice, check_rank
from .runtime.backend import array_module, module_for_device, to_host
from .runtime.layouts import to_compact, to_full

__all__ = [
    "DEFAULT_RTOL",
    "assert_equivariant",
    "assert_matches_reference",
    "assert_vjp",
    "random_orthogonal",
    "representation",
    "transform",
]

#: Default relative tolerance per dtype (relative to the largest magnitude of the compared output).
DEFAULT_RTOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-10}


# --------------------------------------------------------------------------- small utilities
def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A Generator from ``rng`` (a Generator, an int seed, or None for seed 0); never the global RNG."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}")
    return np.random.default_rng(int(rng))


def _per_item(value: Any, n: int, what: str) -> list:
    """``value`` repeated n times when scalar-like, else checked to have length n."""
    if isinstance(value, (numbers.Integral, str)) or value is None:
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise ValueError(f"{what} has {len(items)} entries; expected {n}")
    return items


def _ranks(ranks: int | Sequence[int], what: str) -> tuple[list[int], bool]:
    """(list of ranks, whether a single rank was given)."""
    if isinstance(ranks, numbers.Integral):
        return [check_rank(ranks, what)], True
    return [check_rank(r, what) for r in ranks], False


def _outputs(result: Any, n: int, single: bool, what: str) -> list[Any]:
    if single:
        if isinstance(result, (list, tuple)):
            raise AssertionError(f"{what} returned a {type(result).__name__} of {len(result)}; expected one array")
        return [result]
    if not isinstance(result, (list, tuple)) or len(result) != n:
        got = f"{type(result).__name__} of {len(result)}" if isinstance(result, (list, tuple)) else "one array"
        raise AssertionError(f"{what} returned {got}; expected a sequence of {n} arrays")
    return list(result)


def _dims(l: int, layout: str) -> tuple[int, ...]:
    return (2 * l + 1,) if layout == "compact" else (3,) * l


def _rtol(rtol: float | None, dtype: Any) -> float:
    return float(DEFAULT_RTOL.get(np.dtype(dtype), 1e-10) if rtol is None else rtol)


def _fmt_matrix(g: np.ndarray) -> str:
    text = np.array2string(np.asarray(g, dtype=np.float64) + 0.0, precision=4, suppress_small=True, separator=", ")
    return text.replace("\n", "")


# --------------------------------------------------------------------------- O(3) actions
def random_orthogonal(rng: np.random.Generator | int | None = None, improper: bool = False) -> np.ndarray:
    """A Haar-random rotation (det +1), or ``-R`` (a rotoreflection, det -1) when ``improper``; (3, 3) float64."""
    gen = _generator(rng)
    q, r = np.linalg.qr(gen.standard_normal((3, 3)))
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if improper else q


def _check_orthogonal(g: Any) -> np.ndarray:
    g = np.asarray(to_host(g), dtype=np.float64)
    if g.shape != (3, 3) or not np.allclose(g @ g.T, np.eye(3), atol=1e-10):
        raise ValueError(f"g must be an orthogonal 3x3 matrix, got {_fmt_matrix(g)}")
    return g


def _rotate_full(a: np.ndarray, l: int, g: np.ndarray) -> np.ndarray:
    """Apply g to each of the last l axes: ``a_{..i1..il} -> g_{i1 j1} ... g_{il jl} a_{..j1..jl}``."""
    for k in range(l):
        axis = a.ndim - l + k
        a = np.moveaxis(np.tensordot(a, g, axes=([axis], [1])), -1, axis)
    return a


def representation(g: Any, l: int) -> np.ndarray:
    """``D_l(g) = U g^{(x)l} U^T`` (2l+1, 2l+1) float64: compact coordinates transform as ``x -> D_l(g) x``.

    Built by rotating the full basis tensors ``to_full(e_m)`` index by index and converting back with
    ``to_compact`` (exact up to rounding; ranks up to the generated lmax). No parity sign is included.
    """
    l = check_rank(l)
    g = _check_orthogonal(g)
    basis = to_full(np.eye(2 * l + 1), l)  # row m: the full tensor of e_m
    return to_compact(_rotate_full(basis, l, g), l).T


def _sign(g: np.ndarray, parity: int) -> float:
    return -1.0 if parity % 2 and np.linalg.det(g) < 0 else 1.0


def _apply(host: np.ndarray, l: int, g: np.ndarray, layout: str, parity: int) -> np.ndarray:
    out = host @ representation(g, l).T if layout == "compact" else _rotate_full(host, l, g)
    return _sign(g, parity) * out


def transform(x: Any, l: int, g: Any, *, layout: str = "compact", parity: int = 0) -> Any:
    """``g . x`` for the rank-l tensors in the trailing axes of ``x`` (see the module docstring).

    ``parity=1`` adds the pseudotensor sign ``det(g)``. Computed in float64 on the host; the result has the
    dtype and array module (NumPy/CuPy) of ``x``.
    """
    l = check_rank(l)
    check_choice(layout, LAYOUTS, "layout")
    xp = array_module(x)
    dims = _dims(l, layout)
    if tuple(x.shape[x.ndim - len(dims) :]) != dims or x.ndim < len(dims):
        raise ValueError(f"x has shape {tuple(x.shape)}; its last axes must be {dims} (rank {l}, {layout} layout)")
    out = _apply(to_host(x, np.float64), l, _check_orthogonal(g), layout, int(parity))
    return xp.asarray(out.astype(x.dtype))


def _group(rng: np.random.Generator, rotations: int, reflections: bool) -> list[tuple[str, np.ndarray]]:
    out = [(f"random rotation #{i + 1}", random_orthogonal(rng)) for i in range(rotations)]
    if reflections:
        n = rng.standard_normal(3)
        n /= np.linalg.norm(n)
        out.append(("inversion", -np.eye(3)))
        out.append(("mirror (normal " + _fmt_matrix(n) + ")", np.eye(3) - 2 * np.outer(n, n)))
        out += [(f"random rotoreflection #{i + 1}", random_orthogonal(rng, improper=True)) for i in range(rotations)]
    return out


# --------------------------------------------------------------------------- comparisons
def _worst(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple[bool, float, tuple, float, int]:
    """(ok, max |got - expected|, index of the worst entry, allowed error, entries outside)."""
    same = (np.isnan(got) & np.isnan(expected)) | (np.isinf(got) & (got == expected))
    bad = ~(np.isfinite(got) & np.isfinite(expected)) & ~same
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return False, float("inf"), idx, 0.0, int(bad.sum())
    diff = np.where(same, 0.0, np.abs(np.where(same, 0.0, got) - np.where(same, 0.0, expected)))
    if diff.size == 0:
        return True, 0.0, (), atol, 0
    finite = np.isfinite(expected)
    scale = float(np.abs(expected[finite]).max()) if finite.any() else 0.0
    allowed = atol + rtol * scale
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
    err = float(diff[idx])
    outside = int((diff > allowed).sum())
    return outside == 0, err, idx, allowed, outside


def _check_shape(a: Any, shape: tuple[int, ...], what: str) -> None:
    if tuple(a.shape) != tuple(shape):
        raise AssertionError(f"{what} has shape {tuple(a.shape)}; expected {tuple(shape)}")


# --------------------------------------------------------------------------- equivariance
def assert_equivariant(
    fn: Callable[..., Any],
    ranks_in: int | Sequence[int],
    rank_out: int | Sequence[int],
    *,
    parity_in: int | Sequence[int] = 0,
    parity_out: int | Sequence[int] = 0,
    layout: str = "compact",
    dtype: Any = np.float64,
    batch: Sequence[int] | Sequence[Sequence[int]] = (2, 3),
    inputs: Sequence[Any] | None = None,
    irreducible: bool = True,
    device: str = "numpy",
    rng: np.random.Generator | int | None = None,
    rotations: int = 3,
    reflections: bool = True,
    rtol: float | None = None,
    atol: float = 0.0,
) -> None:
    """Assert ``fn(Q . x1, Q . x2, ...) = Q . fn(x1, x2, ...)`` for random proper and improper Q.

    Args:
        fn: takes one array per input rank, returns one array (``rank_out`` an int) or a sequence of them.
        ranks_in, rank_out: tensor ranks of the inputs and outputs (their last ``2l+1`` compact entries or
            last l axes of 3 in the full layout).
        parity_in, parity_out: 0 (tensor) or 1 (pseudotensor: extra sign ``det Q``), per input/output or one.
        layout: ``'compact'`` (ranks up to the generated lmax) or ``'full'``.
        dtype, batch, device: random inputs of shape ``batch + dims`` (``batch`` may be one shape per input)
            with this dtype on this device (``'numpy'``/``'cupy'``); in the full layout they are symmetric
            traceless unless ``irreducible=False``. ``inputs`` gives the arrays instead.
        rotations: number of random proper rotations; ``reflections`` adds the inversion, a random mirror
            and as many random rotoreflections.
        rtol, atol: pass when ``max |fn(Qx) - Q fn(x)| <= atol + rtol * max |Q fn(x)|`` for every output
            (rtol defaults to :data:`DEFAULT_RTOL` of the dtype).

    Raises:
        AssertionError naming the transformation, the output, the error and its worst entry.
    """
    check_choice(layout, LAYOUTS, "layout")
    if rotations < 0 or (rotations == 0 and not reflections):
        raise ValueError(f"rotations={rotations} with reflections={reflections} tests no transformation")
    lin, _ = _ranks(ranks_in, "ranks_in")
    lout, single = _ranks(rank_out, "rank_out")
    pin = [int(p) for p in _per_item(parity_in, len(lin), "parity_in")]
    pout = [int(p) for p in _per_item(parity_out, len(lout), "parity_out")]
    gen = _generator(rng)
    if inputs is None:
        xp = module_for_device(device)
        common = all(isinstance(b, numbers.Integral) for b in batch)
        shapes = [tuple(batch)] * len(lin) if common else [tuple(b) for b in batch]
        if len(shapes) != len(lin):
            raise ValueError(f"batch has {len(shapes)} shapes; expected one per input ({len(lin)})")
        hosts = []
        for l, lead in zip(lin, shapes):
            if layout == "full" and irreducible and l >= 2:
                hosts.append(to_full(gen.standard_normal(tuple(lead) + (2 * l + 1,)), l))
            else:
                hosts.append(gen.standard_normal(tuple(lead) + _dims(l, layout)))
        xs = [xp.asarray(h.astype(dtype)) for h in hosts]
    else:
        xs = list(inputs)
        if len(xs) != len(lin):
            raise ValueError(f"{len(xs)} inputs given for {len(lin)} input ranks")
        xp = array_module(*xs)
    for i, (x, l) in enumerate(zip(xs, lin)):
        dims = _dims(l, layout)
        if x.ndim < len(dims) or tuple(x.shape[x.ndim - len(dims) :]) != dims:
            raise ValueError(f"input {i} has shape {tuple(x.shape)}; its last axes must be {dims} (rank {l})")
    hosts = [to_host(x, np.float64) for x in xs]
    outs = [to_host(o, np.float64) for o in _outputs(fn(*xs), len(lout), single, "fn")]
    tol = _rtol(rtol, xs[0].dtype)
    for k, (o, l) in enumerate(zip(outs, lout)):
        if not np.isfinite(o).all():
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(o))[0])
            raise AssertionError(f"output {k} of fn(x) contains NaN or infinity (first at index {idx})")
        dims = _dims(l, layout)
        if o.ndim < len(dims) or tuple(o.shape[o.ndim - len(dims) :]) != dims:
            raise AssertionError(f"output {k} has shape {tuple(o.shape)}; expected last axes {dims} (rank {l})")
    for name, g in _group(gen, rotations, reflections):
        moved = [xp.asarray(_apply(h, l, g, layout, p).astype(x.dtype)) for h, l, p, x in zip(hosts, lin, pin, xs)]
        got = [to_host(o, np.float64) for o in _outputs(fn(*moved), len(lout), single, "fn")]
        for k, (a, o, l, p) in enumerate(zip(got, outs, lout, pout)):
            _check_shape(a, o.shape, f"output {k} of fn(Q x)")
            expected = _apply(o, l, g, layout, p)
            ok, err, idx, allowed, outside = _worst(a, expected, tol, atol)
            if ok:
                continue
            det = int(round(np.linalg.det(g)))
            hint = ""
            if det < 0 and _worst(a, -expected, tol, atol)[0]:
                hint = f"; it holds with the opposite sign: the output looks like parity {1 - p % 2}, not {p}"
            raise AssertionError(
                f"fn is not equivariant under {name} (det {det:+d}) Q = {_fmt_matrix(g)}: output {k} "
                f"(rank {l}, parity {p}, {layout} layout): max |fn(Q x) - Q fn(x)| = {err:.3e} at index {idx} "
                f"(got {a[idx]:.6g}, expected {expected[idx]:.6g}) > {allowed:.3e} = atol + rtol*max|Q fn(x)| "
                f"(rtol {tol:g}, atol {atol:g}); {outside} of {a.size} entries outside{hint}"
            )


# --------------------------------------------------------------------------- VJP
def _dot(a: Any, b: Any) -> float:
    return float(to_host((a * b).sum()))


def _abs_dot(a: Any, b: Any) -> float:
    xp = array_module(a, b)
    return float(to_host(xp.abs(a * b).sum()))


def _structure(out: list[Any], single: bool) -> Any:
    return out[0] if single else tuple(out)


def assert_vjp(
    fn: Callable[..., Any],
    vjp_fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    jvp_fn: Callable[..., Any] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    adjoint_rtol: float | None = None,
    directions: int = 3,
    rng: np.random.Generator | int | None = None,
) -> None:
    """Assert that ``vjp_fn(v, *inputs)`` is ``J^T v`` for the Jacobian J of ``fn`` at ``inputs``.

    ``fn(*inputs)`` returns one array or a sequence; ``v`` has the same structure; ``vjp_fn`` returns one
    gradient per input (a bare array when there is one input), each of that input's shape. The inputs are cast
    to float64 (on their own device). For each of ``directions`` random pairs (v, u) and for each input i
    separately, the central difference with step ``eps``

        fd_i = (<v, f(.., x_i + eps u_i, ..)> - <v, f(.., x_i - eps u_i, ..)>) / (2 eps)  ~ <v, J_i u_i>

    must equal ``<J_i^T v, u_i>`` within ``atol + rtol * sum |J_i^T v * u_i|`` plus the rounding error of the
    difference, ``64 eps_64 (sum |v f(x+)| + sum |v f(x-)|) / (2 eps)`` (the adjoint identity with the Jacobian
    measured by finite differences). With ``jvp_fn(tangents, *inputs)`` (tangents: one per input;
    returns the structure of fn's output) the identity ``<v, J_i u_i> = <J_i^T v, u_i>`` is also checked for
    each input, within ``atol + adjoint_rtol * sum |J_i^T v * u_i|`` (``adjoint_rtol`` defaults to ``rtol``; both sides
    are exact there, so it may be much tighter).
    """
    xs = [x.astype(np.float64) for x in inputs]
    if not xs:
        raise ValueError("assert_vjp needs at least one input")
    if directions < 1 or not eps > 0:
        raise ValueError(f"assert_vjp needs directions >= 1 and eps > 0, got directions={directions}, eps={eps}")
    xp = array_module(*xs)
    gen = _generator(rng)
    base = fn(*xs)
    single = not isinstance(base, (list, tuple))
    outs = _outputs(base, 1 if single else len(base), single, "fn")

    def project(v: list[Any], args: list[Any]) -> tuple[float, float]:
        """(<v, f(args)>, sum |v * f(args)|): the value and the size of its terms (for the rounding error)."""
        res = _outputs(fn(*args), len(outs), single, "fn")
        return sum(_dot(a, b) for a, b in zip(res, v)), sum(_abs_dot(a, b) for a, b in zip(res, v))

    for d in range(directions):
        v = [xp.asarray(gen.standard_normal(tuple(o.shape))) for o in outs]
        us = [xp.asarray(gen.standard_normal(tuple(x.shape))) for x in xs]
        grads = vjp_fn(_structure(v, single), *xs)
        grads = [grads] if len(xs) == 1 and not isinstance(grads, (list, tuple)) else list(grads)
        if len(grads) != len(xs):
            raise AssertionError(f"vjp_fn returned {len(grads)} gradients for {len(xs)} inputs")
        for i, (g, x, u) in enumerate(zip(grads, xs, us)):
            _check_shape(g, x.shape, f"gradient {i} from vjp_fn")
            plus = [x + eps * u if j == i else y for j, y in enumerate(xs)]
            minus = [x - eps * u if j == i else y for j, y in enumerate(xs)]
            (p_val, p_size), (m_val, m_size) = project(v, plus), project(v, minus)
            fd = (p_val - m_val) / (2 * eps)
            an = _dot(g, u)
            rounding = 64 * np.finfo(np.float64).eps * (p_size + m_size) / (2 * eps)  # what FD cannot resolve
            allowed = atol + rtol * max(_abs_dot(g, u), abs(fd)) + rounding
            if not abs(fd - an) <= allowed:
                ratio = f"{an / fd:.6g}" if fd else "inf"
                raise AssertionError(
                    f"VJP of input {i} (shape {tuple(x.shape)}) disagrees with central finite differences "
                    f"(direction {d + 1}, eps {eps:g}): <J^T v, u> = {an:.10g}, FD <v, J u> = {fd:.10g}, "
                    f"|diff| = {abs(fd - an):.3e} > {allowed:.3e} (rtol {rtol:g}, atol {atol:g}); ratio {ratio}"
                )
        if jvp_fn is None:
            continue
        arel = rtol if adjoint_rtol is None else adjoint_rtol
        for i, (g, u) in enumerate(zip(grads, us)):
            tangents = tuple(u if j == i else xp.zeros_like(x) for j, x in enumerate(xs))
            jv = _outputs(jvp_fn(tangents, *xs), len(outs), single, "jvp_fn")
            lhs, rhs = sum(_dot(a, b) for a, b in zip(jv, v)), _dot(g, u)
            allowed = atol + arel * max(_abs_dot(g, u), abs(lhs))
            if not abs(lhs - rhs) <= allowed:
                raise AssertionError(
                    f"adjoint identity fails for input {i} (direction {d + 1}): <v, J u> = {lhs:.12g} from jvp_fn "
                    f"but <J^T v, u> = {rhs:.12g} from vjp_fn; |diff| = {abs(lhs - rhs):.3e} > {allowed:.3e}"
                )


# --------------------------------------------------------------------------- reference
def assert_matches_reference(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    *inputs: Any,
    rtol: float | None = None,
    atol: float = 0.0,
) -> None:
    """Assert ``fn(*inputs)`` equals ``reference(*inputs)`` entry by entry.

    Both return one array or sequences of the same length; shapes must agree. Passes when every entry obeys
    ``|fast - ref| <= atol + rtol * max |ref|`` (rtol defaults to :data:`DEFAULT_RTOL` of the fast output's
    dtype); NaN or infinity where the reference is finite fails. The message names the output, the worst
    entry (index, both values) and how many entries are outside.
    """
    fast = fn(*inputs)
    ref = reference(*inputs)
    single = not isinstance(fast, (list, tuple))
    fasts = _outputs(fast, 1 if single else len(fast), single, "fn")
    refs = _outputs(ref, len(fasts), single, "reference")
    for k, (a, b) in enumerate(zip(fasts, refs)):
        _check_shape(a, b.shape, f"output {k} of fn (the reference's)")
        tol = _rtol(rtol, a.dtype)
        ha, hb = to_host(a, np.float64), to_host(b, np.float64)
        ok, err, idx, allowed, outside = _worst(ha, hb, tol, atol)
        if not ok:
            raise AssertionError(
                f"output {k} differs from the reference: worst entry at index {idx}: got {ha[idx]:.10g}, "
                f"reference {hb[idx]:.10g}, |diff| = {err:.3e} > {allowed:.3e} = atol + rtol*max|ref| "
                f"(rtol {tol:g}, atol {atol:g}); {outside} of {ha.size} entries outside"
            )
