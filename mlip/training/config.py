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
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase.data import chemical_symbols

from ..archive import jsonable
from ..model import ModelConfig

__all__ = [
    "E0_MODES",
    "MODEL_HELP",
    "TrainConfig",
    "merge_config",
    "read_config_file",
    "read_json_config",
    "type_problems",
]

#: Ways to get the per-element reference energies without isolated-atom energies (``TrainConfig.e0``).
E0_MODES = ("average", "least-squares")


def _meta(
    help: str, *aliases: str, cli: bool = True, choices: tuple[str, ...] = (), group: str = "optimisation"
) -> dict[str, Any]:
    """Command-line metadata of a :class:`TrainConfig` field: help text, extra flag spellings, allowed
    values, whether ``mlip train`` has a flag for it, and the group of ``--help`` it is listed in."""
    return {"help": help, "aliases": aliases, "cli": cli, "choices": choices, "group": group}


def _opt(default: Any, help: str, *aliases: str, **kw: Any) -> Any:
    """A :class:`TrainConfig` field with an immutable default and its metadata (:func:`_meta`)."""
    return field(default=default, metadata=_meta(help, *aliases, **kw))


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
            per-element reference energies ``E0_Z``, used exactly as given (``--e0 FILE``).
        e0: without ``isolated_atoms_file``, how ``E0_Z`` is fitted to the training energies
            (:mod:`mlip.training.energies`): ``"least-squares"`` (also ``None``, the default) fits
            ``E_b ≈ Σ_Z n_bZ E0_Z`` and is an error when the compositions do not determine it (the
            composition matrix is rank-deficient, e.g. every structure has the same composition, as in
            the molecule sets); ``"average"`` (MACE's ``--E0s=average``, documented there as a least-squares
            regression) is that fit when the compositions determine it, else one energy per atom for
            every element, ``E0_Z = mean_b(E_b / N_b)``, with a warning.
        e0_shift: add to ``E0`` the ridge (λ = 1) fit ``δ_Z`` of the residual energy per atom; the
            model's atomic energies are then ``E0_Z + δ_Z`` (``E0_Z`` exactly when false, the default).
        test_files: labelled test sets; after training the best model is evaluated on each
            (:func:`mlip.evaluation.evaluate_file`): ``output_dir/test/<name>_*`` and
            ``output_dir/test_metrics.json``.
        init_from: a model file (``best.npz``) whose parameters start the training (fine-tuning): its
            architecture must match the model options given; its atomic energies and energy scale are
            kept unless ``isolated_atoms_file``, ``e0``, ``e0_shift`` or ``model.atomic_energies`` /
            ``model.energy_scale`` are given.
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
        "single-atom structures with energies: the per-element reference energies E0 (eV), used as given "
        "(also --e0 FILE)",
        "--isolated-atoms",
        group="data",
    )
    e0: str | None = _opt(
        None,
        "E0 without isolated atoms: 'least-squares' (the default; the compositions must determine it) or "
        "'average' (as MACE's: least squares, one mean energy per atom when the compositions do not determine it); "
        "a file name here means --isolated-atoms FILE",
        choices=E0_MODES,
        group="data",
    )
    e0_shift: bool = _opt(False, "add a ridge-fitted per-element shift to E0", group="data")
    test_files: list[str] = field(
        default_factory=list,
        metadata=_meta("test sets: the best model is evaluated on each at the end", "--test", group="data"),
    )
    init_from: str | None = _opt(
        None, "fine-tune: start from the parameters of this model file (best.npz)", group="model"
    )
    energy_key: str = _opt("energy", "energy label name", group="data")
    forces_key: str = _opt("forces", "forces label name", group="data")
    stress_key: str = _opt("stress", "stress label name", group="data")
    model: dict[str, Any] = field(default_factory=dict, metadata=_meta("ModelConfig fields", cli=False))
    seed: int = _opt(0, "seed of initialisation, split and shuffling")
    epochs: int = _opt(200, "total epochs")
    max_minutes: float | None = _opt(None, "time budget of this invocation in minutes")
    batch_size: int = _opt(5, "structures per step")
    valid_batch_size: int = _opt(10, "structures per validation evaluation (memory only)")
    lr: float = _opt(0.01, "learning rate (with --resume: replaces the current one, e.g. to lower it)")
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
        self.model = {} if self.model is None else dict(self.model) if isinstance(self.model, Mapping) else self.model
        if isinstance(self.test_files, (list, tuple)):
            self.test_files = list(self.test_files)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming every impossible value (all of them in one message).

        Every field is first checked against its annotation (``"epochs": "ten"`` or ``"lr": [1]`` is a
        type problem), then the values of the well-typed fields against their ranges.
        """
        p = type_problems(self, typing.get_type_hints(TrainConfig))
        bad = {text.split(" ", 1)[0] for text in p}

        def need(names: str, ok: Any, text: str) -> None:
            if not (set(names.split()) & bad) and not ok():
                p.append(text)

        for name in ("epochs", "batch_size", "valid_batch_size", "plot_every", "patience", "seed"):
            low = 0 if name in ("patience", "seed") else 1
            v = getattr(self, name)
            need(name, lambda v=v, low=low: v >= low, f"{name} must be an integer >= {low}, got {v!r}")
        vf, lr, eps, d, f, md = (
            self.valid_fraction,
            self.lr,
            self.eps,
            self.ema_decay,
            self.lr_factor,
            self.min_distance,
        )
        need("valid_fraction", lambda: 0.0 < vf < 1.0, f"valid_fraction must lie strictly between 0 and 1, got {vf}")
        need("lr", lambda: lr > 0, f"lr must be > 0, got {lr}")
        for name in ("beta1", "beta2"):
            b = getattr(self, name)
            need(name, lambda b=b: 0.0 <= b < 1.0, f"{name} must lie in [0, 1), got {b}")
        need("eps", lambda: eps > 0, f"eps must be > 0, got {eps}")
        for name in ("weight_decay", "energy_weight", "forces_weight", "stress_weight", "min_lr"):
            v = getattr(self, name)
            need(name, lambda v=v: v >= 0, f"{name} must be >= 0, got {v}")
        w = (self.energy_weight, self.forces_weight, self.stress_weight)
        need(
            "energy_weight forces_weight stress_weight",
            lambda: any(x != 0 for x in w),
            "energy_weight, forces_weight and stress_weight are all 0: nothing to train on",
        )
        need("ema_decay", lambda: 0.0 <= d < 1.0, f"ema_decay must lie in [0, 1), got {d}")
        need("lr_factor", lambda: 0.0 < f <= 1.0, f"lr_factor must lie in (0, 1], got {f}")
        need("min_distance", lambda: md >= 0, f"min_distance must be >= 0 Å, got {md}")
        m = self.max_minutes
        need("max_minutes", lambda: m is None or m > 0, f"max_minutes must be > 0 (or null for no limit), got {m}")
        for name in ("dtype", "device"):
            choices = TrainConfig.__dataclass_fields__[name].metadata["choices"]
            v = getattr(self, name)
            need(name, lambda v=v, c=choices: v in c, f"{name} must be one of {list(choices)}, got {v!r}")
        e0 = self.e0
        need(
            "e0",
            lambda: e0 is None or e0 in E0_MODES,
            f"e0 must be one of {list(E0_MODES)} or null (a file of isolated-atom energies goes into "
            f"isolated_atoms_file / --e0 FILE), got {e0!r}",
        )
        need(
            "e0 isolated_atoms_file",
            lambda: e0 is None or self.isolated_atoms_file is None,
            f"give either isolated_atoms_file (isolated-atom energies) or e0 = {e0!r}, not both",
        )
        for name in ("train_file", "valid_file", "isolated_atoms_file", "init_from"):
            v = getattr(self, name)
            need(name, lambda v=v: v != "", f"{name} must be a file name or null, got ''")
        for name in ("energy_key", "forces_key", "stress_key", "output_dir"):
            need(name, lambda n=name: getattr(self, n) != "", f"{name} must not be empty")
        need("test_files", lambda: "" not in self.test_files, "test_files must be file names, got ''")
        if "model" not in bad:
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
        """Read a config file (JSON, or YAML by extension), then apply ``overrides`` (``model`` entries merged)."""
        return cls.from_dict(merge_config(read_config_file(path), overrides or {}))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options changed (validated)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _model_problems(model: Mapping[str, Any]) -> list[str]:
    """Problems of a user model dict, found before any data is read (types from the ModelConfig annotations)."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(model) - known)
    if unknown:
        return [f"unknown model keys {unknown}; known model keys: {sorted(known - {'dtype'})}"]
    if "dtype" in model:
        return ["set the float type with the top-level 'dtype' option, not model.dtype"]
    hints = typing.get_type_hints(ModelConfig)
    p = [f"model.{t}" for t in type_problems(model, {k: hints[k] for k in model})]
    if p:
        return p
    widths = model.get("radial_hidden", ())
    if any(w < 1 for w in widths):
        p.append(f"model.radial_hidden must be widths >= 1, got {list(widths)}")
    unknown_symbols = [s for s in model.get("elements", ()) if s not in chemical_symbols[1:]]
    if unknown_symbols:
        p.append(f"model.elements has unknown chemical symbols {unknown_symbols}")
    if p:
        return p
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
    """A config file as a dict (the name of the time when only JSON was read; see :func:`read_config_file`)."""
    return read_config_file(path)


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``; the nested ``model`` dicts are merged key by key."""
    out = dict(base)
    for k, v in overrides.items():
        if k == "model" and isinstance(v, Mapping) and isinstance(out.get("model"), Mapping):
            out["model"] = {**out["model"], **v}
        else:
            out[k] = v
    return out


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list):
        return f"a list of {_describe(args[0]).split(' ', 1)[1]}s"
    if origin in (dict, Mapping) or hint is dict:
        return "an object of options"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}.get(
        hint, "null" if hint is type(None) else str(hint)
    )


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, (bool, np.bool_)):
        return False
    if hint is int:
        return isinstance(value, (int, np.integer))
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, Mapping)
    raise TypeError(f"no check for the annotation {hint!r}")


def type_problems(options: Any, hints: Mapping[str, Any]) -> list[str]:
    """``"<name> must be <type>, got <value>"`` for every option whose value does not fit its annotation.

    Args:
        options: a dataclass instance or a mapping of option values.
        hints: option name -> annotation (``typing.get_type_hints`` of the dataclass): ``int`` (not
            bool), ``float`` (finite; integers accepted), ``str``, ``bool``, ``X | None``,
            ``tuple[X, ...]`` / ``list[X]`` (a list or tuple of X), ``dict[...]`` (a mapping).
    """
    get = options.get if isinstance(options, Mapping) else lambda k: getattr(options, k)
    out = []
    for name, hint in hints.items():
        value = get(name)
        if not _fits(value, hint):
            out.append(f"{name} must be {_describe(hint)}, got {value!r}")
    return out


def _yaml_loader() -> Any:
    """PyYAML's safe loader that also reads ``1e-3`` as a number (YAML 1.2; PyYAML's 1.1 reads a string)."""
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - PyYAML is a dependency of the mlip extra
        raise ValueError("YAML config files need PyYAML: pip install pyyaml") from err

    class Loader(yaml.SafeLoader):
        pass

    number = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", number, list("-+0123456789."))
    # integers keep their own resolver (added first); only forms it does not take become floats
    return Loader


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A config file as a dict: YAML for ``.yaml`` / ``.yml``, JSON otherwise.

    Raises:
        FileNotFoundError: no such file (or a folder).
        ValueError: a parse error (naming the line and column) or a file that is not a mapping of options.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err)
            raise ValueError(f"{path} is not valid YAML{where}: {problem}") from err
        kind = "YAML mapping"
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
        kind = "JSON object"
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a {kind} of options, got {type(data).__name__}")
    return data
