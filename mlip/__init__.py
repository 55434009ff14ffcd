"""mlip: a small equivariant interatomic potential on irreducible Cartesian tensors (NumPy/CuPy).

Built on the generated kernels of :mod:`cartesian_irreps`; see the project issues for its roadmap.
"""
