"""Data of a training run: reading the files, checking the labels, building every graph once, statistics.

``avg_num_neighbors`` = edges / atoms of the training set; ``energy_scale`` = RMS of the training force
components (eV/Å); per-element energies from :mod:`mlip.training.energies`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.backend import module_for_device, to_host

from ..data import Batch, SpeciesTable, batch_structures, read_structures
from ..model import ModelConfig
from .collate import collate, split_batch
from .config import TrainConfig
from .energies import reference_energies
from .errors import DataError

__all__ = ["PreparedData", "load_isolated_energies", "prepare_data", "read_labelled"]


def read_labelled(path: str | os.PathLike[str], what: str = "data") -> list[Atoms]:
    """Read structures from a file; a missing, unreadable or empty file raises :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{what} file {path} is empty: no structures")
    try:
        structures = read_structures(path)
    except Exception as err:  # ASE raises many kinds of errors for malformed files
        raise DataError(f"cannot read {what} file {path}: {err}") from err
    if not structures:
        raise DataError(f"{what} file {path} holds no structures")
    return structures


def load_isolated_energies(
    source: str | os.PathLike[str] | Sequence[Atoms], energy_key: str = "energy"
) -> dict[str, float]:
    """Per-element reference energies (eV) from single-atom structures with energies.

    Args:
        source: a file (any ASE format) or a list of structures, each a single atom with an energy.
        energy_key: the energy label.

    Returns:
        ``{symbol: energy}``.

    Raises:
        DataError: a structure with more than one atom or without an energy, or an element twice.
    """
    from ..data import labels_from_atoms

    name = str(source) if isinstance(source, (str, os.PathLike)) else "the isolated atoms"
    structures = read_labelled(source, "isolated atoms") if isinstance(source, (str, os.PathLike)) else list(source)
    if not structures:
        raise DataError(f"{name}: no isolated-atom structures")
    out: dict[str, float] = {}
    for k, atoms in enumerate(structures):
        if len(atoms) != 1:
            raise DataError(f"{name}: structure {k} has {len(atoms)} atoms; isolated-atom energies need one atom each")
        sym = atoms.get_chemical_symbols()[0]
        e = labels_from_atoms(atoms, energy_key, None, None, None, None, index=k).energy
        if e is None:
            raise DataError(f"{name}: structure {k} ({sym}) has no energy ({energy_key!r})")
        if sym in out:
            raise DataError(f"{name}: element {sym} appears twice")
        out[sym] = float(e)
    return out


@dataclass
class PreparedData:
    """Graphs and statistics of a training run.

    Attributes:
        model_config: the complete model config (statistics filled in).
        table: species table (the model's elements).
        train: single-structure graphs of the training set (device arrays).
        valid: single-structure graphs of the validation set (device arrays).
        valid_batches: validation batches (fixed, built once).
        fingerprint: SHA-256 of the training and validation data (checked on resume).
        force_rms: RMS of the training force components (eV/Å), ``nan`` without forces.
    """

    model_config: ModelConfig
    table: SpeciesTable
    train: list[Batch]
    valid: list[Batch]
    valid_batches: list[Batch]
    fingerprint: str
    force_rms: float


def _required_labels(config: TrainConfig) -> tuple[str, ...]:
    req = []
    if config.energy_weight > 0:
        req.append("energy")
    if config.forces_weight > 0:
        req.append("forces")
    if config.stress_weight > 0:
        req.append("stress")
    return tuple(req)


def _batch(structures: Sequence[Atoms], config: TrainConfig, table: SpeciesTable, cutoff: float, name: str) -> Batch:
    try:
        return batch_structures(
            structures,
            cutoff,
            table,
            dtype=np.dtype(config.dtype),
            min_distance=config.min_distance,
            require_labels=_required_labels(config),
            energy_key=config.energy_key,
            forces_key=config.forces_key,
            stress_key=config.stress_key,
        )
    except ValueError as err:
        hint = ""
        text = str(err)
        if "has no forces" in text:
            hint = " (forces_weight > 0 needs forces on every structure; set forces_weight 0 to fit energies only)"
        elif "has no stress" in text:
            hint = " (stress_weight > 0 needs a stress or virial on every structure)"
        elif "has no energy" in text:
            hint = " (energy_weight > 0 needs an energy on every structure)"
        elif "not in the species table" in text:
            hint = " (add the element to model.elements)"
        raise DataError(f"{name}: {text}{hint}") from err


def _fingerprint(*batches: Batch) -> str:
    h = hashlib.sha256()
    for b in batches:
        for name in ("numbers", "positions", "cell", "energy", "forces", "stress", "weights"):
            v = getattr(b, name)
            if v is not None:
                h.update(name.encode())
                h.update(np.ascontiguousarray(to_host(v), dtype=np.float64).tobytes())
    return h.hexdigest()


def prepare_data(
    config: TrainConfig,
    train_structures: Sequence[Atoms] | None = None,
    valid_structures: Sequence[Atoms] | None = None,
    isolated_energies: Mapping[str, float] | None = None,
) -> PreparedData:
    """Read (or take) the data, check it, build every graph once and compute the model statistics.

    Structures passed here take precedence over ``config.train_file`` / ``valid_file`` /
    ``isolated_atoms_file``.

    Raises:
        DataError: missing/empty/unreadable files, a missing required label, an element without a
            reference energy or outside ``model.elements``, too few structures to split.
    """
    if train_structures is None:
        if config.train_file is None:
            raise DataError("no training data: give train_file (--train-file) or structures")
        train_structures = read_labelled(config.train_file, "training")
        train_name = str(config.train_file)
    else:
        train_structures = list(train_structures)
        train_name = "training structures"
    if not train_structures:
        raise DataError("no training structures")
    if valid_structures is None and config.valid_file is not None:
        valid_structures = read_labelled(config.valid_file, "validation")
    if valid_structures is None:
        from ..reference_data import split

        if len(train_structures) < 2:
            raise DataError(f"{train_name}: need at least 2 structures to hold out a validation set")
        train_structures, valid_structures = split(
            train_structures, (1.0 - config.valid_fraction, config.valid_fraction), seed=config.seed
        )
    valid_structures = list(valid_structures)
    if not valid_structures:
        raise DataError("no validation structures")
    if isolated_energies is None and config.isolated_atoms_file is not None:
        isolated_energies = load_isolated_energies(config.isolated_atoms_file, config.energy_key)

    model = dict(config.model)
    if "elements" in model:
        table = SpeciesTable(model["elements"])
    else:
        table = SpeciesTable.from_structures(list(train_structures) + list(valid_structures))
    model["elements"] = table.symbols
    cutoff = float(model.get("cutoff", ModelConfig.__dataclass_fields__["cutoff"].default))
    full_train = _batch(train_structures, config, table, cutoff, train_name)
    full_valid = _batch(valid_structures, config, table, cutoff, str(config.valid_file or "validation structures"))
    if isolated_energies is not None:
        missing = [s for s in table.symbols if s not in isolated_energies]
        if missing:
            raise DataError(
                f"element(s) {', '.join(missing)} of the data have no isolated-atom energy "
                f"({config.isolated_atoms_file or 'isolated energies'} gives: {', '.join(isolated_energies) or 'none'})"
            )
    _, mu = reference_energies(full_train, table, isolated_energies)
    forces = to_host(full_train.forces) if full_train.forces is not None else None
    if forces is not None and full_train.forces_mask is not None:
        forces = forces[np.repeat(to_host(full_train.forces_mask), to_host(full_train.n_atoms))]
    force_rms = math.nan
    if forces is not None and forces.size:
        force_rms = float(np.sqrt(np.mean(forces.astype(np.float64) ** 2)))
    model.setdefault("avg_num_neighbors", max(full_train.num_edges / full_train.num_atoms, 1e-6))
    model.setdefault("atomic_energies", tuple(float(v) for v in mu))
    model.setdefault("energy_scale", force_rms if math.isfinite(force_rms) and force_rms > 0 else 1.0)
    model["dtype"] = config.dtype
    try:
        model_config = ModelConfig.from_dict(model)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model: {err}") from err

    xp = module_for_device(config.device)
    train_graphs = [g.to(xp) if xp is not np else g for g in split_batch(full_train)]
    valid_graphs = [g.to(xp) if xp is not np else g for g in split_batch(full_valid)]
    vb = config.valid_batch_size
    valid_batches = [collate(valid_graphs[i : i + vb]) for i in range(0, len(valid_graphs), vb)]
    return PreparedData(
        model_config=model_config,
        table=table,
        train=train_graphs,
        valid=valid_graphs,
        valid_batches=valid_batches,
        fingerprint=_fingerprint(full_train, full_valid),
        force_rms=force_rms,
    )
