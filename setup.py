"""Build the optional compiled kernels ``cartesian_irreps._fused`` and ``cartesian_irreps._monomials``.

All project metadata lives in ``pyproject.toml``; this file only declares the C
extension.  It is ``optional``: without a working C compiler the pure-Python
package still installs and ``cartesian_irreps.runtime.fused`` falls back to its
NumPy/CuPy reference.

Compiler flags: ``-O3`` (never ``-ffast-math``) plus ``-march=native`` when the
compiler accepts it.  Set ``CARTESIAN_IRREPS_MARCH`` to override the latter:
``none`` (or empty) omits ``-march``, any other value ``V`` passes ``-march=V``.
Flags are only added for GCC-like compilers (not MSVC).
"""

from __future__ import annotations

import os
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

MARCH_ENV = "CARTESIAN_IRREPS_MARCH"


def _accepts(compiler, flag: str) -> bool:
    """Whether ``compiler`` compiles a trivial C file with ``flag``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write("int main(void) { return 0; }\n")
        try:
            compiler.compile([src], output_dir=tmp, extra_postargs=[flag])
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    """``build_ext`` that adds optimisation flags the compiler accepts."""

    def build_extensions(self) -> None:
        # flags depend on the environment, so never reuse an object from an earlier build
        self.force = True
        if self.compiler.compiler_type != "msvc":
            march = os.environ.get(MARCH_ENV, "native").strip()
            flags = ["-O3"]
            if march and march.lower() != "none":
                flags.append(f"-march={march}")
            flags = [f for f in flags if _accepts(self.compiler, f)]
            for ext in self.extensions:
                ext.extra_compile_args = [*ext.extra_compile_args, *flags]
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "cartesian_irreps._fused",
            sources=["cartesian_irreps/_kernels/fused.c"],
            optional=True,
        ),
        Extension(
            "cartesian_irreps._monomials",
            sources=["cartesian_irreps/_kernels/monomials.c"],
            optional=True,
        ),
    ],
    cmdclass={"build_ext": BuildExt},
)
