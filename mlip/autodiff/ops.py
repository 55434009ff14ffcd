"""Every op of the engine in one namespace (the operator overloads of :class:`Tensor` and :func:`grad`
use it). Each op is a :class:`Function` whose VJP is written with the same ops, so differentiating it
again (``create_graph=True``) gives exact higher derivatives.

Notation: ``g`` is the cotangent of the output ``y`` (shape of ``y``); each VJP returns ``g · ∂y/∂x``
for every input ``x`` (shape of ``x``). The ops live in :mod:`.elementwise`, :mod:`.activations`,
:mod:`.reductions`, :mod:`.linalg` and :mod:`.indexing`.
"""

from __future__ import annotations

from .activations import silu
from .elementwise import add, cos, div, exp, log, mul, neg, power, sigmoid, sin, sqrt, sub, tanh
from .indexing import concatenate, getitem, index_add, index_select, segment_sum, stack
from .linalg import einsum, matmul, transpose
from .reductions import broadcast_to, mean, reshape, stop_gradient, sum, sum_to

__all__ = [
    "add",
    "broadcast_to",
    "concatenate",
    "cos",
    "div",
    "einsum",
    "exp",
    "getitem",
    "index_add",
    "index_select",
    "log",
    "matmul",
    "mean",
    "mul",
    "neg",
    "power",
    "reshape",
    "segment_sum",
    "sigmoid",
    "silu",
    "sin",
    "sqrt",
    "stack",
    "stop_gradient",
    "sub",
    "sum",
    "sum_to",
    "tanh",
    "transpose",
]
