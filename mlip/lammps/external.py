"""Fallback route: the model through ``fix external`` (no compiler, no plugin; slower).

Each rank sees its local atoms plus ghosts up to ``2 r_c + skin`` (``comm_modify cutoff``), builds the
neighbour list of that cloud itself, and evaluates the graph on it (ghost images of local atoms folded
onto them, as in :func:`mlip.lammps.pair_list.compact_graph`). With a 2-layer model the local site
energies ``E_i`` are then exact: they depend on atoms up to ``2 r_c`` away, whose features the cloud holds.
The gradient of ``E_rank = sum_{i local} E_i`` reaches ghost atoms too; ``fix external`` cannot send forces
back to their owners, so the gradients are summed by atom ID over all ranks (one ``MPI_Allreduce`` of an
``(N_atoms, 3)`` array per step, plus energy and virial). Cost: the cloud's edges (2-3x the local ones at
10^4 atoms per rank), and the O(N) allreduce, which rules this route out beyond ~10^6 atoms.

Models with ``T`` layers need ghosts up to ``T r_c``; the ghost cutoff is ``num_layers * r_c + skin``.

Usage (every rank)::

    lmp.commands_list([... box, atoms, "neighbor 2.0 bin" ...])
    attach_external(lmp, "model.npz", ["Cu", "Ni"], skin=2.0)   # type 1 = Cu, type 2 = Ni
    lmp.command("run 100")
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import autodiff as ad
from ..data import neighbour_list
from ..model import Potential
from .pair_list import PairGraph, cell_from_h, species_of_elements

__all__ = ["ExternalModel", "attach_external"]


class ExternalModel:
    """The ``fix external`` callback: energies, forces and virial of the model for a LAMMPS instance.

    Attributes:
        potential: the evaluated model; ``type_species``: species of LAMMPS type t at ``t - 1``;
        ``stats``: local atoms, cloud atoms and edges of the last evaluation on this rank.
    """

    def __init__(self, lmp: Any, model: Potential | str | os.PathLike[str], elements: Sequence[str], fix_id: str):
        from mpi4py import MPI

        from ..calculator import ICTPCalculator

        calc = ICTPCalculator(model, device="cpu")
        self.potential: Potential = calc.potential
        self.type_species = species_of_elements(self.potential, list(elements))
        self.lmp, self.fix_id = lmp, fix_id
        self.comm = MPI.COMM_WORLD
        self.mpi = MPI
        self.stats: dict[str, int] = {}

    def _atoms(self, name: str, ctype: Any, shape: tuple[int, ...]) -> np.ndarray:
        """A view of LAMMPS's per-atom array ``name`` over local and ghost atoms (no copy)."""
        ptr = self.lmp.extract_atom(name)
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, dtype=np.dtype(ctype))
        base = ptr[0] if len(shape) == 2 else ptr
        return np.ctypeslib.as_array(ctypes.cast(base, ctypes.POINTER(ctype)), shape=shape)

    def __call__(self, caller: Any, ntimestep: int, nlocal: int, tag: Any, x: Any, fexternal: Any) -> None:
        lmp = self.lmp
        nall = nlocal + int(lmp.extract_global("nghost"))
        pos = np.array(self._atoms("x", ctypes.c_double, (nall, 3)))
        types = self._atoms("type", ctypes.c_int, (nall,))
        tag_type = ctypes.c_int64 if lmp.extract_setting("tagint") == 8 else ctypes.c_int32
        tags = np.asarray(self._atoms("id", tag_type, (nall,)), dtype=np.int64)
        ntypes = len(self.type_species)
        if types.size and (int(types.min()) < 1 or int(types.max()) > ntypes):
            raise ValueError(
                f"atom types must be in 1..{ntypes} (the element mapping), got {types.min()}..{types.max()}"
            )
        species = self.type_species[types - 1]
        cfg = self.potential.config
        # neighbour list of the cloud (no periodicity: ghosts are the images)
        recv, send, _ = neighbour_list(pos, np.zeros((3, 3)), [False] * 3, cfg.cutoff, min_distance=None)
        # fold ghost images of local atoms onto them; drop edges received by a folded ghost
        _, first, inverse = np.unique(tags, return_index=True, return_inverse=True)
        rep = first[inverse.reshape(-1)]
        folded = (np.arange(nall) >= nlocal) & (rep < nlocal)
        keep = ~folded[recv]
        recv, send = recv[keep], send[keep]
        kept_rows = np.flatnonzero(~folded)
        node_of_row = np.full(nall, -1, dtype=np.int64)
        node_of_row[kept_rows] = np.arange(len(kept_rows))
        node_of_row[folded] = node_of_row[rep[folded]]
        vectors = pos[send] - pos[recv]
        # unit shifts only tell images apart for the radial pairing; a folded sender's image offset
        shifts = np.zeros((len(send), 3), dtype=np.int64)
        moved = folded[send]
        if moved.any():
            lo, hi, xy, yz, xz, _, _ = lmp.extract_box()
            prd = np.asarray(hi) - np.asarray(lo)
            cell = cell_from_h(np.array([prd[0], prd[1], prd[2], yz, xz, xy]))
            d = pos[send[moved]] - pos[rep[send[moved]]]
            shifts[moved] = np.rint(d @ np.linalg.inv(cell)).astype(np.int64)
        graph = PairGraph(species[kept_rows], node_of_row[send], node_of_row[recv], shifts, nlocal)
        vec = ad.tensor(vectors.astype(cfg.dtype), requires_grad=True)
        site = self.potential.site_energies(graph, vec)
        e_local = ad.sum(site[:nlocal])
        (g,) = ad.grad(e_local, [vec], allow_unused=True)
        g = np.zeros_like(vectors) if g is None else np.asarray(g.data, dtype=np.float64)
        # dE/dx: +g at the sender row, -g at the receiver row; summed by atom ID over all ranks
        grad_rows = np.zeros((nall, 3))
        np.add.at(grad_rows, send, g)
        np.add.at(grad_rows, recv, -g)
        n_ids = int(self.comm.allreduce(int(tags.max(initial=0)), op=self.mpi.MAX))
        grad_ids = np.zeros((n_ids, 3))
        np.add.at(grad_ids, tags - 1, grad_rows)
        self.comm.Allreduce(self.mpi.IN_PLACE, grad_ids, op=self.mpi.SUM)
        forces = -grad_ids[tags[:nlocal] - 1]
        if nlocal:
            fexternal[:] = forces
        virial = -np.einsum("ea,eb->ab", vectors, g)
        totals = np.array([float(e_local.data), *virial[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]])
        self.comm.Allreduce(self.mpi.IN_PLACE, totals, op=self.mpi.SUM)
        lmp.fix_external_set_energy_global(self.fix_id, float(totals[0]))
        lmp.fix_external_set_virial_global(self.fix_id, [float(v) for v in totals[1:]])
        self.stats = {"local": nlocal, "cloud": len(kept_rows), "edges": len(send)}


def attach_external(
    lmp: Any,
    model: Potential | str | os.PathLike[str],
    elements: Sequence[str],
    fix_id: str = "mlip",
    skin: float = 2.0,
) -> ExternalModel:
    """Add ``fix <fix_id> all external pf/callback 1 1`` evaluating ``model`` (call on every rank, after the box).

    Args:
        elements: element of LAMMPS type 1, 2, ... (every type must be given).
        skin: the ``neighbor`` skin of the input (Å); the ghost cutoff is ``num_layers * r_c + skin``.

    Returns:
        The callback object (its ``stats`` describe the last evaluation).
    """
    obj = ExternalModel(lmp, model, elements, fix_id)
    ntypes = int(lmp.extract_global("ntypes"))
    if len(elements) != ntypes:
        raise ValueError(f"the box has {ntypes} atom types but {len(elements)} elements were given: {list(elements)}")
    ghost = obj.potential.config.num_layers * obj.potential.config.cutoff + float(skin)
    lmp.commands_list(
        [
            f"comm_modify cutoff {ghost!r}",
            f"fix {fix_id} all external pf/callback 1 1",
            f"fix_modify {fix_id} energy yes virial yes",
        ]
    )
    lmp.set_fix_external_callback(fix_id, obj, lmp)
    return obj
