"""CUDA backend: generated kernels (:mod:`cartesian_irreps.generator.cuda`) compiled by NVRTC through CuPy.

* :mod:`.nvrtc`: compile a source to PTX without a GPU (used by the tests and by CI);
* :mod:`.kernels`: compile once per source (``cupy.RawModule``, cached) and launch on CuPy arrays.

Nothing here imports CuPy at import time.
"""
