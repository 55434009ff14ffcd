"""``mlip train``: train a potential (:mod:`mlip.training`).

Every training flag is derived from a :class:`mlip.training.TrainConfig` field (spelling
``--field-name`` plus the ``aliases`` of its metadata; type from its annotation; help and default from
its metadata and default value), and every model flag from a :class:`mlip.model.ModelConfig` field
listed in :data:`mlip.training.config.MODEL_HELP`. A flag not given leaves the option to the config
file (``--config``), then to the checkpoint (``--resume``), then to the dataclass default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from .common import announce_backend, int_list, str_list

__all__ = ["add_parser", "run", "train_options"]

#: ``argparse`` dest prefix of the model flags (``model.channels`` ...).
MODEL_DEST = "model."


def _flag_type(hint: Any) -> tuple[Any, str]:
    """The argparse type of a field annotation and its kind: ``"switch"`` (bool), ``"many"`` (``list[X]``:
    several values after the flag), ``"one"``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    if hint is bool:
        return None, "switch"
    if typing.get_origin(hint) is tuple:  # a comma-separated list: --radial-hidden 64,64
        item = typing.get_args(hint)[0]
        return (int_list if item is int else str_list), "one"
    if typing.get_origin(hint) is list:  # values after the flag: --test a.xyz b.xyz
        return typing.get_args(hint)[0], "many"
    if hint in (int, float, str):
        return hint, "one"
    raise TypeError(f"no command-line type for the annotation {hint!r}")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is dataclasses.MISSING or f.default is None:
        return ""
    v = f.default
    if isinstance(v, tuple):
        v = ",".join(str(x) for x in v)
    elif isinstance(v, bool):
        v = "on" if v else "off"
    return f" (default {v})"


def _add_field(group: Any, f: dataclasses.Field, hint: Any, help: str, dest: str, **extra: Any) -> None:
    kind, how = _flag_type(hint)
    flags = [f"--{f.name.replace('_', '-')}", *f.metadata.get("aliases", ())]
    kw: dict[str, Any] = {"dest": dest, "default": None, "help": help + _default_text(f), **extra}
    if how == "switch":
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw["type"] = kind
        kw["metavar"] = "FILE" if f.name.endswith(("_file", "_files", "_from")) else f.name.upper()
        if f.name == "e0":  # a mode, or a file of isolated-atom energies (see train_options)
            kw["metavar"] = "{" + ",".join(f.metadata["choices"]) + "}|FILE"
        if how == "many":
            kw["nargs"] = "+"
        if f.metadata.get("choices") and f.name != "e0":
            kw["choices"] = f.metadata["choices"]
    group.add_argument(*flags, **kw)


def add_parser(sub: Any) -> None:
    """Add ``mlip train`` with flags derived from ``TrainConfig`` and ``ModelConfig``."""
    from ..model import PRODUCT_SETS, ModelConfig
    from ..training import TrainConfig
    from ..training.config import MODEL_HELP

    p = sub.add_parser(
        "train",
        help="train a potential",
        description="Train a potential. Options come from --config (JSON or YAML) and are overridden by flags; "
        "with --resume the options stored in the checkpoint are the base.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="JSON or YAML (.yaml/.yml) file of training options (keys as in TrainConfig; 'model': {...})",
    )
    groups = {name: p.add_argument_group(name) for name in ("data", "model", "optimisation", "output")}
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True):
            _add_field(groups[f.metadata.get("group", "optimisation")], f, hints[f.name], f.metadata["help"], f.name)
    hints = typing.get_type_hints(ModelConfig)
    for f in dataclasses.fields(ModelConfig):
        if f.name in MODEL_HELP:
            extra = {"choices": PRODUCT_SETS} if f.name == "products" else {}
            _add_field(groups["model"], f, hints[f.name], MODEL_HELP[f.name], MODEL_DEST + f.name, **extra)
    g = groups["output"]
    g.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.npz")
    g.add_argument("--overwrite", action="store_true", help="start afresh even if OUTPUT_DIR has a checkpoint")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    g.add_argument("--print-config", action="store_true", help="print the resolved options as JSON and exit")


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options of ``mlip train`` after merging checkpoint (on --resume), config file and flags."""
    from ..training import E0_MODES, TrainConfig, load_checkpoint, merge_config, read_config_file

    file_opts: dict[str, Any] = read_config_file(args.config) if args.config else {}
    flags: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if value is None:
            continue
        if dest.startswith(MODEL_DEST):
            model[dest[len(MODEL_DEST) :]] = value
        elif dest in TrainConfig.__dataclass_fields__:
            flags[dest] = value
    if flags.get("e0") is not None and flags["e0"] not in E0_MODES:  # --e0 FILE: isolated-atom energies
        flags["isolated_atoms_file"] = flags.pop("e0")
    if model:
        flags["model"] = model
    if args.quiet:
        flags["progress"] = False
    base: dict[str, Any] = {}
    if args.resume:
        out_dir = flags.get("output_dir", file_opts.get("output_dir", "run"))
        meta, _ = load_checkpoint(Path(out_dir) / "checkpoint.npz")
        base = dict(meta.get("train_config", {}))
        base.pop("progress", None)
    return merge_config(merge_config(base, file_opts), flags)


def run(args: argparse.Namespace) -> int:
    """Run ``mlip train``; 0 when done, 130 when interrupted (resumable)."""
    from ..metrics import format_table
    from ..training import TrainConfig, train

    config = TrainConfig.from_dict(train_options(args))
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    announce_backend(config.device)
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    if result.status == "interrupted":
        return 130
    if config.progress:
        rows = {f"best (epoch {result.best_epoch})": result.best_valid}
        print(format_table(rows, transpose=True))
        print(f"model: {result.best_path}  log: {result.log_path}  curve: {result.curve_path}")
        if math.isfinite(result.seconds_per_epoch):
            print(f"{result.epochs_done} epochs, {result.seconds_per_epoch:.2f} s/epoch ({result.status})")
        if result.test_metrics:
            keys = ("n_structures", "energy_rmse_mev_atom", "force_rmse_mev_A", "stress_rmse_mev_A3")
            rows = {Path(name).name: {k: m[k] for k in keys if k in m} for name, m in result.test_metrics.items()}
            print(f"test sets (best model, epoch {result.best_epoch}):")
            print(format_table(rows))
            print(f"test metrics: {Path(config.output_dir) / 'test_metrics.json'}")
    return 0
