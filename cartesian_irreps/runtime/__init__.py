"""Numeric runtime on NumPy or CuPy (no SymPy): harmonics, products, layouts, fused kernels."""
