"""Tensor products l1 x l2 -> l3 and their vector-Jacobian products on NumPy or CuPy.

Shapes (compact layout; in the full layout every trailing ``2l+1`` becomes ``(3,)*l``):

======================  ==========================  ==========================  ======================
``shared``              x                           y                           z
======================  ==========================  ==========================  ======================
``None`` (channelwise)  ``(..., C, 2l1+1)``         ``(..., C, 2l2+1)``         ``(..., C, 2l3+1)``
``"y"``                 ``(..., C, 2l1+1)``         ``(..., 2l2+1)``            ``(..., C, 2l3+1)``
``"x"``                 ``(..., 2l1+1)``            ``(..., C, 2l2+1)``         ``(..., C, 2l3+1)``
======================  ==========================  ==========================  ======================

``z_k = sum_ij C[i, j, k] x_i y_j`` with the coupling of :mod:`cartesian_irreps.symbolic.coupling`
(normalisation ``'unit'``, ``'published'`` or ``'raw'``); odd products (``l1+l2-l3`` odd) are the
Levi-Civita products. The batch axes ``...`` of x and y must be equal.

Every call maps onto one of three contraction kinds (:mod:`.contractions`) with a slot-permuted
coupling; the strategy of each comes from the generated plans.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .._validate import LAYOUTS, check_choice, check_triple, parity_of
from . import contractions, plan_lookup, tables
from .backend import array_module, as_float_array, check_finite, check_trailing, common_dtype

SHARED = (None, "x", "y")

# (kind, permutation of the original slots (0: x, 1: y, 2: z) into (a, b, out), operand roles)
_FORWARD = {
    None: ("pair", (0, 1, 2), ("x", "y")),
    "y": ("shared", (0, 1, 2), ("x", "y")),
    "x": ("shared", (1, 0, 2), ("y", "x")),
}
_VJP = {
    (None, "x"): ("pair", (2, 1, 0), ("g", "y")),
    (None, "y"): ("pair", (0, 2, 1), ("x", "g")),
    ("y", "x"): ("shared", (2, 1, 0), ("g", "y")),
    ("y", "y"): ("reduce", (0, 2, 1), ("x", "g")),
    ("x", "x"): ("reduce", (1, 2, 0), ("y", "g")),
    ("x", "y"): ("shared", (2, 0, 1), ("g", "x")),
}


def _dim(l: int, layout: str) -> tuple[int, ...]:
    return (2 * l + 1,) if layout == "compact" else (3,) * l


def _validate(
    x: Any, y: Any, l1: int, l2: int, l3: int, layout: str, normalization: str, shared: Any, finite: bool
) -> tuple[ModuleType, np.dtype, tuple[int, ...], int]:
    l1, l2, l3 = check_triple(l1, l2, l3)
    check_choice(layout, LAYOUTS, "layout")
    check_choice(normalization, tables.COUPLING_NORMALIZATIONS, "normalisation")
    if shared not in SHARED:
        raise ValueError(f"unknown shared={shared!r}; expected None, 'x' or 'y'")
    xp = array_module(x, y)
    as_float_array(x, "x", xp)
    as_float_array(y, "y", xp)
    dtype = common_dtype({"x": x, "y": y})
    dx, dy = _dim(l1, layout), _dim(l2, layout)
    check_trailing(x, "x", dx, f"rank {l1} in the {layout} layout")
    check_trailing(y, "y", dy, f"rank {l2} in the {layout} layout")
    xb = x.shape[: x.ndim - len(dx)]
    yb = y.shape[: y.ndim - len(dy)]
    if shared is None:
        if len(xb) < 1 or xb != yb:
            raise ValueError(
                f"x batch+channel axes {xb} and y batch+channel axes {yb} must be equal (at least a channel axis)"
            )
        batch, channels = xb[:-1], xb[-1]
    elif shared == "y":
        if len(xb) < 1 or xb[:-1] != yb:
            raise ValueError(f"x axes {xb} must be y's batch axes {yb} plus one channel axis")
        batch, channels = yb, xb[-1]
    else:
        if len(yb) < 1 or yb[:-1] != xb:
            raise ValueError(f"y axes {yb} must be x's batch axes {xb} plus one channel axis")
        batch, channels = xb, yb[-1]
    if finite:
        check_finite(xp, {"x": x, "y": y})
    return xp, dtype, batch, channels


def _flat(a: Any, batch: tuple[int, ...], channels: int | None, width: int) -> Any:
    """``a`` as ``(n, channels, width)`` (``(n, width)`` when ``channels`` is None), ``n = prod(batch)``.

    The sizes are explicit, so an empty batch (``n = 0``) or no channels reshape too.
    """
    n = int(np.prod(batch, dtype=np.int64)) if batch else 1
    return a.reshape((n, width) if channels is None else (n, channels, width))


def _channels_of(name: str, shared: str | None, channels: int) -> int | None:
    """The channel count of input ``name`` (``None`` for the shared input, which has no channel axis)."""
    return None if shared == name else channels


def _to_compact(a: Any, l: int, xp: ModuleType) -> Any:
    """Full ``(..., 3, ..., 3)`` (l trailing axes) -> compact ``(..., 2l+1)`` of ICTs: ``a @ U^T`` (U = 1, l <= 1)."""
    a = a.reshape(a.shape[: a.ndim - l] + (3**l,))
    return a if l <= 1 else a @ tables.to_compact_matrix(l, a.dtype, xp)


def _to_full(a: Any, l: int, xp: ModuleType) -> Any:
    return a if l <= 1 else a @ tables.to_full_matrix(l, a.dtype, xp)


def _run(kind, perm, triple, normalization, u, v, xp, strategy):
    cp = tables.coupling_arrays(*triple, normalization, perm, u.dtype, xp)
    key = tuple((d - 1) // 2 for d in cp.dims)
    chosen, path = plan_lookup.compact(kind, key, strategy)
    return contractions.contract(kind, chosen, cp, u, v, xp, path)


def contract_kind(
    kind: str,
    triple: tuple[int, int, int],
    perm: tuple[int, int, int],
    u: Any,
    v: Any,
    normalization: str = "unit",
    strategy: str | None = None,
) -> Any:
    """One contraction kind on flat operands with the coupling of ``triple`` permuted by ``perm``.

    ``u`` is ``(n, C, A)``, ``v`` is ``(n, C, B)`` (``(n, B)`` for kind ``'shared'``), where A, B are the
    sizes of the slots ``perm[0]``, ``perm[1]`` of the coupling; the result is ``(n, C, K)`` (or ``(n, K)``
    for ``'reduce'``). This is the building block of the products, of their VJPs and of autodiff ops.
    """
    check_triple(*triple)
    if kind not in contractions.KINDS:
        raise ValueError(f"unknown contraction kind {kind!r}; expected one of {contractions.KINDS}")
    xp = array_module(u, v)
    return _run(kind, tuple(perm), tuple(triple), normalization, u, v, xp, strategy)


def tensor_product(
    x: Any,
    y: Any,
    l1: int,
    l2: int,
    l3: int,
    *,
    layout: str = "compact",
    normalization: str = "unit",
    shared: str | None = None,
    check_nan: bool = False,
    strategy: str | None = None,
) -> Any:
    """The product ``z = x (x) y -> l3`` (see the module docstring for shapes).

    Args:
        x, y: float32 or float64 NumPy or CuPy arrays of the same dtype and device.
        layout: ``'compact'`` (2l+1 entries) or ``'full'`` (3^l entries; inputs must be ICTs,
            i.e. symmetric and traceless: the full product is defined on them).
        normalization: ``'unit'`` (unit-norm coupling), ``'published'`` (T x T -> T for even
            products), ``'raw'`` (plain contract-then-project).
        shared: ``None``, ``'x'`` or ``'y'``: which input (if any) has no channel axis.
        check_nan: raise ``ValueError`` when an input holds NaN or infinity.
        strategy: override the generated plan (a strategy name of :mod:`.contractions`, or
            ``'direct'``/``'convert'`` for the full layout); for benchmarks and tests.
    """
    xp, _, batch, channels = _validate(x, y, l1, l2, l3, layout, normalization, shared, check_nan)
    triple = (l1, l2, l3)
    if layout == "full":
        route = plan_lookup.full(triple, shared, strategy)
        if route == "direct":
            return full_direct(x, y, triple, normalization, shared, xp, batch)
        x, y = _to_compact(x, l1, xp), _to_compact(y, l2, xp)
        strategy = None
    kind, perm, (first, second) = _FORWARD[shared]
    ops = {"x": _flat(x, batch, _channels_of("x", shared, channels), 2 * l1 + 1)}
    ops["y"] = _flat(y, batch, _channels_of("y", shared, channels), 2 * l2 + 1)
    z = _run(kind, perm, triple, normalization, ops[first], ops[second], xp, strategy)
    if layout == "full":
        z = _to_full(z, l3, xp).reshape(batch + (channels,) + (3,) * l3)
        return z
    return z.reshape(batch + (channels, 2 * l3 + 1))


def tensor_product_vjp(
    grad: Any,
    x: Any,
    y: Any,
    l1: int,
    l2: int,
    l3: int,
    *,
    layout: str = "compact",
    normalization: str = "unit",
    shared: str | None = None,
    wrt: tuple[str, ...] = ("x", "y"),
    check_nan: bool = False,
    strategy: str | None = None,
) -> tuple[Any, ...]:
    """Vector-Jacobian products ``(d<grad, z>/dx, d<grad, z>/dy)`` (those named in ``wrt``).

    ``grad`` has the shape of z. The results have the shapes of x and y (for a shared input the
    channels are summed). Both are again contractions with the same coupling.
    """
    xp, _, batch, channels = _validate(x, y, l1, l2, l3, layout, normalization, shared, check_nan)
    as_float_array(grad, "grad", xp)
    common_dtype({"x": x, "grad": grad})
    array_module(x, grad)
    check_trailing(grad, "grad", batch + (channels,) + _dim(l3, layout), "the shape of the product")
    for w in wrt:
        if w not in ("x", "y"):
            raise ValueError(f"wrt may contain 'x' and 'y', got {w!r}")
    triple = (l1, l2, l3)
    xs, ys = x.shape, y.shape
    if layout == "full":
        x, y, grad = _to_compact(x, l1, xp), _to_compact(y, l2, xp), _to_compact(grad, l3, xp)
        strategy = None
    ops = {
        "x": _flat(x, batch, _channels_of("x", shared, channels), 2 * l1 + 1),
        "y": _flat(y, batch, _channels_of("y", shared, channels), 2 * l2 + 1),
        "g": _flat(grad, batch, channels, 2 * l3 + 1),
    }
    out = []
    for w in wrt:
        kind, perm, (first, second) = _VJP[(shared, w)]
        r = _run(kind, perm, triple, normalization, ops[first], ops[second], xp, strategy)
        if layout == "full":
            r = _to_full(r, l1 if w == "x" else l2, xp)
        out.append(r.reshape(xs if w == "x" else ys))
    return tuple(out)


# --------------------------------------------------------------------------- full layout, direct
_LETTERS = "ABDEFGHIJKLMOPQRSTUVWXYZ"


def full_equation(l1: int, l2: int, l3: int, shared: str | None) -> str:
    """einsum equation of the literal contraction (k pairs; plus eps_{wuv} when odd) on full tensors."""
    s = l1 + l2 - l3
    k, odd = s // 2, s % 2
    it = iter(_LETTERS)
    xf = "".join(next(it) for _ in range(l1 - k - odd))
    yf = "".join(next(it) for _ in range(l2 - k - odd))
    d = "".join(next(it) for _ in range(k))
    xpre = "n" if shared == "x" else "nc"
    ypre = "n" if shared == "y" else "nc"
    if odd:
        return f"wuv,{xpre}{xf}{d}u,{ypre}{d}v{yf}->nc{xf}w{yf}"
    return f"{xpre}{xf}{d},{ypre}{d}{yf}->nc{xf}{yf}"


def _levi_civita(dtype: np.dtype, xp: ModuleType) -> Any:
    eps = np.zeros((3, 3, 3), dtype=dtype)
    eps[0, 1, 2] = eps[1, 2, 0] = eps[2, 0, 1] = 1
    eps[0, 2, 1] = eps[2, 1, 0] = eps[1, 0, 2] = -1
    return xp.asarray(eps)


def full_direct(
    x: Any,
    y: Any,
    triple: tuple[int, int, int],
    normalization: str,
    shared: str | None,
    xp: ModuleType,
    batch: tuple[int, ...],
) -> Any:
    """Contract index pairs on the full tensors, then remove traces with ``P_l3`` (ICT inputs)."""
    import opt_einsum

    l1, l2, l3 = triple
    n = int(np.prod(batch, dtype=np.int64)) if batch else 1
    xf = x.reshape((n,) + x.shape[len(batch) :])
    yf = y.reshape((n,) + y.shape[len(batch) :])
    eq = full_equation(l1, l2, l3, shared)
    operands = ([_levi_civita(x.dtype, xp)] if parity_of(l1, l2, l3) == "odd" else []) + [xf, yf]
    raw = opt_einsum.contract(eq, *operands, backend="cupy" if xp.__name__ == "cupy" else "numpy")
    channels = raw.shape[1]
    scale = tables.relative_scale(triple, normalization) / tables.relative_scale(triple, "raw")
    z = (raw.reshape(n, channels, 3**l3) @ tables.projector_matrix(l3, x.dtype, xp)) * x.dtype.type(scale)
    return z.reshape(batch + (channels,) + (3,) * l3)
