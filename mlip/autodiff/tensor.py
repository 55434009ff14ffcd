"""The data model: :class:`Tensor` (an array plus the record of the op that made it) and :class:`Function`.

A Tensor that requires gradients and was produced by an op *is* its tape node: it keeps the op
(``_fn``, a :class:`Function` subclass), the input Tensors (``_inputs``) and the op's saved context
(``_ctx``). There is no global tape and no global state: the graph is whatever is reachable from the
outputs, and it is freed with them. Arrays are NumPy or CuPy (never mixed); CuPy is imported only when
a CuPy array is passed in.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from cartesian_irreps.runtime.backend import array_module, is_cupy

Array = Any  #: a ``numpy.ndarray`` or ``cupy.ndarray``

__all__ = ["Array", "Context", "Function", "Tensor", "array_module", "constant", "is_cupy", "tensor"]


def _is_float(dtype: Any) -> bool:
    return np.dtype(dtype).kind == "f"


def _as_array(x: Any) -> Array:
    """``x`` as an ndarray (NumPy scalars and Python numbers become 0-d NumPy arrays)."""
    if isinstance(x, np.ndarray) or is_cupy(x):
        return x
    return np.asarray(x)


class Tensor:
    """An array ``data`` (NumPy or CuPy) with ``requires_grad`` and, if computed, its history.

    Create Tensors with :func:`tensor` / :func:`constant`; the constructor itself does no checking.
    Operators ``+ - * / ** @``, unary ``-`` and basic/advanced indexing are recorded ops; the dtype of
    ``data`` is kept (a Python scalar operand takes the Tensor's dtype, so float32 stays float32).
    """

    __slots__ = ("_ctx", "_fn", "_inputs", "data", "requires_grad")
    __array_ufunc__ = None  # make ``ndarray <op> Tensor`` defer to the Tensor's reflected operators

    def __init__(
        self,
        data: Array,
        requires_grad: bool = False,
        _fn: type[Function] | None = None,
        _inputs: tuple[Tensor, ...] = (),
        _ctx: Context | None = None,
    ) -> None:
        self.data = data
        self.requires_grad = requires_grad
        self._fn = _fn
        self._inputs = _inputs
        self._ctx = _ctx

    # -- array-like properties -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def is_leaf(self) -> bool:
        """True unless the Tensor was computed by a recorded op."""
        return self._fn is None

    @property
    def xp(self) -> ModuleType:
        """``numpy`` or ``cupy``, according to ``data``."""
        return array_module(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __float__(self) -> float:
        return float(self.data)

    def __repr__(self) -> str:
        op = f", op={self._fn.__name__}" if self._fn is not None else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, requires_grad={self.requires_grad}{op})"

    def detach(self) -> Tensor:
        """The same data as a constant (no history, no gradient)."""
        return Tensor(self.data)

    # -- recorded operators (implemented in ops) -------------------------------------------------
    def __add__(self, o: Any) -> Tensor:
        return _ops.add(self, o)

    def __radd__(self, o: Any) -> Tensor:
        return _ops.add(o, self)

    def __sub__(self, o: Any) -> Tensor:
        return _ops.sub(self, o)

    def __rsub__(self, o: Any) -> Tensor:
        return _ops.sub(o, self)

    def __mul__(self, o: Any) -> Tensor:
        return _ops.mul(self, o)

    def __rmul__(self, o: Any) -> Tensor:
        return _ops.mul(o, self)

    def __truediv__(self, o: Any) -> Tensor:
        return _ops.div(self, o)

    def __rtruediv__(self, o: Any) -> Tensor:
        return _ops.div(o, self)

    def __neg__(self) -> Tensor:
        return _ops.neg(self)

    def __pow__(self, p: float) -> Tensor:
        return _ops.power(self, p)

    def __matmul__(self, o: Any) -> Tensor:
        return _ops.matmul(self, o)

    def __rmatmul__(self, o: Any) -> Tensor:
        return _ops.matmul(o, self)

    def __getitem__(self, key: Any) -> Tensor:
        return _ops.getitem(self, key)

    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return _ops.sum(self, axis, keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return _ops.mean(self, axis, keepdims)

    def reshape(self, *shape: Any) -> Tensor:
        return _ops.reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)


def tensor(data: Any, requires_grad: bool = False) -> Tensor:
    """A leaf Tensor on ``data`` (an array is not copied; lists and scalars become NumPy arrays).

    Only floating-point Tensors may require gradients (``TypeError`` otherwise). A Tensor argument is
    detached (its data is shared).
    """
    if isinstance(data, Tensor):
        data = data.data
    data = _as_array(data)
    if requires_grad and not _is_float(data.dtype):
        raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")
    return Tensor(data, bool(requires_grad))


def constant(data: Any) -> Tensor:
    """A Tensor that never requires gradients (``tensor(data, requires_grad=False)``)."""
    return tensor(data, False)


class Context:
    """Per-call scratch space of a :class:`Function`.

    ``forward`` stores on it what ``vjp`` needs (arrays, shapes, parameters; not Tensors). During
    ``vjp`` the engine also sets, for that call only:

    * ``ctx.output``: the op's output as a Tensor (differentiable when ``create_graph=True``), so a VJP
      can reuse it, e.g. ``d exp(x) = g * output``;
    * ``ctx.needs_input_grad``: one bool per input; a VJP may return ``None`` where it is False.
    """

    output: Tensor
    needs_input_grad: tuple[bool, ...]


class Function:
    """Base class of every op (built-in or custom).

    Subclasses define two static methods::

        forward(ctx, *arrays, **params) -> array      # plain NumPy/CuPy computation
        vjp(ctx, g, *inputs) -> tuple[Tensor | None, ...]

    ``vjp`` receives the output cotangent ``g`` (a Tensor shaped like the output) and the inputs as
    Tensors, and returns one cotangent per input, shaped like that input (or ``None`` for zero). It
    must be written with Tensor ops (built-in or other Functions), so that it is recorded when the
    engine runs with ``create_graph=True`` and the op can be differentiated again. Non-differentiable
    arguments (axes, index arrays, equations) are keyword ``params``.

    Call an op with ``MyOp.apply(*inputs, **params)``; inputs that are not Tensors become constants.
    """

    @staticmethod
    def forward(ctx: Context, *arrays: Array, **params: Any) -> Array:
        raise NotImplementedError

    @staticmethod
    def vjp(ctx: Context, g: Tensor, *inputs: Tensor) -> tuple[Tensor | None, ...]:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Any, **params: Any) -> Tensor:
        """Run ``forward`` on the inputs' arrays; record the op if an input requires gradients."""
        ts = tuple(x if isinstance(x, Tensor) else constant(x) for x in inputs)
        if len(ts) > 1:
            first = is_cupy(ts[0].data)
            if any(is_cupy(t.data) != first for t in ts[1:]):
                raise TypeError(f"{cls.__name__}: inputs mix NumPy and CuPy arrays; move them to one device")
        ctx = Context()
        out = _as_array(cls.forward(ctx, *(t.data for t in ts), **params))
        if _is_float(out.dtype) and any(t.requires_grad for t in ts):
            return Tensor(out, True, cls, ts, ctx)
        return Tensor(out)


from . import ops as _ops  # noqa: E402  (circular: ops builds on Tensor and Function)
