"""Training of the potential: loss, Adam (AMSGrad), EMA, plateau scheduler, data preparation, checkpoints.

Units follow ASE: energies in eV, forces in eV/Å, stress in eV/Å³, lengths in Å, times in seconds
(``max_minutes`` in minutes); errors are reported in meV/atom and meV/Å.

**Loss** (summed over the structures b of a batch, as in the paper)::

    L = w_E Σ_b ω_b (ΔE_b / N_b)²  +  w_F Σ_b ω_b Σ_{i∈b} |ΔF_i|²  +  w_S Σ_b ω_b |Δσ_b|²

with ``ΔX = X_pred - X_ref``, ``N_b`` atoms, per-structure weights ``ω_b`` (``info["weight"]``, 1 by
default), ``|Δσ|²`` the squared Frobenius norm of the (3, 3) stress error; ``w_E : w_F = 1 : 10`` by
default and ``w_S = 0``. Reported losses (``train_loss``, ``valid_loss``) are this sum over a whole set
divided by its number of structures, so training and validation values are comparable.

**Optimiser.** Adam with AMSGrad (PyTorch semantics: ``v̂ = max(v̂, v)``, bias-corrected), learning rate
0.01, L2 weight decay 5e-7 added to the gradient of the product-basis weights and of the second
linear of each interaction only (parameter names containing ``.product.`` or ``.linear.``). An
exponential moving average of the weights (decay 0.99, warmed up as ``min(decay, (1 + n) / (10 + n))``
after ``n`` updates) is what is validated and kept. The learning rate is multiplied by 0.8 when the
validation loss has not improved for ``patience`` (50) epochs.

**Data.** Every structure's neighbour list is built once (:func:`mlip.data.batch_structures`, then
split per structure); a batch is a cheap concatenation of those graphs (:func:`collate`), reshuffled
every epoch by a seeded :class:`numpy.random.Generator` (the global RNG is never used). Per-species
energies: ``E0_Z`` from isolated-atom energies when given, else least squares on the training set;
then ``mu_Z = E0_Z + δ_Z`` with ``δ`` the ridge (λ = 1) least-squares fit of the residual energy per atom
``(E_b - Σ_Z n_bZ E0_Z) / N_b ≈ Σ_Z (n_bZ / N_b) δ_Z`` (:attr:`mlip.model.ModelConfig.atomic_energies`);
``avg_num_neighbors`` = edges / atoms of the training set; ``energy_scale`` = RMS of the training force
components (eV/Å).

**Files** written into ``output_dir``:

* ``checkpoint.npz``: everything needed to continue exactly (pickle-free ``.npz``: flat float arrays
  ``params``, ``ema``, ``adam_m``, ``adam_v``, ``adam_vmax``, the epoch's permutation ``order`` and a
  ``__meta__`` JSON with the configs, parameter layout, counters, learning-rate and scheduler state, the
  RNG's ``bit_generator.state``, the best metric and the history); written atomically (temporary
  file, fsync, :func:`os.replace`) after every epoch and when interrupted (Ctrl-C / SIGTERM finish the
  current batch first);
* ``best.npz``: the EMA weights of the best validation epoch (:func:`mlip.model.save_model`);
* ``log.csv``: ``epoch,time_s,lr,train_loss,valid_loss,valid_energy_rmse_mev_atom,valid_force_rmse_mev_A``;
* ``learning_curve.png`` (every ``plot_every`` epochs and at the end) and ``train_config.json``.

An interrupted run continued with ``resume=True`` gives the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.backend import module_for_device, module_of, to_host

from . import autodiff as ad
from .data import Batch, SpeciesTable, batch_structures, read_structures
from .metrics import compute_metrics
from .model import ModelConfig, Potential, init_params, param_shapes, save_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "LOG_COLUMNS",
    "DataError",
    "PreparedData",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "collate",
    "load_checkpoint",
    "load_isolated_energies",
    "prepare_data",
    "read_labelled",
    "save_checkpoint",
    "split_batch",
    "train",
]

CHECKPOINT_FORMAT = "cartesian-irreps-mlip-checkpoint"
CHECKPOINT_VERSION = 1
LOG_COLUMNS = (
    "epoch",
    "time_s",
    "lr",
    "train_loss",
    "valid_loss",
    "valid_energy_rmse_mev_atom",
    "valid_force_rmse_mev_A",
)
#: Model-config fields computed from the training data (not chosen by the user).
DERIVED_MODEL_FIELDS = ("avg_num_neighbors", "atomic_energies", "energy_scale")
#: Training options that may change between an interrupted run and its ``--resume``.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "max_minutes", "output_dir", "plot_every", "progress", "device", "train_file", "valid_file"}
    | {"isolated_atoms_file", "valid_batch_size"}
)
RIDGE_LAMBDA = 1.0


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, an unusable checkpoint)."""


class DataError(ValueError):
    """A data file or a set of structures is unusable (names the file and the problem)."""


# ============================================================================================ config


@dataclass
class TrainConfig:
    """Options of a training run (JSON-serialisable; see ``docs/tutorial.md``).

    Attributes:
        train_file: labelled structures (extxyz or any ASE format); may be omitted when structures
            are passed to :class:`Trainer` directly.
        valid_file: validation structures; without it ``valid_fraction`` of the training file is
            held out (seeded).
        valid_fraction: fraction (0..1, exclusive) of the training structures held out for validation.
        isolated_atoms_file: single-atom structures with energies (eV), one per element: the
            per-element reference energies ``E0``; least squares on the training set otherwise.
        energy_key, forces_key, stress_key: label names in the files (see :func:`mlip.data.labels_from_atoms`).
        model: :class:`mlip.model.ModelConfig` fields (``channels``, ``lmax``, ``correlation``,
            ``cutoff`` in Å, ...); ``elements`` defaults to those of the training data (sorted by Z);
            ``avg_num_neighbors``, ``atomic_energies`` and ``energy_scale`` are computed unless given.
        seed: seeds the parameter initialisation, the train/validation split and the shuffling.
        epochs: total number of epochs (a resumed run continues up to this number).
        max_minutes: wall-clock budget of this invocation (minutes); ``None`` for none. At least one
            epoch is always completed; a new epoch is not started when the mean epoch time says it
            would not end within the budget.
        batch_size: structures per optimiser step.
        valid_batch_size: structures per validation evaluation (memory only; no effect on results).
        lr: initial learning rate.
        amsgrad: AMSGrad variant of Adam.
        beta1, beta2, eps: Adam constants.
        weight_decay: L2 coefficient on the ``.product.`` and ``.linear.`` weights.
        ema_decay: decay of the exponential moving average of the weights (0 disables it).
        energy_weight, forces_weight, stress_weight: ``w_E``, ``w_F``, ``w_S`` of the loss (Å² / eV² units
            folded in: the terms are (eV/atom)², (eV/Å)², (eV/Å³)²).
        patience: epochs without a validation-loss gain before the learning rate is reduced.
        lr_factor: factor (0..1) applied to the learning rate then.
        min_lr: the learning rate is not reduced below this.
        dtype: ``"float32"`` or ``"float64"``.
        device: ``"numpy"`` (CPU) or ``"cupy"`` (GPU).
        output_dir: folder of the checkpoint, best model, log and plots.
        plot_every: learning-curve refresh period (epochs).
        min_distance: smallest allowed interatomic distance (Å) in the data.
        progress: print a line per epoch (and a per-batch bar on a terminal).
    """

    train_file: str | None = None
    valid_file: str | None = None
    valid_fraction: float = 0.1
    isolated_atoms_file: str | None = None
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    model: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    epochs: int = 200
    max_minutes: float | None = None
    batch_size: int = 5
    valid_batch_size: int = 10
    lr: float = 0.01
    amsgrad: bool = True
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 5e-7
    ema_decay: float = 0.99
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 0.0
    patience: int = 50
    lr_factor: float = 0.8
    min_lr: float = 0.0
    dtype: str = "float64"
    device: str = "numpy"
    output_dir: str = "run"
    plot_every: int = 10
    min_distance: float = 0.5
    progress: bool = True

    def __post_init__(self) -> None:
        self.model = dict(self.model or {})
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming every impossible value."""
        p: list[str] = []

        def need(ok: bool, text: str) -> None:
            if not ok:
                p.append(text)

        def number(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                p.append(f"{name} must be a finite number, got {v!r}")
                return math.nan
            return float(v)

        def integer(name: str, low: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                p.append(f"{name} must be an integer >= {low}, got {v!r}")

        for name in ("epochs", "batch_size", "valid_batch_size", "plot_every"):
            integer(name, 1)
        integer("patience", 0)
        integer("seed", 0)
        vf = number("valid_fraction")
        need(not (vf == vf) or 0.0 < vf < 1.0, f"valid_fraction must lie strictly between 0 and 1, got {vf}")
        lr = number("lr")
        need(not (lr == lr) or lr > 0, f"lr must be > 0, got {lr}")
        for name in ("beta1", "beta2"):
            b = number(name)
            need(not (b == b) or 0.0 <= b < 1.0, f"{name} must lie in [0, 1), got {b}")
        eps = number("eps")
        need(not (eps == eps) or eps > 0, f"eps must be > 0, got {eps}")
        for name in ("weight_decay", "energy_weight", "forces_weight", "stress_weight", "min_lr"):
            v = number(name)
            need(not (v == v) or v >= 0, f"{name} must be >= 0, got {v}")
        if all(
            isinstance(getattr(self, n), (int, float)) and getattr(self, n) == 0
            for n in ("energy_weight", "forces_weight", "stress_weight")
        ):
            p.append("energy_weight, forces_weight and stress_weight are all 0: nothing to train on")
        d = number("ema_decay")
        need(not (d == d) or 0.0 <= d < 1.0, f"ema_decay must lie in [0, 1), got {d}")
        f = number("lr_factor")
        need(not (f == f) or 0.0 < f <= 1.0, f"lr_factor must lie in (0, 1], got {f}")
        md = number("min_distance")
        need(not (md == md) or md >= 0, f"min_distance must be >= 0 Å, got {md}")
        if self.max_minutes is not None:
            m = number("max_minutes")
            need(not (m == m) or m > 0, f"max_minutes must be > 0 (or null for no limit), got {m}")
        need(self.dtype in ("float32", "float64"), f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        need(self.device in ("numpy", "cupy"), f"device must be 'numpy' or 'cupy', got {self.device!r}")
        need(isinstance(self.amsgrad, bool), f"amsgrad must be true or false, got {self.amsgrad!r}")
        need(isinstance(self.progress, bool), f"progress must be true or false, got {self.progress!r}")
        for name in ("train_file", "valid_file", "isolated_atoms_file"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, str) and v != ""), f"{name} must be a file name or null, got {v!r}")
        for name in ("energy_key", "forces_key", "stress_key", "output_dir"):
            need(isinstance(getattr(self, name), str) and getattr(self, name) != "", f"{name} must be a string")
        if not isinstance(self.model, dict):
            p.append(f"model must be a JSON object of model options, got {self.model!r}")
        else:
            p.extend(_model_problems(self.model))
        if p:
            raise ValueError("invalid training config: " + "; ".join(p))

    def to_dict(self) -> dict[str, Any]:
        """Every option by name (JSON-serialisable)."""
        d = dataclasses.asdict(self)
        d["model"] = _jsonable(self.model)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error (with the list of known ones)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a training config must be a JSON object, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown training config keys: {unknown}; known keys: {known}")
        return cls(**dict(d))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """Read a JSON config file, then apply ``overrides`` (``model`` entries are merged)."""
        return cls.from_dict(merge_config(read_json_config(path), overrides or {}))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options changed (validated)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _model_problems(model: Mapping[str, Any]) -> list[str]:
    """Problems of a user model dict, found before any data is read."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(model) - known)
    if unknown:
        return [f"unknown model keys {unknown}; known model keys: {sorted(known - {'dtype'})}"]
    if "dtype" in model:
        return ["set the float type with the top-level 'dtype' option, not model.dtype"]
    trial = dict(model)
    if "elements" not in trial:
        trial["elements"] = ("H",)
        trial.pop("atomic_energies", None)
    try:
        ModelConfig.from_dict(trial)
    except (TypeError, ValueError) as err:
        return [f"model: {err}"]
    return []


def read_json_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON config file as a dict (clear errors for a missing file or bad JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of options, got {type(data).__name__}")
    return data


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``; the nested ``model`` dicts are merged key by key."""
    out = dict(base)
    for k, v in overrides.items():
        if k == "model" and isinstance(v, Mapping) and isinstance(out.get("model"), Mapping):
            out["model"] = {**out["model"], **v}
        else:
            out[k] = v
    return out


# ============================================================================================== data


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
    from .data import labels_from_atoms

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
    if not graphs:
        raise ValueError("collate needs at least one batch")
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

    def labels(name: str, per_atom: bool) -> tuple[Any, Any]:
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

    energy, energy_mask = labels("energy", False)
    forces, forces_mask = labels("forces", True)
    stress, stress_mask = labels("stress", False)
    return Batch(
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


def reference_energies(
    batch: Batch, table: SpeciesTable, isolated: Mapping[str, float] | None = None, ridge: float = RIDGE_LAMBDA
) -> tuple[np.ndarray, np.ndarray]:
    """Per-species ``E0`` and the shifted ``mu = E0 + δ`` (eV), see the module docstring.

    Args:
        batch: the training set (energies needed).
        table: species table.
        isolated: ``{symbol: energy (eV)}`` of isolated atoms, or ``None`` for least squares.
        ridge: λ of the ridge fit of ``δ``.

    Returns:
        ``(E0, mu)``, each ``(len(table),)`` float64.

    Raises:
        DataError: an element of the table missing from ``isolated``.
    """
    S = len(table)
    species = to_host(batch.species)
    counts = np.zeros((batch.num_structures, S))
    np.add.at(counts, (to_host(batch.batch), species), 1.0)
    if batch.energy is None:
        return np.zeros(S), np.zeros(S)
    energy = to_host(batch.energy).astype(np.float64)
    mask = to_host(batch.energy_mask) if batch.energy_mask is not None else np.ones(len(energy), bool)
    counts, energy = counts[mask], energy[mask]
    if isolated is not None:
        missing = [s for s in table.symbols if s not in isolated]
        if missing:
            raise DataError(
                f"no isolated-atom energy for element(s) {', '.join(missing)} "
                f"(given for: {', '.join(isolated) or 'none'})"
            )
        e0 = np.array([float(isolated[s]) for s in table.symbols])
    else:
        e0 = np.linalg.lstsq(counts, energy, rcond=None)[0] if len(energy) else np.zeros(S)
    n = counts.sum(axis=1)
    if not len(energy):
        return e0, e0.copy()
    a = counts / n[:, None]
    y = (energy - counts @ e0) / n
    delta = np.linalg.solve(a.T @ a + ridge * np.eye(S), a.T @ y)
    return e0, e0 + delta


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
        from .reference_data import split

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


# ============================================================================================== loss


@dataclass(frozen=True)
class _LossTerms:
    """Constant arrays of the loss of one batch (device arrays in the model dtype)."""

    energy_ref: Any
    energy_coef: Any  # (S,) w_E ω_b mask / N_b²
    forces_ref: Any
    forces_coef: Any  # (N, 1) w_F ω_b mask
    stress_ref: Any
    stress_coef: Any  # (S, 1, 1) w_S ω_b mask


def _loss_terms(batch: Batch, config: TrainConfig) -> _LossTerms:
    dt = batch.positions.dtype
    w = batch.weights.astype(np.float64)

    def mask(name: str) -> Any:
        m = getattr(batch, f"{name}_mask")
        return w * m if m is not None else w

    e_ref = e_coef = f_ref = f_coef = s_ref = s_coef = None
    if config.energy_weight > 0 and batch.energy is not None:
        n = batch.n_atoms.astype(np.float64)
        e_ref = batch.energy
        e_coef = (config.energy_weight * mask("energy") / (n * n)).astype(dt)
    if config.forces_weight > 0 and batch.forces is not None:
        f_ref = batch.forces
        f_coef = (config.forces_weight * mask("forces"))[batch.batch].astype(dt)[:, None]
    if config.stress_weight > 0 and batch.stress is not None:
        s_ref = batch.stress
        s_coef = (config.stress_weight * mask("stress")).astype(dt)[:, None, None]
    return _LossTerms(e_ref, e_coef, f_ref, f_coef, s_ref, s_coef)


def _loss_tensor(out: Mapping[str, Any], t: _LossTerms) -> ad.Tensor:
    """The batch loss as an autodiff Tensor (``out`` from ``evaluate(..., create_graph=True)``)."""
    total = None
    if t.energy_coef is not None:
        de = out["energy"] - t.energy_ref
        total = ad.sum(de * de * t.energy_coef)
    if t.forces_coef is not None:
        df = out["forces"] - t.forces_ref
        term = ad.sum(df * df * t.forces_coef)
        total = term if total is None else total + term
    if t.stress_coef is not None:
        ds = out["stress"] - t.stress_ref
        term = ad.sum(ds * ds * t.stress_coef)
        total = term if total is None else total + term
    assert total is not None
    return total


def _loss_value(out: Mapping[str, Any], t: _LossTerms) -> float:
    """The same loss from plain arrays (validation), as a Python float (float64 sums)."""
    total = 0.0
    if t.energy_coef is not None:
        de = (out["energy"] - t.energy_ref).astype(np.float64)
        total += float((de * de * t.energy_coef).sum())
    if t.forces_coef is not None:
        df = (out["forces"] - t.forces_ref).astype(np.float64)
        total += float((df * df * t.forces_coef).sum())
    if t.stress_coef is not None:
        ds = (out["stress"] - t.stress_ref).astype(np.float64)
        total += float((ds * ds * t.stress_coef).sum())
    return total


# ======================================================================================= checkpoints


def save_checkpoint(path: str | os.PathLike[str], meta: Mapping[str, Any], arrays: Mapping[str, Any]) -> Path:
    """Atomically write a pickle-free ``.npz``: ``arrays`` plus ``__meta__`` (JSON bytes).

    The file is written to ``<path>.tmp``, flushed and fsynced, then renamed over ``path``
    (:func:`os.replace`), so a crash leaves either the old or the new checkpoint, never a partial one;
    the temporary file is removed when writing fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: to_host(v) for k, v in arrays.items()}
    payload["__meta__"] = np.frombuffer(json.dumps(_jsonable(dict(meta))).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable (not possible on every platform)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_checkpoint`: ``(meta, arrays)``.

    Raises:
        FileNotFoundError: no file.
        TrainingError: not a readable checkpoint of this format and version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "__meta__" not in data.files:
                raise TrainingError(f"{path} is not a training checkpoint (no metadata)")
            meta = json.loads(bytes(data["__meta__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
    except TrainingError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise TrainingError(f"{path} is not a readable checkpoint (truncated or foreign): {err}") from err
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} has format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise TrainingError(
            f"{path} has checkpoint version {meta.get('version')}; this code reads version {CHECKPOINT_VERSION}"
        )
    return meta, arrays


# =========================================================================================== trainer


@dataclass
class TrainResult:
    """What a call of :meth:`Trainer.fit` did.

    Attributes:
        status: ``"completed"`` (epoch budget reached), ``"time_budget"`` (``max_minutes`` reached),
            ``"interrupted"`` (Ctrl-C, SIGTERM or a callback raising ``KeyboardInterrupt``; resumable).
        epochs_done: completed epochs (all sessions).
        best_epoch: epoch of ``best.npz`` (0 if none yet).
        best_valid: validation metrics of the best epoch (loss, meV/atom, meV/Å).
        best_path, checkpoint_path, log_path, curve_path: files written.
        seconds: wall time of this call (s).
        seconds_per_epoch: mean wall time of the epochs of this call, validation included (s).
        history: one log row per epoch (all sessions).
    """

    status: str
    epochs_done: int
    best_epoch: int
    best_valid: dict[str, float]
    best_path: Path
    checkpoint_path: Path
    log_path: Path
    curve_path: Path | None
    seconds: float
    seconds_per_epoch: float
    history: list[dict[str, float]]


Callback = Callable[["Trainer", str], None]


class Trainer:
    """Trains a :class:`~mlip.model.Potential` (see the module docstring for the method).

    Args:
        config: the options.
        train_structures, valid_structures, isolated_energies: data given directly instead of the
            files named in ``config``.
        resume: continue from ``output_dir/checkpoint.npz`` (checked against this config and data).
        overwrite: start afresh even if ``output_dir`` already holds a checkpoint.
        callbacks: called as ``callback(trainer, event)`` with event ``"batch_end"`` (after each
            optimiser step) or ``"epoch_end"`` (after validation and the checkpoint); raising
            ``KeyboardInterrupt`` there interrupts training like Ctrl-C.
        stream: where the per-epoch lines go (stdout by default).

    Raises:
        ValueError / DataError / TrainingError: bad data or an incompatible checkpoint, before any file
        of ``output_dir`` is changed.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_structures: Sequence[Atoms] | None = None,
        valid_structures: Sequence[Atoms] | None = None,
        isolated_energies: Mapping[str, float] | None = None,
        *,
        resume: bool = False,
        overwrite: bool = False,
        callbacks: Sequence[Callback] = (),
        stream: TextIO | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(config.output_dir)
        self.checkpoint_path = self.out_dir / "checkpoint.npz"
        self.best_path = self.out_dir / "best.npz"
        self.log_path = self.out_dir / "log.csv"
        self.curve_path = self.out_dir / "learning_curve.png"
        self.callbacks = list(callbacks)
        self.stream = stream if stream is not None else sys.stdout
        self.xp = module_for_device(config.device)

        meta = arrays = None
        if resume:
            meta, arrays = load_checkpoint(self.checkpoint_path)
            self._check_train_config(meta)
        elif self.checkpoint_path.exists() and not overwrite:
            raise TrainingError(
                f"{self.out_dir} already holds a training checkpoint; continue it with --resume, "
                f"start afresh with --overwrite, or choose another --output-dir"
            )
        self.data = prepare_data(config, train_structures, valid_structures, isolated_energies)
        if meta is not None:
            self._check_model(meta)
            self.model_config = ModelConfig.from_dict(meta["model_config"])
        else:
            self.model_config = self.data.model_config
        self._setup_parameters()
        # mutable state
        self.epoch = 0  # completed epochs
        self.batch_index = 0  # next batch of the current epoch
        self.step = 0  # optimiser steps
        self.ema_updates = 0
        self.lr = float(config.lr)
        self.sched_best = math.inf
        self.bad_epochs = 0
        self.best_metric = math.inf
        self.best_epoch = 0
        self.best_valid: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self.elapsed_before = 0.0
        self.order = np.zeros(0, dtype=np.int64)
        self.epoch_loss_sum = 0.0
        self.epoch_seconds = 0.0  # time spent in the current epoch before an interruption
        self.rng = np.random.default_rng(config.seed)
        self._stop: str | None = None
        self._last_valid: dict[str, float] = {}
        self._fresh = meta is None
        if meta is not None:
            assert arrays is not None
            self._restore(meta, arrays)

    # ------------------------------------------------------------------------------ set-up checks
    def _check_train_config(self, meta: Mapping[str, Any]) -> None:
        stored = meta.get("train_config", {})
        mine = self.config.to_dict()
        diffs = []
        for k, v in mine.items():
            if k in RESUMABLE_CHANGES or k == "model":
                continue
            if k in stored and stored[k] != v:
                diffs.append(f"{k}: checkpoint {stored[k]!r}, now {v!r}")
        if diffs:
            raise TrainingError(
                f"{self.checkpoint_path} was made with other training options, so --resume could not continue "
                f"it exactly: {'; '.join(diffs)}"
            )

    def _check_model(self, meta: Mapping[str, Any]) -> None:
        stored = meta.get("model_config", {})
        mine = self.data.model_config.to_dict()
        user = set(self.config.model) | {"elements", "dtype"}
        diffs = []
        for k, v in mine.items():
            if k in DERIVED_MODEL_FIELDS and k not in user:
                continue
            if stored.get(k) != v:
                diffs.append(f"{k}: checkpoint {stored.get(k)!r}, now {v!r}")
        if diffs:
            raise TrainingError(
                f"{self.checkpoint_path} holds a model with a different config, so it cannot be resumed "
                f"with these options: {'; '.join(diffs)}"
            )
        if meta.get("data_fingerprint") != self.data.fingerprint:
            raise TrainingError(
                f"{self.checkpoint_path} was trained on other data (training/validation structures differ), "
                "so --resume could not continue it exactly; use the same data or start afresh with --overwrite"
            )

    def _setup_parameters(self) -> None:
        xp = self.xp
        cfg = self.model_config
        shapes = param_shapes(cfg)
        self.names = list(shapes)
        self.shapes = [tuple(shapes[n]) for n in self.names]
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(self.offsets[-1])
        dt = np.dtype(cfg.dtype)
        init = init_params(cfg, self.config.seed)
        flat = np.concatenate([init[n].ravel() for n in self.names]).astype(dt)
        self.theta = xp.asarray(flat)
        self.ema = self.theta.copy()
        self.m = xp.zeros(total, dtype=dt)
        self.v = xp.zeros(total, dtype=dt)
        self.vmax = xp.zeros(total, dtype=dt)
        decay = np.zeros(total, dtype=dt)
        for n, a, b in zip(self.names, self.offsets[:-1], self.offsets[1:]):
            if ".product." in n or ".linear." in n:
                decay[a:b] = 1.0
        self.decay_mask = xp.asarray(decay)
        self.params = self._views(self.theta)
        self.ema_params = self._views(self.ema)
        self.potential = Potential(cfg, self.params)

    def _views(self, flat: Any) -> dict[str, Any]:
        return {
            n: flat[int(a) : int(b)].reshape(s)
            for n, s, a, b in zip(self.names, self.shapes, self.offsets[:-1], self.offsets[1:])
        }

    # ---------------------------------------------------------------------------------- state
    def state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(meta, arrays)`` of the full training state (what :func:`save_checkpoint` writes)."""
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model_config": self.model_config.to_dict(),
            "train_config": self.config.to_dict(),
            "layout": [[n, list(s)] for n, s in zip(self.names, self.shapes)],
            "data_fingerprint": self.data.fingerprint,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "step": self.step,
            "ema_updates": self.ema_updates,
            "lr": self.lr,
            "scheduler": {"best": _json_float(self.sched_best), "bad_epochs": self.bad_epochs},
            "best": {"metric": _json_float(self.best_metric), "epoch": self.best_epoch, "valid": self.best_valid},
            # stopped before the first step of an epoch: the permutation is drawn again on resume
            "rng": self._rng_before_order if self._in_epoch and self.batch_index == 0 else self.rng.bit_generator.state,
            "history": self.history,
            "elapsed_s": self._elapsed(),
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_seconds": self.epoch_seconds + (time.perf_counter() - self._epoch_start if self._in_epoch else 0.0),
        }
        arrays = {"params": self.theta, "ema": self.ema, "adam_m": self.m, "adam_v": self.v, "order": self.order}
        if self.config.amsgrad:
            arrays["adam_vmax"] = self.vmax
        return meta, arrays

    def _restore(self, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        layout = [[n, list(s)] for n, s in zip(self.names, self.shapes)]
        if meta.get("layout") != layout:
            raise TrainingError(f"{self.checkpoint_path}: its parameter layout does not match the model config")
        xp = self.xp
        dt = self.theta.dtype
        need = ["params", "ema", "adam_m", "adam_v", "order"] + (["adam_vmax"] if self.config.amsgrad else [])
        missing = [k for k in need if k not in arrays]
        if missing:
            raise TrainingError(f"{self.checkpoint_path} lacks the arrays {missing}")
        for k in need[:4] + need[5:]:
            if arrays[k].shape != self.theta.shape:
                raise TrainingError(f"{self.checkpoint_path}: array {k} has shape {arrays[k].shape}")
        self.theta[...] = xp.asarray(arrays["params"].astype(dt))
        self.ema[...] = xp.asarray(arrays["ema"].astype(dt))
        self.m[...] = xp.asarray(arrays["adam_m"].astype(dt))
        self.v[...] = xp.asarray(arrays["adam_v"].astype(dt))
        if self.config.amsgrad:
            self.vmax[...] = xp.asarray(arrays["adam_vmax"].astype(dt))
        self.order = np.asarray(arrays["order"], dtype=np.int64)
        self.epoch = int(meta["epoch"])
        self.batch_index = int(meta["batch_index"])
        self.step = int(meta["step"])
        self.ema_updates = int(meta["ema_updates"])
        self.lr = float(meta["lr"])
        self.sched_best = _float_json(meta["scheduler"]["best"])
        self.bad_epochs = int(meta["scheduler"]["bad_epochs"])
        self.best_metric = _float_json(meta["best"]["metric"])
        self.best_epoch = int(meta["best"]["epoch"])
        self.best_valid = dict(meta["best"].get("valid", {}))
        self.history = [dict(r) for r in meta["history"]]
        self.elapsed_before = float(meta["elapsed_s"])
        self.epoch_loss_sum = float(meta["epoch_loss_sum"])
        self.epoch_seconds = float(meta.get("epoch_seconds", 0.0))
        try:
            self.rng.bit_generator.state = meta["rng"]
        except (TypeError, ValueError, KeyError) as err:
            raise TrainingError(f"{self.checkpoint_path}: unusable RNG state: {err}") from err
        if self.batch_index and len(self.order) != len(self.data.train):
            raise TrainingError(f"{self.checkpoint_path}: its epoch order does not match the training set")

    _in_epoch = False
    _epoch_start = 0.0
    _session_start = 0.0

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._session_start if self._session_start else 0.0)

    def save(self) -> Path:
        """Write ``checkpoint.npz`` now (atomically)."""
        meta, arrays = self.state()
        return save_checkpoint(self.checkpoint_path, meta, arrays)

    # ---------------------------------------------------------------------------------- steps
    @property
    def num_batches(self) -> int:
        """Optimiser steps per epoch."""
        n, b = len(self.data.train), self.config.batch_size
        return (n + b - 1) // b

    def _train_step(self, batch: Batch) -> float:
        """One optimiser step on ``batch``; returns its loss. Raises TrainingError if not finite."""
        cfg = self.config
        xp = self.xp
        terms = _loss_terms(batch, cfg)
        tensors = {n: ad.tensor(p, requires_grad=True) for n, p in self.params.items()}
        out = self.potential.evaluate(
            batch, forces=cfg.forces_weight > 0, stress=cfg.stress_weight > 0, params=tensors, create_graph=True
        )
        loss = _loss_tensor(out, terms)
        value = float(loss.data)
        if not math.isfinite(value):
            raise TrainingError(self._nan_message(f"the training loss is {value}"))
        grads = ad.grad(loss, [tensors[n] for n in self.names], allow_unused=True)
        del out, loss, tensors
        g = xp.concatenate(
            [(gr.data if gr is not None else xp.zeros(s)).ravel() for gr, s in zip(grads, self.shapes)]
        ).astype(self.theta.dtype, copy=False)
        if not bool(xp.isfinite(g).all()):
            raise TrainingError(self._nan_message("the gradient has non-finite entries"))
        self._updating = True  # from here to the end the state changes: not a consistent point to save
        self._adam(g)
        self.epoch_loss_sum += value
        self.batch_index += 1
        self._updating = False
        return value

    def _nan_message(self, what: str) -> str:
        where = f"epoch {self.epoch + 1}, batch {self.batch_index + 1}/{self.num_batches}"
        kept = (
            f"the last good checkpoint {self.checkpoint_path} (epoch {self.epoch_of_checkpoint}) is kept"
            if self.epoch_of_checkpoint is not None
            else "no checkpoint was written yet"
        )
        return (
            f"training stopped: {what} at {where} (learning rate {self.lr:.3g}); {kept}. "
            "Check the data, lower lr, or use float64."
        )

    epoch_of_checkpoint: int | None = None
    _updating = False
    _rng_before_order: dict[str, Any] | None = None
    _valid_terms: list[_LossTerms] | None = None

    def _adam(self, g: Any) -> None:
        """In-place Adam/AMSGrad update of ``theta`` and the EMA (PyTorch semantics)."""
        xp = self.xp
        cfg = self.config
        if cfg.weight_decay > 0:
            g = g + cfg.weight_decay * self.decay_mask * self.theta
        self.step += 1
        b1, b2 = cfg.beta1, cfg.beta2
        self.m *= b1
        self.m += (1.0 - b1) * g
        self.v *= b2
        self.v += (1.0 - b2) * (g * g)
        bc1 = 1.0 - b1**self.step
        bc2 = 1.0 - b2**self.step
        if cfg.amsgrad:
            xp.maximum(self.vmax, self.v, out=self.vmax)
            second = self.vmax
        else:
            second = self.v
        denom = xp.sqrt(second) * (1.0 / math.sqrt(bc2)) + cfg.eps
        self.theta -= (self.lr / bc1) * (self.m / denom)
        if cfg.ema_decay > 0:
            self.ema_updates += 1
            n = self.ema_updates
            d = min(cfg.ema_decay, (1.0 + n) / (10.0 + n))
            self.ema -= (1.0 - d) * (self.ema - self.theta)
        else:
            self.ema[...] = self.theta

    def validate(self, params: Mapping[str, Any] | None = None) -> dict[str, float]:
        """Loss (per structure) and errors (meV/atom, meV/Å) of ``params`` (the EMA weights by default)."""
        params = self.ema_params if params is None else params
        cfg = self.config
        total = 0.0
        pe, re, na, pf, rf = [], [], [], [], []
        if self._valid_terms is None:
            self._valid_terms = [_loss_terms(b, cfg) for b in self.data.valid_batches]
        for b, terms in zip(self.data.valid_batches, self._valid_terms):
            out = self.potential.evaluate(
                b, forces=b.forces is not None, stress=cfg.stress_weight > 0 and b.stress is not None, params=params
            )
            total += _loss_value(out, terms)
            if b.energy is not None:
                mask = to_host(b.energy_mask) if b.energy_mask is not None else slice(None)
                pe.append(to_host(out["energy"])[mask])
                re.append(to_host(b.energy)[mask])
                na.append(to_host(b.n_atoms)[mask])
            if b.forces is not None:
                am = np.repeat(to_host(b.forces_mask), to_host(b.n_atoms)) if b.forces_mask is not None else slice(None)
                pf.append(to_host(out["forces"])[am])
                rf.append(to_host(b.forces)[am])
        n = len(self.data.valid)
        res = {"valid_loss": total / n}
        if pe:
            m = compute_metrics(np.concatenate(pe), np.concatenate(re), np.concatenate(na))
            res["valid_energy_rmse_mev_atom"] = m["energy_rmse_mev_atom"]
        else:
            res["valid_energy_rmse_mev_atom"] = math.nan
        if pf:
            d = (np.concatenate(pf).astype(np.float64) - np.concatenate(rf)) * 1000.0
            res["valid_force_rmse_mev_A"] = float(np.sqrt(np.mean(d * d))) if d.size else math.nan
        else:
            res["valid_force_rmse_mev_A"] = math.nan
        if not math.isfinite(res["valid_loss"]):
            raise TrainingError(self._nan_message(f"the validation loss is {res['valid_loss']}"))
        return res

    # ----------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train until the epoch budget, the time budget or an interruption; see :class:`TrainResult`."""
        cfg = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self._fresh:  # a new run (--overwrite): no file of an older run may be mistaken for this one's
            for path in (self.checkpoint_path, self.best_path, self.log_path, self.curve_path):
                path.unlink(missing_ok=True)
            self._fresh = False
        self._write_config()
        self._session_start = time.perf_counter()
        start = self._session_start
        budget = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else math.inf
        epoch_times: list[float] = []
        status = "completed"
        n_params = int(self.theta.size)
        if self.epoch >= cfg.epochs:
            self._print(f"already trained for {self.epoch} epochs (epochs = {cfg.epochs}); raise epochs to go on")
        elif self.epoch == 0 and self.batch_index == 0:
            self._print(
                f"training {n_params} parameters on {len(self.data.train)} structures "
                f"({self.num_batches} batches of <= {cfg.batch_size}), validating on {len(self.data.valid)}; "
                f"output in {self.out_dir}"
            )
        else:
            self._print(f"resuming at epoch {self.epoch + 1}, batch {self.batch_index + 1} from {self.checkpoint_path}")
        self.epoch_of_checkpoint = self.epoch if self.checkpoint_path.exists() else None
        with self._signals():
            while self.epoch < cfg.epochs:
                used = time.perf_counter() - start
                if self.batch_index == 0 and epoch_times and used + float(np.mean(epoch_times)) > budget:
                    status = "time_budget"
                    break
                try:
                    seconds = self._run_epoch(start, budget)
                except KeyboardInterrupt:
                    self._stop = self._stop or "KeyboardInterrupt"
                    seconds = None
                    if self._updating:  # caught in the middle of an update: the state is not consistent
                        status = "interrupted"
                        self._print(
                            f"\ninterrupted during a parameter update; the last checkpoint {self.checkpoint_path} "
                            f"(epoch {self.epoch_of_checkpoint}) is kept; continue with --resume"
                        )
                        break
                if seconds is None:
                    self.save()
                    self._in_epoch = False
                    if self._stop:
                        status = "interrupted"
                        self._print(
                            f"\ninterrupted ({self._stop}) at epoch {self.epoch + 1}, batch {self.batch_index}; "
                            f"state saved to {self.checkpoint_path}; continue with --resume"
                        )
                    else:
                        status = "time_budget"
                    break
                epoch_times.append(seconds)
                self._callbacks("epoch_end")
                if self._stop:
                    status = "interrupted"
                    break
        self._in_epoch = False
        self._write_log()
        curve = self._plot()
        seconds = time.perf_counter() - start
        if status == "time_budget":
            self._print(f"time budget of {cfg.max_minutes:g} min reached after {self.epoch} epochs")
        return TrainResult(
            status=status,
            epochs_done=self.epoch,
            best_epoch=self.best_epoch,
            best_valid=dict(self.best_valid),
            best_path=self.best_path,
            checkpoint_path=self.checkpoint_path,
            log_path=self.log_path,
            curve_path=curve,
            seconds=seconds,
            seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else math.nan,
            history=[dict(r) for r in self.history],
        )

    def _run_epoch(self, start: float, budget: float) -> float | None:
        """Train one epoch (or its remainder), validate, checkpoint; its wall time (s), None if stopped."""
        cfg = self.config
        n = len(self.data.train)
        nb = self.num_batches
        self._in_epoch = True
        self._epoch_start = time.perf_counter()
        if self.batch_index == 0:
            self._rng_before_order = self.rng.bit_generator.state
            self.order = self.rng.permutation(n).astype(np.int64)
            self.epoch_loss_sum = 0.0
            self.epoch_seconds = 0.0
        bar = cfg.progress and _isatty(sys.stderr)
        while self.batch_index < nb:
            i = self.batch_index
            idx = self.order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            batch = collate([self.data.train[int(k)] for k in idx])
            self._train_step(batch)
            if bar:
                done = self.batch_index
                width = 24
                fill = int(width * done / nb)
                sys.stderr.write(
                    f"\r  epoch {self.epoch + 1:>4} [{'#' * fill}{'.' * (width - fill)}] {done}/{nb} "
                    f"loss {self.epoch_loss_sum / min(done * cfg.batch_size, n):.4g}  "
                )
                sys.stderr.flush()
            self._callbacks("batch_end")
            if self._stop:
                if bar:
                    sys.stderr.write("\n")
                return None
            if self.epoch >= 1 and time.perf_counter() - start > budget and self.batch_index < nb:
                if bar:
                    sys.stderr.write("\n")
                return None
        if bar:
            sys.stderr.write("\r" + " " * 78 + "\r")
        # end of epoch: validation with the EMA weights
        train_loss = self.epoch_loss_sum / n
        lr_used = self.lr
        valid = self.validate()
        self._last_valid = valid
        self._updating = True
        self.epoch += 1
        self.batch_index = 0
        metric = valid["valid_loss"]
        improved = metric < self.best_metric
        if improved:
            self.best_metric = metric
            self.best_epoch = self.epoch
            self.best_valid = {k: float(v) for k, v in valid.items()}
            save_model(
                self.best_path,
                self.model_config,
                self.ema_params,
                extra={"epoch": self.epoch, "valid": self.best_valid, "train_config": self.config.to_dict()},
            )
        # plateau scheduler
        if metric < self.sched_best:
            self.sched_best = metric
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= cfg.patience:
                self.lr = max(self.lr * cfg.lr_factor, cfg.min_lr)
                self.bad_epochs = 0
        seconds = self.epoch_seconds + time.perf_counter() - self._epoch_start
        self._in_epoch = False
        self.epoch_seconds = 0.0
        row = {
            "epoch": self.epoch,
            "time_s": round(self._elapsed(), 3),
            "lr": lr_used,
            "train_loss": train_loss,
            **valid,
        }
        self.history.append(row)
        self.save()
        self._updating = False
        self.epoch_of_checkpoint = self.epoch
        self._write_log()
        if self.epoch % cfg.plot_every == 0:
            self._plot()
        self._print(
            f"epoch {self.epoch:>4}/{cfg.epochs}  lr {lr_used:.2e}  train {train_loss:.4g}  valid {metric:.4g}  "
            f"E {valid['valid_energy_rmse_mev_atom']:.3g} meV/atom  F {valid['valid_force_rmse_mev_A']:.4g} meV/Å  "
            f"{seconds:.1f} s{'  *' if improved else ''}"
        )
        return seconds

    # --------------------------------------------------------------------------------- helpers
    def _callbacks(self, event: str) -> None:
        for cb in self.callbacks:
            try:
                cb(self, event)
            except KeyboardInterrupt:
                self._stop = self._stop or "KeyboardInterrupt"

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask to stop after the current batch (a second Ctrl-C stops at once)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop = name
            with contextlib.suppress(Exception):
                sys.stderr.write(f"\n{name}: finishing the current batch, then saving a checkpoint ...\n")

        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for s in old:
                signal.signal(s, handler)
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _print(self, text: str) -> None:
        if self.config.progress:
            print(text, file=self.stream, flush=True)

    def _write_config(self) -> None:
        payload = {"train_config": self.config.to_dict(), "model_config": self.model_config.to_dict()}
        _atomic_text(self.out_dir / "train_config.json", json.dumps(payload, indent=2) + "\n")

    def _write_log(self) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(LOG_COLUMNS)
        for r in self.history:
            w.writerow([_csv_value(r.get(c)) for c in LOG_COLUMNS])
        _atomic_text(self.log_path, buf.getvalue())

    def _plot(self) -> Path | None:
        if not self.history:
            return None
        try:
            from .plots import learning_curve

            return learning_curve(self.log_path, self.curve_path, title="training")
        except Exception as err:  # plotting must never stop training
            self._print(f"warning: could not draw the learning curve: {err}")
            return None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _json_float(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)


def _float_json(v: Any) -> float:
    return float(v)


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def train(
    config: TrainConfig,
    train_structures: Sequence[Atoms] | None = None,
    valid_structures: Sequence[Atoms] | None = None,
    isolated_energies: Mapping[str, float] | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
    stream: TextIO | None = None,
) -> TrainResult:
    """Build a :class:`Trainer` and run :meth:`Trainer.fit` (arguments as for :class:`Trainer`)."""
    trainer = Trainer(
        config,
        train_structures,
        valid_structures,
        isolated_energies,
        resume=resume,
        overwrite=overwrite,
        callbacks=callbacks,
        stream=stream,
    )
    return trainer.fit()
