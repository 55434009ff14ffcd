"""Graphs of single structures and their concatenation into batches (no neighbour search per step).

Every structure's neighbour list is built once (:func:`mlip.data.batch_structures`, then
:func:`mlip.data.split_batch`); a batch is a cheap concatenation of those graphs (:func:`collate`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data import Batch, split_batch

__all__ = ["collate", "split_batch"]


def collate(graphs: Sequence[Batch]) -> Batch:
    """Concatenate batches (e.g. single-structure graphs from :func:`split_batch`) into one.

    Works on NumPy or CuPy arrays (those of the inputs); no neighbour search is done. A label missing
    from some inputs is filled with zeros and masked out.
    """
    return Batch.concatenate(graphs)
