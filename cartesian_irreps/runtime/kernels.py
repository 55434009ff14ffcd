"""Which backend runs the numbers, and why: compiled C kernels or the NumPy/CuPy reference.

The compiled kernels ``cartesian_irreps._fused`` (the fused message-passing product) and
``cartesian_irreps._monomials`` (the symmetric-monomial product basis) are optional C extensions built
by ``setup.py``. Without them the same results come from the NumPy reference code, 3-7x slower on a CPU.
That happens silently when no compiler was available at install time, or when Python imports an
unbuilt source checkout instead of the installed package (running a script from the repository root
of a non-editable install). This module says which case holds:

* :func:`kernel_status` -> a :class:`KernelStatus` (importable kernels, the ImportError of each missing
  one, threads, where the package was imported from, whether that is an unbuilt source tree);
* :func:`describe_backend` -> one line for logs and benchmark records, e.g.
  ``numpy + compiled C kernels (fused, monomials), 2 threads``;
* :func:`require_compiled` refuses (``RuntimeError``) to go on without them, for benchmarks;
* :func:`warn_if_slow` emits one :class:`RuntimeWarning` naming the reason when NumPy would run
  without the compiled kernels.

Nothing is imported from CuPy here and no global state is changed.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .backend import THREADS_ENV, default_threads

__all__ = [
    "KERNELS",
    "KernelStatus",
    "backend_record",
    "describe_backend",
    "kernel_status",
    "require_compiled",
    "warn_if_slow",
]

#: The compiled kernels: short name -> extension module.
KERNELS = {"fused": "cartesian_irreps._fused", "monomials": "cartesian_irreps._monomials"}

#: The slowdown of the NumPy reference against the compiled kernels measured on the benchmarks
#: (energy + forces of 256-atom Cu: 950 ms against 134 ms; molecule training about 3x).
SLOWDOWN = "3-7x slower"


@dataclass(frozen=True)
class KernelStatus:
    """The compiled kernels as this process sees them.

    Attributes:
        available: kernel short name -> importable.
        reasons: kernel short name -> the ImportError message, for each missing kernel.
        threads: threads of the compiled kernels (``$CARTESIAN_IRREPS_NUM_THREADS`` or the usable CPUs),
            or the error text when that variable is malformed.
        package_dir: folder the ``cartesian_irreps`` package was imported from.
        source_tree: the package was imported from a source checkout (a ``setup.py`` next to it).
    """

    available: dict[str, bool]
    reasons: dict[str, str] = field(default_factory=dict)
    threads: int | str = 1
    package_dir: Path = Path(".")
    source_tree: bool = False

    @property
    def compiled(self) -> bool:
        """Every compiled kernel imports."""
        return all(self.available.values())

    @property
    def missing(self) -> list[str]:
        """Names of the kernels that do not import."""
        return [k for k, ok in self.available.items() if not ok]

    def reason(self) -> str:
        """Why kernels are missing (empty when none is), with the fix."""
        if self.compiled:
            return ""
        detail = "; ".join(f"{k}: {self.reasons.get(k, 'not importable')}" for k in self.missing)
        if self.source_tree:
            return (
                f"{detail}; Python imported the source tree {self.package_dir}, where they are not built (a script "
                "run from the repository root shadows the installed package): run from another directory, or "
                "build in place with `pip install -e .`"
            )
        return f"{detail}; reinstall with a C compiler available (`pip install --force-reinstall --no-deps .`)"


def _is_source_tree(package_dir: Path) -> bool:
    """A source checkout: ``setup.py`` and ``pyproject.toml`` next to the package folder."""
    return (package_dir.parent / "setup.py").is_file() and (package_dir.parent / "pyproject.toml").is_file()


def _try_import(name: str) -> tuple[bool, str]:
    try:
        importlib.import_module(name)
    except ImportError as err:
        return False, str(err) or type(err).__name__
    return True, ""


def kernel_status() -> KernelStatus:
    """Which compiled kernels import, why not, threads, and where the package lives."""
    import cartesian_irreps

    available, reasons = {}, {}
    for short, module in KERNELS.items():
        ok, why = _try_import(module)
        available[short] = ok
        if not ok:
            reasons[short] = why
    try:
        threads: int | str = default_threads()
    except ValueError as err:
        threads = str(err)
    package_dir = Path(cartesian_irreps.__file__).resolve().parent
    return KernelStatus(available, reasons, threads, package_dir, _is_source_tree(package_dir))


def _module_name(xp: ModuleType | str | None) -> str:
    if xp is None:
        return "numpy"
    if isinstance(xp, str):
        return "cupy" if xp.strip().lower() in ("cupy", "gpu", "cuda") else "numpy"
    return xp.__name__.split(".")[0]


def describe_backend(xp: ModuleType | str | None = None, status: KernelStatus | None = None) -> str:
    """One line naming the array module and the kernels in use.

    Args:
        xp: the array module (``numpy``/``cupy``) or a device name; ``None`` means NumPy.
        status: a :func:`kernel_status` result (computed when ``None``).

    Returns:
        e.g. ``"numpy + compiled C kernels (fused, monomials), 2 threads"``,
        ``"numpy reference (compiled kernels missing: ...) — 3-7x slower"`` or ``"cupy (GPU)"``.
    """
    name = _module_name(xp)
    if name == "cupy":
        return "cupy (GPU; the compiled CPU kernels are not used)"
    st = kernel_status() if status is None else status
    threads = f"{st.threads} thread{'s' if st.threads != 1 else ''}" if isinstance(st.threads, int) else st.threads
    if st.compiled:
        return f"numpy + compiled C kernels ({', '.join(st.available)}), {threads} (${THREADS_ENV})"
    have = [k for k, ok in st.available.items() if ok]
    part = f" (only {', '.join(have)} compiled)" if have else ""
    return f"numpy reference{part} (compiled kernels missing: {st.reason()}) — {SLOWDOWN}"


def warn_if_slow(xp: ModuleType | str | None = None, stacklevel: int = 2) -> KernelStatus:
    """Emit one :class:`RuntimeWarning` when NumPy runs without the compiled kernels; return the status."""
    st = kernel_status()
    if _module_name(xp) != "cupy" and not st.compiled:
        warnings.warn(
            f"compiled kernels {', '.join(st.missing)} are missing, so the NumPy reference runs ({SLOWDOWN}): "
            f"{st.reason()}",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    return st


def backend_record(xp: ModuleType | str | None = None) -> dict[str, Any]:
    """The backend as a JSON-ready dict for benchmark and run records."""
    st = kernel_status()
    return {
        "description": describe_backend(xp, st),
        "array_module": _module_name(xp),
        "compiled_kernels": dict(st.available),
        "missing_reasons": dict(st.reasons),
        "threads": st.threads,
        "package_dir": str(st.package_dir),
        "source_tree": st.source_tree,
    }


def require_compiled(what: str = "this benchmark", xp: ModuleType | str | None = None) -> KernelStatus:
    """Raise ``RuntimeError`` naming the reason and the fix when NumPy would run without the compiled kernels.

    For timings, where the reference code would give silently wrong (3-7x slower) numbers."""
    st = kernel_status()
    if _module_name(xp) != "cupy" and not st.compiled:
        raise RuntimeError(
            f"{what} would time the NumPy reference ({SLOWDOWN}), not the compiled kernels {', '.join(st.missing)}: "
            f"{st.reason()}"
        )
    return st
