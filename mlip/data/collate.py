"""Joining batches into one without a new neighbour search (training mini-batches of pre-built graphs).

Atom indices of part ``k`` are offset by the atoms before it; structure indices by the structures before
it. A label missing from some parts is filled with zeros and masked out. The reverse-edge pairs of the
parts (each computed once and cached on its part) are concatenated, so re-collating the same graphs
every epoch never recomputes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cartesian_irreps.runtime.backend import module_of, to_host

from .batch import Batch
from .graph import EdgePairs

__all__ = ["concatenate_batches"]


def _labels(graphs: Sequence[Batch], name: str, per_atom: bool, xp: Any) -> tuple[Any, Any]:
    """The label ``name`` of every part and its mask, concatenated (``None, None`` if no part has it)."""
    values = [getattr(g, name) for g in graphs]
    if all(v is None for v in values):
        return None, None
    masks = []
    arrays = []
    for g, v in zip(graphs, values):
        m = getattr(g, f"{name}_mask")
        if v is None:
            shape = (g.num_atoms, 3) if per_atom else (g.num_structures, *((3, 3) if name == "stress" else ()))
            v = xp.zeros(shape, dtype=g.positions.dtype)
            m = xp.zeros(g.num_structures, dtype=bool)
        arrays.append(v)
        masks.append(m if m is not None else xp.ones(g.num_structures, dtype=bool))
    return xp.concatenate(arrays), xp.concatenate(masks)


def concatenate_batches(graphs: Sequence[Batch]) -> Batch:
    """Concatenate batches (e.g. single-structure graphs) into one, on the array module of the inputs.

    Args:
        graphs: the parts, all with the same species table, cutoff and float dtype.

    Returns:
        One :class:`Batch` with ``sum(S_k)`` structures; a single part is returned as it is.

    Raises:
        ValueError: no parts.
    """
    if not graphs:
        raise ValueError("concatenating batches needs at least one batch")
    if len(graphs) == 1:
        return graphs[0]
    xp = module_of(graphs[0].positions)
    # index bookkeeping on the host from the array shapes (no device round trip)
    atoms_per = [g.num_atoms for g in graphs]
    edges_per = [g.num_edges for g in graphs]
    structures_per = [g.num_structures for g in graphs]
    offsets = np.cumsum([0, *atoms_per[:-1]])
    n_atoms = xp.concatenate([g.n_atoms for g in graphs])
    n_edges = xp.concatenate([g.n_edges for g in graphs])
    S = sum(structures_per)
    ptr = xp.concatenate([xp.zeros(1, dtype=np.int64), xp.cumsum(n_atoms)])
    if all(k == 1 for k in structures_per):  # single-structure graphs: one id per graph
        batch_index = np.repeat(np.arange(S, dtype=np.int64), atoms_per)
        edge_batch = np.repeat(np.arange(S, dtype=np.int64), edges_per)
    else:
        starts = np.cumsum([0, *structures_per[:-1]])
        batch_index = np.concatenate([to_host(g.batch) + int(o) for g, o in zip(graphs, starts)])
        edge_batch = np.concatenate([to_host(g.edge_batch) + int(o) for g, o in zip(graphs, starts)])
    energy, energy_mask = _labels(graphs, "energy", False, xp)
    forces, forces_mask = _labels(graphs, "forces", True, xp)
    stress, stress_mask = _labels(graphs, "stress", False, xp)
    out = Batch(
        positions=xp.concatenate([g.positions for g in graphs]),
        numbers=xp.concatenate([g.numbers for g in graphs]),
        species=xp.concatenate([g.species for g in graphs]),
        cell=xp.concatenate([g.cell for g in graphs]),
        pbc=xp.concatenate([g.pbc for g in graphs]),
        batch=xp.asarray(batch_index),
        ptr=ptr,
        n_atoms=n_atoms,
        receivers=xp.concatenate([g.receivers + int(o) for g, o in zip(graphs, offsets)]),
        senders=xp.concatenate([g.senders + int(o) for g, o in zip(graphs, offsets)]),
        unit_shifts=xp.concatenate([g.unit_shifts for g in graphs]),
        edge_batch=xp.asarray(edge_batch),
        n_edges=n_edges,
        cutoff=graphs[0].cutoff,
        species_table=graphs[0].species_table,
        weights=xp.concatenate([g.weights for g in graphs]),
        energy=energy,
        forces=forces,
        stress=stress,
        energy_mask=energy_mask,
        forces_mask=forces_mask,
        stress_mask=stress_mask,
    )
    out.set_edge_pairs(EdgePairs.concatenate([g.edge_pairs() for g in graphs]))
    return out
