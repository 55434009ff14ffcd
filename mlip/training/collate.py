"""Graphs of single structures and their concatenation into batches (no neighbour search per step).

Every structure's neighbour list is built once (:func:`mlip.data.batch_structures`, then
:func:`split_batch`); a batch is a cheap concatenation of those graphs (:func:`collate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data import Batch

__all__ = ["collate", "split_batch"]


def split_batch(batch: Batch) -> list[Batch]:
    """One single-structure :class:`Batch` per structure of ``batch`` (indices made local)."""
    out = []
    eptr = np.concatenate([[0], np.cumsum(np.asarray(batch.n_edges))])
    for s in range(batch.num_structures):
        a0, a1 = int(batch.ptr[s]), int(batch.ptr[s + 1])
        e0, e1 = int(eptr[s]), int(eptr[s + 1])

        def lab(name: str, per_atom: bool, s: int = s, a0: int = a0, a1: int = a1) -> Any:
            v = getattr(batch, name)
            if v is None:
                return None
            return v[a0:a1] if per_atom else v[s : s + 1]

        out.append(
            Batch(
                positions=batch.positions[a0:a1],
                numbers=batch.numbers[a0:a1],
                species=batch.species[a0:a1],
                cell=batch.cell[s : s + 1],
                pbc=batch.pbc[s : s + 1],
                batch=np.zeros(a1 - a0, dtype=np.int64),
                ptr=np.array([0, a1 - a0], dtype=np.int64),
                n_atoms=batch.n_atoms[s : s + 1],
                receivers=batch.receivers[e0:e1] - a0,
                senders=batch.senders[e0:e1] - a0,
                unit_shifts=batch.unit_shifts[e0:e1],
                edge_batch=np.zeros(e1 - e0, dtype=np.int64),
                n_edges=batch.n_edges[s : s + 1],
                cutoff=batch.cutoff,
                species_table=batch.species_table,
                weights=batch.weights[s : s + 1],
                energy=lab("energy", False),
                forces=lab("forces", True),
                stress=lab("stress", False),
                energy_mask=lab("energy_mask", False),
                forces_mask=lab("forces_mask", False),
                stress_mask=lab("stress_mask", False),
            )
        )
    return out


def collate(graphs: Sequence[Batch]) -> Batch:
    """Concatenate batches (e.g. single-structure graphs from :func:`split_batch`) into one.

    Works on NumPy or CuPy arrays (those of the inputs); no neighbour search is done. A label missing
    from some inputs is filled with zeros and masked out.
    """
    return Batch.concatenate(graphs)
