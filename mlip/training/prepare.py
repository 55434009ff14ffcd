"""Data of a training run: read and check every file, build every graph once, compute the model statistics.

``avg_num_neighbors`` = edges / atoms of the training set (an error when there is no edge at all);
``energy_scale`` = RMS of the training force components (eV/Å); per-element energies from
:mod:`mlip.training.energies`. The model's elements are ``model.elements`` when given, those of the
``init_from`` model when fine-tuning, else those of the training structures; an element of the
validation or test data outside them is an error naming the element, the structure and the file.
Everything here happens before the output folder is touched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.backend import module_for_device, to_host

from ..data import Batch, SpeciesTable
from ..model import ModelConfig, load_model
from .checkpoint import DERIVED_MODEL_FIELDS
from .collate import collate, split_batch
from .config import TrainConfig
from .energies import reference_energies
from .errors import DataError
from .sources import Source, batch_source, fingerprint, load_isolated_energies, read_labelled, smallest_distance

__all__ = ["PreparedData", "load_isolated_energies", "prepare_data", "read_labelled"]


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
        notes: warnings for the user (printed by the trainer).
        init_params: parameters of the ``init_from`` model (``None`` without one).
        test_sets: ``(file, structures)`` of each ``test_files`` entry.
    """

    model_config: ModelConfig
    table: SpeciesTable
    train: list[Batch]
    valid: list[Batch]
    valid_batches: list[Batch]
    fingerprint: str
    force_rms: float
    notes: list[str] = field(default_factory=list)
    init_params: dict[str, np.ndarray] | None = None
    test_sets: list[tuple[str, list[Atoms]]] = field(default_factory=list)


def _sources(
    config: TrainConfig, train_structures: Sequence[Atoms] | None, valid_structures: Sequence[Atoms] | None
) -> tuple[Source, Source]:
    if train_structures is None:
        if config.train_file is None:
            raise DataError("no training data: give train_file (--train-file) or structures")
        train = Source.of(str(config.train_file), read_labelled(config.train_file, "training"))
    else:
        train = Source.of("the training structures", train_structures)
    if not train.structures:
        raise DataError("no training structures")
    if valid_structures is not None:
        valid = Source.of("the validation structures", valid_structures)
    elif config.valid_file is not None:
        valid = Source.of(str(config.valid_file), read_labelled(config.valid_file, "validation"))
    else:
        from ..reference_data import split

        if len(train.structures) < 2:
            raise DataError(f"{train.name}: need at least 2 structures to hold out a validation set")
        t, v = split(train.structures, (1.0 - config.valid_fraction, config.valid_fraction), seed=config.seed)
        train, valid = train.subset(t), train.subset(v)
    if not valid.structures:
        raise DataError("no validation structures")
    return train, valid


def _fine_tune_base(config: TrainConfig, model: dict[str, Any], asked_e0: bool) -> tuple[dict, dict]:
    """The model options and parameters of ``config.init_from`` merged under the user's ``model``.

    Raises:
        ValueError: a user model option that changes the architecture of the loaded model.
    """
    loaded, params = load_model(config.init_from)
    stored = loaded.to_dict()
    diffs = [
        f"{k}: model {stored[k]!r}, now {v!r}"
        for k, v in ModelConfig(**{**stored, **model}).to_dict().items()
        if k in model and k not in DERIVED_MODEL_FIELDS and v != stored[k]
    ]
    if diffs:
        raise ValueError(
            f"init_from {config.init_from}: fine-tuning keeps the architecture of the model, but the model options "
            f"differ from it: {'; '.join(diffs)}"
        )
    for k, v in stored.items():
        if k != "dtype" and not (k == "atomic_energies" and asked_e0):
            model.setdefault(k, v)
    return model, params


def _test_set(name: str, config: TrainConfig, table: SpeciesTable, hint: str) -> list[Atoms]:
    """The structures of a test file, each with an energy and only the model's elements."""
    from ..data import labels_from_atoms

    structures = read_labelled(name, "test")
    for k, atoms in enumerate(structures):
        try:
            table.index(atoms.numbers, structure=k)
        except ValueError as err:
            raise DataError(str(err).replace(f"structure {k} ", f"structure {k} of {name} ", 1) + hint) from err
        if labels_from_atoms(atoms, config.energy_key, None, None, None, None, index=k).energy is None:
            raise DataError(f"structure {k} of {name} has no energy ({config.energy_key!r}); a test set needs energies")
    return structures


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
            reference energy or outside the model's elements, too few structures to split, no edge
            within the cutoff, E0 that the data cannot determine.
        ValueError: an ``init_from`` model whose architecture differs from the model options.
    """
    train, valid = _sources(config, train_structures, valid_structures)
    if isolated_energies is not None and config.e0 is not None:
        raise ValueError(f"isolated-atom energies are given, so e0 = {config.e0!r} would not be used: drop one")
    if isolated_energies is None and config.isolated_atoms_file is not None:
        isolated_energies = load_isolated_energies(config.isolated_atoms_file, config.energy_key)
    asked_e0 = isolated_energies is not None or config.e0 is not None or config.e0_shift
    model = dict(config.model)
    init_params = None
    if config.init_from is not None:
        model, init_params = _fine_tune_base(config, model, asked_e0)
        hint = f" (the model {config.init_from} knows only {', '.join(model['elements'])}; it cannot learn an element)"
    elif "elements" in model:
        hint = " (add the element to model.elements)"
    else:
        model["elements"] = SpeciesTable.from_structures(train.structures).symbols
        hint = (
            " (the model's elements are those of the training data; an element seen only outside it cannot be "
            "learnt: add structures with it to the training data)"
        )
    table = SpeciesTable(model["elements"])
    model["elements"] = table.symbols
    cutoff = float(model.get("cutoff", ModelConfig.__dataclass_fields__["cutoff"].default))
    full_train = batch_source(train, config, table, cutoff, hint)
    full_valid = batch_source(valid, config, table, cutoff, hint)
    test_sets = [(name, _test_set(name, config, table, hint)) for name in config.test_files]
    if full_train.num_edges == 0:
        d, where = smallest_distance(train)
        raise DataError(
            f"{train.name}: no two atoms of the training structures are within the cutoff {cutoff:g} Å, so the model "
            f"would see no neighbours; the smallest interatomic distance is {d:.4g} Å ({where}): "
            "raise the cutoff (--cutoff) above it"
        )
    if isolated_energies is not None:
        missing = [s for s in table.symbols if s not in isolated_energies]
        if missing:
            raise DataError(
                f"element(s) {', '.join(missing)} of the data have no isolated-atom energy "
                f"({config.isolated_atoms_file or 'isolated energies'} gives: {', '.join(isolated_energies) or 'none'})"
            )
    notes: list[str] = []
    if "atomic_energies" not in model:
        mode = config.e0 or "least-squares"
        _, mu = reference_energies(full_train, table, isolated_energies, mode=mode, shift=config.e0_shift, notes=notes)
        model["atomic_energies"] = tuple(float(v) for v in mu)
    forces = to_host(full_train.forces) if full_train.forces is not None else None
    if forces is not None and full_train.forces_mask is not None:
        forces = forces[np.repeat(to_host(full_train.forces_mask), to_host(full_train.n_atoms))]
    force_rms = math.nan
    if forces is not None and forces.size:
        force_rms = float(np.sqrt(np.mean(forces.astype(np.float64) ** 2)))
    model.setdefault("avg_num_neighbors", full_train.num_edges / full_train.num_atoms)
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
        fingerprint=fingerprint(full_train, full_valid),
        force_rms=force_rms,
        notes=notes,
        init_params=init_params,
        test_sets=test_sets,
    )
