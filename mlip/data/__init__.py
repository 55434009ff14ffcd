"""Structures in, batched graphs out: species table, neighbour lists, labels and the :class:`Batch`.

Units follow ASE: positions and cells in Å, energies in eV, forces in eV/Å, stress in eV/Å³
(ASE sign convention, ``stress = (1/V) dE/dε = -virial / V``).

**Edge convention.** Edge ``e`` goes from the *sender* ``j = senders[e]`` to the *receiver*
``i = receivers[e]`` (atom ``i`` receives the message of ``j``), with ::

    vector_e = positions[j] - positions[i] + unit_shifts[e] @ cell[s]      (Å, s = edge_batch[e])

and ``0 < |vector_e| < cutoff``. The list is full (both ``i <- j`` and ``j <- i`` appear, with opposite
shifts), has no self-edge with a zero shift, and keeps periodic images of an atom itself (``i == j``,
non-zero shift) when they lie inside the cutoff. Indices are global (offset by ``ptr``), and edges are
sorted by receiver, then sender, then shift, so that a batch is deterministic. Neighbours are found by
`vesin <https://github.com/Luthaf/vesin>`_ in float64, whatever the float dtype of the batch.

Modules: :mod:`~mlip.data.species` (the species table), :mod:`~mlip.data.reading` (structures and
labels from files), :mod:`~mlip.data.neighbours` (neighbour lists), :mod:`~mlip.data.graph` (edge
vectors, reverse-edge pairs), :mod:`~mlip.data.batch` (the :class:`Batch`, :func:`batch_structures`),
:mod:`~mlip.data.collate` (joining batches). Every public name is importable from ``mlip.data``.

Nothing here imports CuPy unless :meth:`Batch.to` is asked for it.
"""

from .batch import Batch, batch_structures
from .collate import concatenate_batches
from .graph import EdgePairs, edge_offsets, edge_vectors, reverse_edge_pairs
from .neighbours import MAX_EDGES_PER_STRUCTURE, neighbour_list
from .reading import Labels, labels_from_atoms, read_structures
from .species import SpeciesTable

__all__ = [
    "MAX_EDGES_PER_STRUCTURE",
    "Batch",
    "EdgePairs",
    "Labels",
    "SpeciesTable",
    "batch_structures",
    "concatenate_batches",
    "edge_offsets",
    "edge_vectors",
    "labels_from_atoms",
    "neighbour_list",
    "read_structures",
    "reverse_edge_pairs",
]
