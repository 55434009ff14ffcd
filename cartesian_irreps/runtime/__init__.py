"""Numeric runtime on NumPy or CuPy (no SymPy): harmonics, products, layouts, fused kernels.

The array module is taken from the inputs; float32 and float64 both work; no global state is changed.
"""

from .harmonics import cartesian_harmonics
from .layouts import to_compact, to_full
from .products import tensor_product, tensor_product_vjp

__all__ = ["cartesian_harmonics", "tensor_product", "tensor_product_vjp", "to_compact", "to_full"]
