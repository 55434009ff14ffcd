"""The model parameters as one flat vector with named views (what the optimiser updates in place).

``theta`` (``(P,)``) holds every parameter array of :func:`mlip.model.param_shapes` one after the
other, in that order; :meth:`ParameterLayout.views` gives the named arrays as views of it, so an
in-place update of ``theta`` is seen by the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model import ModelConfig, param_shapes

__all__ = ["ParameterLayout"]


@dataclass(frozen=True)
class ParameterLayout:
    """Names, shapes and offsets of the parameters in the flat vector.

    Attributes:
        names: parameter names, in vector order.
        shapes: their shapes.
        offsets: ``(len(names) + 1,)`` start of each in the vector, then the total size ``P``.
    """

    names: list[str]
    shapes: list[tuple[int, ...]]
    offsets: np.ndarray

    @classmethod
    def of(cls, config: ModelConfig) -> ParameterLayout:
        shapes = param_shapes(config)
        names = list(shapes)
        shape_list = [tuple(shapes[n]) for n in names]
        sizes = [int(np.prod(s)) for s in shape_list]
        return cls(names, shape_list, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))

    def misfits(self, params: Mapping[str, Any]) -> list[str]:
        """Names missing from ``params``, of another shape there, or not of this layout."""
        out = [n for n, s in zip(self.names, self.shapes) if n not in params or tuple(params[n].shape) != s]
        return out + sorted(set(params) - set(self.names))

    def flatten(self, params: Mapping[str, Any], dtype: Any) -> np.ndarray:
        """The flat ``(P,)`` host vector of ``params`` (every name of the layout, checked by :meth:`misfits`)."""
        return np.concatenate([np.asarray(params[n]).ravel() for n in self.names]).astype(np.dtype(dtype))

    def views(self, flat: Any) -> dict[str, Any]:
        """Named views of a flat vector (NumPy or CuPy)."""
        return {
            n: flat[int(a) : int(b)].reshape(s)
            for n, s, a, b in zip(self.names, self.shapes, self.offsets[:-1], self.offsets[1:])
        }

    def decay_mask(self, dtype: Any) -> np.ndarray:
        """``(P,)``: 1 on the weights with L2 decay (names containing ``.product.`` or ``.linear.``), else 0."""
        mask = np.zeros(int(self.offsets[-1]), dtype=dtype)
        for n, a, b in zip(self.names, self.offsets[:-1], self.offsets[1:]):
            if ".product." in n or ".linear." in n:
                mask[a:b] = 1.0
        return mask

    def to_json(self) -> list[list[Any]]:
        """``[[name, shape], ...]`` (stored in checkpoints)."""
        return [[n, list(s)] for n, s in zip(self.names, self.shapes)]
