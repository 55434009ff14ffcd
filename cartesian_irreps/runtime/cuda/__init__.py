"""CUDA backend: generated kernels (:mod:`cartesian_irreps.generator.cuda`) compiled by NVRTC through CuPy.

* :mod:`.nvrtc`: compile a source to PTX without a GPU (used by the tests and by CI);
* :mod:`.kernels`: compile once per source (``cupy.RawModule``, cached) and launch on CuPy arrays;
  on NumPy arrays the same calls run the C twin;
* :mod:`.ctwin`: the C twin, the same kernel text compiled by ``cc`` with a harness that loops over
  the block and thread indices (checks the GPU code on the CPU).

Nothing here imports CuPy or SymPy at import time.
"""
