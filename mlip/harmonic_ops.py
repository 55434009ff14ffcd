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
second-order rules.) :func:`use_kernels` says when :func:`mlip.equivariant.edge_harmonics` takes
these ops: CuPy input (unless ``use_backend("reference")``) and NumPy input under
``use_backend("cuda-twin")``; otherwise it keeps its composition of autodiff primitives.
"""

from __future__ import annotations

from typing import Any

from cartesian_irreps.runtime.backend import is_cupy
from cartesian_irreps.runtime.kernel_backend import requested

from .autodiff import Context, Function, Tensor

__all__ = ["harmonics", "use_kernels"]


def use_kernels(vectors: Any) -> bool:
    """Whether the harmonics of ``vectors`` (an array) run the generated kernels (see the module docstring)."""
    backend = requested()
    if is_cupy(vectors):
        return backend != "reference"
    return backend == "cuda-twin"


def _call(r: Any, spec: tuple[int, str, bool], **kw: Any) -> Any:
    from cartesian_irreps.runtime.cuda import kernels  # the generator's CUDA text: imported on first use

    lmax, normalization, component = spec
    return kernels.cartesian_harmonics(
        r, lmax, normalization=normalization, component=component, check_zero=False, **kw
    )


class Harmonics(Function):
    """``T(r)``: input ``r`` (E, 3), output (E, K)."""

    @staticmethod
    def forward(ctx: Context, r: Any, *, spec: tuple[int, str, bool]) -> Any:
        ctx.spec = spec
        return _call(r, spec)

    @staticmethod
    def vjp(ctx: Context, g: Tensor, r: Tensor) -> tuple[Tensor | None, ...]:
        return (HarmonicsVJP.apply(g, r, spec=ctx.spec),)


class HarmonicsVJP(Function):
    """``J(r)^T G``: inputs ``G`` (E, K), ``r`` (E, 3); output (E, 3)."""

    @staticmethod
    def forward(ctx: Context, G: Any, r: Any, *, spec: tuple[int, str, bool]) -> Any:
        ctx.spec = spec
        return _call(r, spec, cotangent=G)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, G: Tensor, r: Tensor) -> tuple[Tensor | None, ...]:
        dG = HarmonicsJVP.apply(u, r, spec=ctx.spec) if ctx.needs_input_grad[0] else None
        dr = HarmonicsHVP.apply(G, u, r, spec=ctx.spec) if ctx.needs_input_grad[1] else None
        return dG, dr


class HarmonicsJVP(Function):
    """``J(r) v``: inputs ``v`` (E, 3), ``r`` (E, 3); output (E, K)."""

    @staticmethod
    def forward(ctx: Context, v: Any, r: Any, *, spec: tuple[int, str, bool]) -> Any:
        ctx.spec = spec
        return _call(r, spec, tangent=v)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, v: Tensor, r: Tensor) -> tuple[Tensor | None, ...]:
        dv = HarmonicsVJP.apply(u, r, spec=ctx.spec) if ctx.needs_input_grad[0] else None
        dr = HarmonicsHVP.apply(u, v, r, spec=ctx.spec) if ctx.needs_input_grad[1] else None
        return dv, dr


class HarmonicsHVP(Function):
    """``sum_k G_k sum_d v_d d^2 T_k / (dr dr_d)``: inputs ``G`` (E, K), ``v``, ``r`` (E, 3); output (E, 3)."""

    @staticmethod
    def forward(ctx: Context, G: Any, v: Any, r: Any, *, spec: tuple[int, str, bool]) -> Any:
        return _call(r, spec, cotangent=G, tangent=v)

    @staticmethod
    def vjp(ctx: Context, u: Tensor, *inputs: Tensor) -> tuple[Tensor | None, ...]:
        raise NotImplementedError(
            "edge harmonics: third derivatives are not implemented on the kernel path (energy, forces "
            "and force training need at most second derivatives; use_backend('reference') composes them)"
        )


def harmonics(vectors: Tensor, lmax: int, normalization: str = "unit", component: bool = True) -> Tensor:
    """``T(r)`` (E, (lmax+1)^2) of ``vectors`` (E, 3) by the generated kernels (same layout and scaling as
    :func:`mlip.equivariant.edge_harmonics`)."""
    return Harmonics.apply(vectors, spec=(int(lmax), normalization, bool(component)))
