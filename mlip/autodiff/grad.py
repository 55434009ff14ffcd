"""Reverse-mode differentiation over the recorded graph: :func:`grad`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import ops
from .tensor import Array, Tensor, array_module, is_cupy

__all__ = ["grad"]


def _graph(outputs: Sequence[Tensor], targets: set[int]) -> tuple[list[Tensor], dict[int, bool]]:
    """Recorded nodes from which a target is reachable, consumers first; and the relevance map.

    Iterative depth-first search (no recursion limit) over Tensors that require gradients. A Tensor is
    *relevant* when it is a target or one of its inputs is relevant; only relevant inputs get a VJP.
    """
    relevant: dict[int, bool] = {}
    order: list[Tensor] = []
    stack: list[tuple[Tensor, bool]] = [(y, False) for y in outputs if y.requires_grad]
    while stack:
        t, done = stack.pop()
        key = id(t)
        if done:
            r = key in targets or any(relevant.get(id(p), False) for p in t._inputs)
            relevant[key] = r
            if r and t._fn is not None:
                order.append(t)
        elif key not in relevant:
            relevant[key] = False  # visited; final value set when done
            stack.append((t, True))
            stack.extend((p, False) for p in t._inputs if p.requires_grad and id(p) not in relevant)
    order.reverse()
    return order, relevant


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> list[Tensor | None]:
    """Vector-Jacobian products ``Σ_k <v_k, ∂y_k/∂x_i>`` for every input ``x_i``.

    Args:
        outputs: a Tensor ``y`` or a list of them.
        inputs: a Tensor ``x`` or a list of them (leaves or intermediate results, floating point).
        grad_outputs: cotangents ``v_k`` (Tensors or arrays shaped like the outputs); may be omitted
            (or an entry None) only for outputs with a single element, which get ``v = 1``.
        create_graph: record the backward computation, so the results are differentiable again
            (Hessian-vector products, force losses). When False the results are constants, nothing
            of the backward pass is recorded, and intermediate cotangents are freed as soon as used.
        allow_unused: an input that no output depends on (or that does not require gradients) is an
            error, unless this is True: its entry is then ``None``.

    Returns:
        ``[x̄_1, …]``: one Tensor per input, shaped like it (and, when ``create_graph`` is False, cast to
        its dtype and C-contiguous).

    The graph itself (the outputs' history) is not freed: call ``grad`` again on it as often as needed;
    drop the outputs to release it.
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        vs: list[Any] = [None] * len(outs)
    elif isinstance(outputs, Tensor) and not isinstance(grad_outputs, (list, tuple)):
        vs = [grad_outputs]
    else:
        vs = list(grad_outputs)
    if len(vs) != len(outs):
        raise ValueError(f"grad: {len(outs)} outputs but {len(vs)} grad_outputs")
    for i, x in enumerate(ins):
        if not isinstance(x, Tensor):
            raise TypeError(f"grad: input {i} is a {type(x).__name__}, not a Tensor")
        if x.dtype.kind != "f":
            raise TypeError(f"grad: input {i} has dtype {x.dtype}; only floating-point tensors are differentiable")

    grads: dict[int, Any] = {}  # id(tensor) -> accumulated cotangent (array, or Tensor if create_graph)
    owned: set[int] = set()  # entries whose array was allocated here, so in-place += is safe

    def accumulate(key: int, g: Any) -> None:
        old = grads.get(key)
        if old is None:
            grads[key] = g
        elif create_graph:
            grads[key] = ops.add(old, g)
        elif key in owned:
            old += g
        else:
            grads[key] = old + g
            owned.add(key)

    for k, (y, v) in enumerate(zip(outs, vs)):
        if not isinstance(y, Tensor):
            raise TypeError(f"grad: output {k} is a {type(y).__name__}, not a Tensor")
        if v is None:
            if y.size != 1:
                raise ValueError(
                    f"grad: output {k} has shape {y.shape}; a non-scalar output needs grad_outputs of that shape"
                )
            v = array_module(y.data).ones(y.shape, dtype=y.dtype)
        v_data = v.data if isinstance(v, Tensor) else v
        if is_cupy(v_data) != is_cupy(y.data):
            raise TypeError(f"grad: grad_outputs[{k}] and output {k} mix NumPy and CuPy arrays")
        v_data = array_module(y.data).asarray(v_data)
        if tuple(v_data.shape) != y.shape:
            raise ValueError(f"grad: grad_outputs[{k}] has shape {tuple(v_data.shape)}, output {k} has {y.shape}")
        if y.requires_grad:
            accumulate(id(y), (v if isinstance(v, Tensor) else Tensor(v_data)) if create_graph else v_data)

    targets = {id(x) for x in ins}
    order, relevant = _graph(outs, targets)
    results: dict[int, Any] = {}
    for t in order:
        key = id(t)
        g = grads.pop(key, None)
        owned.discard(key)
        if g is None:
            continue
        if key in targets:
            results[key] = g
        parents = t._inputs
        need = tuple(p.requires_grad and relevant.get(id(p), False) for p in parents)
        if not any(need):
            continue
        ctx = t._ctx
        if create_graph:
            ctx.output, args = t, parents
        else:  # constants in, constants out: the VJP records nothing
            g, ctx.output, args = Tensor(g), Tensor(t.data), tuple(Tensor(p.data) for p in parents)
        ctx.needs_input_grad = need
        try:
            pgrads = t._fn.vjp(ctx, g, *args)
        finally:
            del ctx.output, ctx.needs_input_grad
        if len(pgrads) != len(parents):
            raise ValueError(f"{t._fn.__name__}.vjp returned {len(pgrads)} gradients for {len(parents)} inputs")
        for i, (p, n, pg) in enumerate(zip(parents, need, pgrads)):
            if not n or pg is None:
                continue
            if not isinstance(pg, Tensor):
                raise TypeError(f"{t._fn.__name__}.vjp must return Tensors or None, got {type(pg).__name__}")
            if pg.shape != p.shape:
                raise ValueError(f"{t._fn.__name__}.vjp: gradient {i} has shape {pg.shape}, input has {p.shape}")
            accumulate(id(p), pg if create_graph else pg.data)
    del order

    out: list[Tensor | None] = []
    for i, x in enumerate(ins):
        g = results.get(id(x), grads.get(id(x)))
        if g is None:
            if not allow_unused:
                raise ValueError(
                    f"grad: input {i} is not used to compute the outputs (or does not require gradients); "
                    "pass allow_unused=True to get None for it"
                )
            out.append(None)
        elif create_graph:
            out.append(g)
        else:
            out.append(Tensor(_finish(g, x.dtype)))
    return out


def _finish(a: Array, dtype: Any) -> Array:
    """A plain C-contiguous array of ``dtype`` (copies broadcast views; casts a foreign dtype)."""
    if a.dtype != dtype:
        return a.astype(dtype)
    return a if a.flags.c_contiguous else a.copy()
