"""Command line: ``mlip train | eval | md | demo`` (also ``python -m mlip``), one module per command.

* ``mlip train --train-file data.xyz [--config run.json] [options]``: train a potential
  (:mod:`mlip.training`); ``--resume`` continues an interrupted run exactly (:mod:`.train`).
* ``mlip eval --model run/best.npz --data test.xyz``: errors (meV, meV/atom, meV/Å), per-structure
  predictions (CSV, extxyz) and a parity plot (:mod:`mlip.evaluation`, :mod:`.eval`).
* ``mlip md --model run/best.npz --structure start.xyz``: NVE or Langevin MD through ASE; trajectory,
  energy drift (meV/atom/ps), speed (steps/s) and an energy plot (:mod:`.md`).
* ``mlip demo``: the whole pipeline on built-in EMT data (:mod:`mlip.demo`, :mod:`.demo`).

Exit status: 0 on success, 1 on bad input or a failed run (one ``error:`` line on stderr),
130 when training was interrupted (the checkpoint is saved; continue with ``--resume``).

Importing this package imports no NumPy and changes no environment variable. The console script
:func:`entry` (the ``mlip`` process is ours) sets ``OPENBLAS_NUM_THREADS=1`` unless it is set already,
before NumPy is imported: the model multiplies many small matrices, so threaded OpenBLAS only adds
hand-off cost, and when other processes share the cores its spinning threads make a training step
several times slower (measured 0.12 s with one thread against 0.5-0.9 s with two on a loaded 2-core
machine). Calling :func:`main` from Python leaves the environment alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..lammps import cli as lammps_cli
from . import demo, md, train
from . import eval as eval_cmd

__all__ = ["build_parser", "entry", "main", "version"]

_COMMANDS = {"train": train, "eval": eval_cmd, "md": md, "demo": demo, "lammps": lammps_cli}


def version() -> str:
    """The installed version of the ``cartesian-irreps`` distribution (``cartesian_irreps.__version__``
    when it is not installed, e.g. run from a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("cartesian-irreps")
    except PackageNotFoundError:
        from cartesian_irreps import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mlip`` command."""
    parser = argparse.ArgumentParser(
        prog="mlip",
        description="Train, evaluate and run an irreducible-Cartesian-tensor interatomic potential.",
    )
    parser.add_argument("--version", action="version", version=f"mlip (cartesian-irreps) {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,md,demo,lammps}")
    for module in _COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mlip`` command; returns the exit status (see the module docstring)."""
    from ..training import DataError, TrainingError

    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (DataError, TrainingError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the file system: a missing file, a folder given as a file, no permission
        where = f": {err.filename}" if err.filename and str(err.filename) not in str(err.strerror or "") else ""
        print(f"error: {err.strerror or err}{where}" if err.strerror else f"error: {err}", file=sys.stderr)
        return 1


def entry() -> None:
    """The console script: one OpenBLAS thread unless the environment says otherwise (see the module
    docstring; set before NumPy is imported), glibc's malloc told to keep freed memory (large
    temporaries are reused instead of page-faulted afresh each step; see
    :mod:`cartesian_irreps.runtime.allocator`), then :func:`main`."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from cartesian_irreps.runtime.allocator import keep_freed_memory

    keep_freed_memory()
    sys.exit(main())
