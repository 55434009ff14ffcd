"""Edge harmonics as autodiff ops on the generated CUDA kernels (GPU, or their C twin on the CPU).

For edge vectors ``r`` (E, 3), ``T(r)`` (E, K), ``K = (lmax+1)^2``, is the stack of the Cartesian
harmonics of ``r/|r|`` (:func:`mlip.equivariant.edge_harmonics`), ``J(r) = dT/dr`` (E, K, 3). Each
op below is one launch of a kernel of :func:`cartesian_irreps.generator.cuda_harmonics.harmonics_source`
(through :func:`cartesian_irreps.runtime.cuda.kernels.cartesian_harmonics`), so energies, forces and
force training (second derivatives) run no chain of small elementwise launches on the GPU::

    Harmonics(r)          -> T                      VJP: HarmonicsVJP(g, r)
    HarmonicsVJP(G, r)    -> J(r)^T G    (E, 3)     VJP: (HarmonicsJVP(u, r), HarmonicsHVP(G, u, r))
    HarmonicsJVP(v, r)    -> J(r) v      (E, K)     VJP: (HarmonicsVJP(u, r), HarmonicsHVP(u, v, r))
    HarmonicsHVP(G, v, r) -> sum_k G_k D_v(dT_k/dr)  third derivatives: not implemented

(``u`` is the incoming cotangent; the Hessian of each ``T_k`` is symmetric, so one HVP serves both
second-order rules; the classes are built by :func:`mlip.derivative_family.derivative_family`.)
:func:`use_kernels` says when :func:`mlip.equivariant.edge_harmonics` takes these ops: CuPy input
(unless ``use_backend("reference")``) and NumPy input under ``use_backend("cuda-twin")``; otherwise
it keeps its composition of autodiff primitives.
"""

from __future__ import annotations

from typing import Any

from cartesian_irreps.runtime.backend import is_cupy
from cartesian_irreps.runtime.kernel_backend import requested

from .autodiff import Tensor
from .derivative_family import derivative_family

__all__ = ["harmonics", "use_kernels"]


def use_kernels(vectors: Any) -> bool:
    """Whether the harmonics of ``vectors`` (an array) run the generated kernels (see the module docstring)."""
    backend = requested()
    if is_cupy(vectors):
        return backend != "reference"
    return backend == "cuda-twin"


def _kernel(op: str, r: Any, G: Any, v: Any, spec: tuple[int, str, bool]) -> Any:
    """One op of ``r -> T(r)`` (``spec = (lmax, normalization, component)``) by the generated kernels."""
    from cartesian_irreps.runtime.cuda import kernels  # the generator's CUDA text: imported on first use

    lmax, normalization, component = spec
    kw = {"vjp": {"cotangent": G}, "jvp": {"tangent": v}, "hvp": {"cotangent": G, "tangent": v}}.get(op, {})
    return kernels.cartesian_harmonics(
        r, lmax, normalization=normalization, component=component, check_zero=False, **kw
    )


HARMONICS = derivative_family(
    "Harmonics",
    _kernel,
    "energy, forces and force training need at most second derivatives; use_backend('reference') composes them",
)


def harmonics(vectors: Tensor, lmax: int, normalization: str = "unit", component: bool = True) -> Tensor:
    """``T(r)`` (E, (lmax+1)^2) of ``vectors`` (E, 3) by the generated kernels (same layout and scaling as
    :func:`mlip.equivariant.edge_harmonics`)."""
    return HARMONICS(vectors, (int(lmax), normalization, bool(component)))
