"""A small reverse-mode automatic differentiation engine on NumPy/CuPy, with higher derivatives.

Every op is a :class:`Function` whose VJP is written with Tensor ops, so the backward pass can be
recorded (``grad(..., create_graph=True)``) and differentiated again: forces ``F = -∂E/∂r``, stress,
and parameter gradients of a force loss. See ``docs/autodiff.md``.

>>> import numpy as np
>>> from mlip import autodiff as ad
>>> x = ad.tensor(np.array([1.0, 2.0]), requires_grad=True)
>>> (g,) = ad.grad(ad.sum(x**3), x, create_graph=True)
>>> g.data, ad.grad(ad.sum(g), x)[0].data
(array([ 3., 12.]), array([ 6., 12.]))
"""

from . import ops
from .grad import grad
from .ops import *  # noqa: F403  (every op; the list is ops.__all__)
from .tensor import Context, Function, Tensor, constant, tensor

__all__ = ["Context", "Function", "Tensor", "constant", "grad", "tensor", *ops.__all__]
