"""The species table: atomic numbers to contiguous species indices ``0 .. S-1``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

__all__ = ["SpeciesTable", "element_name"]


def element_name(z: int) -> str:
    return f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}"


class SpeciesTable:
    """Map atomic numbers to contiguous species indices ``0 .. S-1`` in the order given.

    Args:
        elements: chemical symbols (``"H"``) or atomic numbers (``1``), no repeats; the position of an
            element in this sequence is its species index.
    """

    __slots__ = ("_lookup", "numbers")

    def __init__(self, elements: Iterable[str | int]) -> None:
        numbers: list[int] = []
        for e in elements:
            if isinstance(e, str):
                if e not in atomic_numbers or e == "X":
                    raise ValueError(f"unknown chemical symbol {e!r}")
                z = atomic_numbers[e]
            elif isinstance(e, (int, np.integer)) and not isinstance(e, bool):
                z = int(e)
                if not 1 <= z < len(chemical_symbols):
                    raise ValueError(f"atomic number {z} is out of range 1..{len(chemical_symbols) - 1}")
            else:
                raise ValueError(f"an element must be a chemical symbol or an atomic number, got {e!r}")
            if z in numbers:
                raise ValueError(f"element {element_name(z)} appears twice in the species table")
            numbers.append(z)
        if not numbers:
            raise ValueError("a species table needs at least one element")
        #: atomic numbers, in species-index order
        self.numbers: tuple[int, ...] = tuple(numbers)
        lookup = np.full(len(chemical_symbols), -1, dtype=np.int64)
        lookup[list(numbers)] = np.arange(len(numbers))
        self._lookup = lookup

    @classmethod
    def from_structures(cls, atoms_list: Iterable[Atoms]) -> SpeciesTable:
        """The table of every element present in ``atoms_list``, sorted by atomic number."""
        found: set[int] = set()
        for atoms in atoms_list:
            found.update(int(z) for z in np.unique(atoms.numbers))
        return cls(sorted(found))

    @property
    def symbols(self) -> tuple[str, ...]:
        """Chemical symbols, in species-index order."""
        return tuple(chemical_symbols[z] for z in self.numbers)

    def __len__(self) -> int:
        return len(self.numbers)

    def __contains__(self, element: object) -> bool:
        if isinstance(element, str):
            return element in self.symbols
        return element in self.numbers

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpeciesTable) and other.numbers == self.numbers

    def __hash__(self) -> int:
        return hash(self.numbers)

    def __repr__(self) -> str:
        return f"SpeciesTable({self.symbols!r})"

    def index(self, numbers: np.ndarray | Sequence[int], structure: int | None = None) -> np.ndarray:
        """Species indices of atomic numbers.

        Args:
            numbers: (N,) atomic numbers.
            structure: index of the structure they come from, only used in the error message.

        Returns:
            (N,) int64 species indices.

        Raises:
            ValueError: naming the elements missing from the table (and the structure).
        """
        z = np.asarray(numbers, dtype=np.int64).reshape(-1)
        in_range = (z >= 0) & (z < len(self._lookup))
        idx = np.full(z.shape, -1, dtype=np.int64)
        idx[in_range] = self._lookup[z[in_range]]
        if (idx < 0).any():
            unknown = ", ".join(element_name(int(u)) for u in np.unique(z[idx < 0]))
            where = f"structure {structure} contains" if structure is not None else "found"
            raise ValueError(f"{where} element(s) {unknown} not in the species table ({', '.join(self.symbols)})")
        return idx
