"""Options of a training run: :class:`TrainConfig`, its validation and the merge of config files and flags.

Every option is a dataclass field; its ``metadata`` holds the command-line help text (``help``), the
extra flag spellings (``aliases``), the allowed values (``choices``) and whether ``mlip train`` has a
flag for it (``cli``), so :mod:`mlip.cli.train` derives every flag, type and default from here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..archive import jsonable
from ..model import ModelConfig

__all__ = ["MODEL_HELP", "TrainConfig", "merge_config", "read_json_config"]


def _opt(
    default: Any,
    help: str,
    *aliases: str,
    cli: bool = True,
    choices: tuple[str, ...] = (),
    group: str = "optimisation",
) -> Any:
    """A :class:`TrainConfig` field with its command-line metadata (help, extra flag spellings, choices,
    whether ``mlip train`` has a flag for it, and the group of ``--help`` it is listed in)."""
    meta = {"help": help, "aliases": aliases, "cli": cli, "choices": choices, "group": group}
    return field(default=default, metadata=meta)


#: Help text of the :class:`mlip.model.ModelConfig` fields that ``mlip train`` sets with flags
#: (``--channels`` ...); types and defaults come from the ``ModelConfig`` fields themselves.
MODEL_HELP: dict[str, str] = {
    "elements": "chemical symbols, e.g. Cu,Au (default: from the data)",
    "channels": "feature channels K",
    "lmax": "largest tensor rank L of messages",
    "hidden_lmax": "largest rank of hidden features",
    "correlation": "body order of the product basis",
    "num_layers": "interaction layers",
    "cutoff": "cutoff radius in Å",
    "num_bessel": "radial basis functions",
    "radial_hidden": "radial MLP widths, e.g. 64,64,64",
    "products": "product set",
}


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

    train_file: str | None = _opt(None, "labelled structures (extxyz or any ASE format)", "--train", group="data")
    valid_file: str | None = _opt(
        None, "validation structures (default: hold out --valid-fraction)", "--valid", group="data"
    )
    valid_fraction: float = _opt(0.1, "held-out fraction of the training file", group="data")
    isolated_atoms_file: str | None = _opt(
        None,
        "single-atom structures with energies: per-element reference (eV)",
        "--isolated-atoms",
        "--e0",
        group="data",
    )
    energy_key: str = _opt("energy", "energy label name", group="data")
    forces_key: str = _opt("forces", "forces label name", group="data")
    stress_key: str = _opt("stress", "stress label name", group="data")
    model: dict[str, Any] = field(default_factory=dict, metadata={"help": "ModelConfig fields", "cli": False})
    seed: int = _opt(0, "seed of initialisation, split and shuffling")
    epochs: int = _opt(200, "total epochs")
    max_minutes: float | None = _opt(None, "time budget of this invocation in minutes")
    batch_size: int = _opt(5, "structures per step")
    valid_batch_size: int = _opt(10, "structures per validation evaluation (memory only)")
    lr: float = _opt(0.01, "learning rate")
    amsgrad: bool = _opt(True, "AMSGrad variant of Adam")
    beta1: float = _opt(0.9, "Adam beta1")
    beta2: float = _opt(0.999, "Adam beta2")
    eps: float = _opt(1e-8, "Adam epsilon")
    weight_decay: float = _opt(5e-7, "L2 on product/linear weights")
    ema_decay: float = _opt(0.99, "EMA decay of the weights (0 = off)")
    energy_weight: float = _opt(1.0, "w_E")
    forces_weight: float = _opt(10.0, "w_F")
    stress_weight: float = _opt(0.0, "w_S")
    patience: int = _opt(50, "epochs without validation gain before lr x lr_factor")
    lr_factor: float = _opt(0.8, "learning-rate reduction factor")
    min_lr: float = _opt(0.0, "the learning rate is not reduced below this")
    dtype: str = _opt("float64", "float type", choices=("float32", "float64"))
    device: str = _opt("numpy", "array backend", choices=("numpy", "cupy"))
    output_dir: str = _opt("run", "folder of checkpoint, best model, log and plots", "--output", group="output")
    plot_every: int = _opt(10, "learning-curve refresh period in epochs", group="output")
    min_distance: float = _opt(0.5, "smallest allowed interatomic distance in Å", group="data")
    progress: bool = _opt(True, "per-epoch lines", cli=False)

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
        d["model"] = jsonable(self.model)
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
