"""Command line: ``mlip train | eval | md | demo`` (also ``python -m mlip``).

* ``mlip train --train-file data.xyz [--config run.json] [options]``: train a potential
  (:mod:`mlip.training`); ``--resume`` continues an interrupted run exactly.
* ``mlip eval --model run/best.npz --data test.xyz``: errors (meV, meV/atom, meV/Å), per-structure
  predictions (CSV, extxyz) and a parity plot (:mod:`mlip.evaluation`).
* ``mlip md --model run/best.npz --structure start.xyz``: NVE or Langevin MD through ASE; trajectory,
  energy drift (meV/atom/ps), speed (steps/s) and an energy plot.
* ``mlip demo``: the whole pipeline on built-in EMT data (:mod:`mlip.demo`).

Exit status: 0 on success, 1 on bad input or a failed run (one ``error:`` line on stderr),
130 when training was interrupted (the checkpoint is saved; continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .lammps import cli as lammps_cli

__all__ = ["build_parser", "entry", "main"]

# The model multiplies many small matrices: threaded OpenBLAS only adds hand-off cost, and when other
# processes share the cores its spinning threads make a training step several times slower (measured
# 0.12 s with one thread against 0.5-0.9 s with two on a loaded 2-core machine). Takes effect when the
# command line is the entry point (NumPy not imported yet); an explicit setting is respected.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

#: ``mlip train`` flags that set a training option: flag dest -> TrainConfig key.
_TRAIN_FLAGS = {
    "train_file": "train_file",
    "valid_file": "valid_file",
    "valid_fraction": "valid_fraction",
    "isolated_atoms": "isolated_atoms_file",
    "energy_key": "energy_key",
    "forces_key": "forces_key",
    "stress_key": "stress_key",
    "output_dir": "output_dir",
    "seed": "seed",
    "epochs": "epochs",
    "max_minutes": "max_minutes",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "ema_decay": "ema_decay",
    "energy_weight": "energy_weight",
    "forces_weight": "forces_weight",
    "stress_weight": "stress_weight",
    "patience": "patience",
    "lr_factor": "lr_factor",
    "dtype": "dtype",
    "device": "device",
    "plot_every": "plot_every",
}
#: ``mlip train`` flags that set a model option: flag dest -> ModelConfig key.
_MODEL_FLAGS = {
    "elements": "elements",
    "channels": "channels",
    "lmax": "lmax",
    "hidden_lmax": "hidden_lmax",
    "correlation": "correlation",
    "num_layers": "num_layers",
    "cutoff": "cutoff",
    "num_bessel": "num_bessel",
    "radial_hidden": "radial_hidden",
    "products": "products",
}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _str_list(text: str) -> list[str]:
    values = [v for v in text.replace(" ", "").split(",") if v]
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return values


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a potential",
        description="Train a potential. Options come from --config (JSON) and are overridden by flags; "
        "with --resume the options stored in the checkpoint are the base.",
    )
    p.add_argument("--config", help="JSON file of training options (keys as in TrainConfig; 'model': {...})")
    g = p.add_argument_group("data")
    g.add_argument("--train-file", "--train", help="labelled structures (extxyz or any ASE format)")
    g.add_argument("--valid-file", "--valid", help="validation structures (default: hold out --valid-fraction)")
    g.add_argument("--valid-fraction", type=float, help="held-out fraction of the training file (default 0.1)")
    g.add_argument("--isolated-atoms", "--e0", help="single-atom structures with energies: per-element reference (eV)")
    g.add_argument("--energy-key", help="energy label name (default 'energy')")
    g.add_argument("--forces-key", help="forces label name (default 'forces')")
    g.add_argument("--stress-key", help="stress label name (default 'stress')")
    g = p.add_argument_group("model")
    g.add_argument("--elements", type=_str_list, help="chemical symbols, e.g. Cu,Au (default: from the data)")
    g.add_argument("--channels", type=int, help="feature channels K (default 32)")
    g.add_argument("--lmax", type=int, help="largest tensor rank L of messages (default 2)")
    g.add_argument("--hidden-lmax", type=int, help="largest rank of hidden features (default 1)")
    g.add_argument("--correlation", type=int, help="body order of the product basis (default 3)")
    g.add_argument("--num-layers", type=int, help="interaction layers (default 2)")
    g.add_argument("--cutoff", type=float, help="cutoff radius in Å (default 5.0)")
    g.add_argument("--num-bessel", type=int, help="radial basis functions (default 8)")
    g.add_argument("--radial-hidden", type=_int_list, help="radial MLP widths, e.g. 64,64,64")
    g.add_argument("--products", choices=("even", "parity_complete"), help="product set (default even)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--seed", type=int, help="seed of initialisation, split and shuffling (default 0)")
    g.add_argument("--epochs", type=int, help="total epochs (default 200)")
    g.add_argument("--max-minutes", type=float, help="time budget of this invocation in minutes")
    g.add_argument("--batch-size", type=int, help="structures per step (default 5)")
    g.add_argument("--lr", type=float, help="learning rate (default 0.01)")
    g.add_argument("--weight-decay", type=float, help="L2 on product/linear weights (default 5e-7)")
    g.add_argument("--ema-decay", type=float, help="EMA decay of the weights (default 0.99; 0 = off)")
    g.add_argument("--energy-weight", type=float, help="w_E (default 1)")
    g.add_argument("--forces-weight", type=float, help="w_F (default 10)")
    g.add_argument("--stress-weight", type=float, help="w_S (default 0)")
    g.add_argument("--patience", type=int, help="epochs without validation gain before lr x lr_factor (default 50)")
    g.add_argument("--lr-factor", type=float, help="learning-rate reduction factor (default 0.8)")
    g.add_argument("--dtype", choices=("float32", "float64"), help="float type (default float64)")
    g.add_argument("--device", choices=("numpy", "cupy"), help="array backend (default numpy)")
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", "--output", help="folder of checkpoint, best model, log and plots (default run)")
    g.add_argument("--plot-every", type=int, help="learning-curve refresh period in epochs (default 10)")
    g.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.npz")
    g.add_argument("--overwrite", action="store_true", help="start afresh even if OUTPUT_DIR has a checkpoint")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    g.add_argument("--print-config", action="store_true", help="print the resolved options as JSON and exit")


def _add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="errors of a model on a labelled file, predictions and a parity plot",
        usage="mlip eval [MODEL DATA | --model MODEL --data DATA] [options]",
    )
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="model file (best.npz)")
    p.add_argument("data_pos", nargs="?", metavar="DATA", help="labelled structures")
    p.add_argument("--model", help="model file (same as MODEL)")
    p.add_argument("--data", help="labelled structures (same as DATA)")
    p.add_argument(
        "--output-dir", "--output", default="eval_output", help="folder of the outputs (default eval_output)"
    )
    p.add_argument("--prefix", default="eval", help="file name prefix (default eval)")
    p.add_argument("--batch-size", type=int, default=10, help="structures per evaluation (default 10)")
    p.add_argument("--stress", action="store_true", help="also evaluate the stress")
    p.add_argument("--energy-key", default="energy")
    p.add_argument("--forces-key", default="forces")
    p.add_argument("--stress-key", default="stress")
    p.add_argument("--device", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--no-plot", action="store_true", help="skip the parity plot")


def _add_md(sub: Any) -> None:
    p = sub.add_parser(
        "md",
        help="molecular dynamics with a model (ASE)",
        usage="mlip md [MODEL STRUCTURE | --model MODEL --structure STRUCTURE] [options]",
    )
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="model file (best.npz)")
    p.add_argument("structure_pos", nargs="?", metavar="STRUCTURE", help="file with the starting structure")
    p.add_argument("--model", help="model file (same as MODEL)")
    p.add_argument("--structure", help="file with the starting structure (same as STRUCTURE)")
    p.add_argument("--index", type=int, default=0, help="which structure of the file (default 0)")
    p.add_argument("--repeat", type=_int_list, help="supercell repetitions, e.g. 2,2,2")
    p.add_argument("--ensemble", choices=("nve", "langevin"), default="nve")
    p.add_argument("--temperature", type=float, default=300.0, help="initial / bath temperature in K (default 300)")
    p.add_argument("--timestep", type=float, default=2.0, help="time step in fs (default 2)")
    p.add_argument("--steps", type=int, default=500, help="MD steps (default 500)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of momenta and noise (default 0)")
    p.add_argument("--log-every", type=int, default=5, help="energy sampling period in steps (default 5)")
    p.add_argument("--traj-every", type=int, default=10, help="trajectory frame period in steps (default 10)")
    p.add_argument("--output-dir", "--output", default="md_output", help="folder of the outputs (default md_output)")
    p.add_argument("--device", choices=("numpy", "cupy"), default="numpy")


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="make EMT data, train, evaluate and run MD (the whole pipeline, a few minutes)",
        description="Builds a Cu-Au EMT data set, trains a small model, evaluates it on held-out structures, "
        "runs NVE MD and prints one summary table; plots go into the output folder.",
    )
    p.add_argument("--output-dir", "--output", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--max-minutes", type=float, default=4.0, help="training time budget in minutes (default 4)")
    p.add_argument("--epochs", type=int, default=60, help="epoch budget (default 60, about 3 min here)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, split, model and MD (default 0)")
    p.add_argument("--structures", type=int, default=150, help="EMT structures to generate (default 150)")
    p.add_argument("--md-steps", type=int, default=500, help="NVE steps of 2 fs (default 500)")
    p.add_argument("--quiet", action="store_true", help="only the summary table")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mlip`` command."""
    parser = argparse.ArgumentParser(
        prog="mlip",
        description="Train, evaluate and run an irreducible-Cartesian-tensor interatomic potential.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,eval,md,demo}")
    _add_train(sub)
    _add_eval(sub)
    _add_md(sub)
    _add_demo(sub)
    lammps_cli.add_parser(sub)
    return parser


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options of ``mlip train`` after merging checkpoint (on --resume), config file and flags."""
    from .training import load_checkpoint, merge_config, read_json_config

    file_opts: dict[str, Any] = read_json_config(args.config) if args.config else {}
    flags: dict[str, Any] = {key: getattr(args, dest) for dest, key in _TRAIN_FLAGS.items()}
    flags = {k: v for k, v in flags.items() if v is not None}
    model = {key: getattr(args, dest) for dest, key in _MODEL_FLAGS.items() if getattr(args, dest) is not None}
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


def _cmd_train(args: argparse.Namespace) -> int:
    from .metrics import format_table
    from .training import TrainConfig, train

    options = _train_options(args)
    config = TrainConfig.from_dict(options)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    result = train(config, resume=args.resume, overwrite=args.overwrite)
    if result.status == "interrupted":
        return 130
    if config.progress:
        rows = {f"best (epoch {result.best_epoch})": result.best_valid}
        print(format_table(rows, transpose=True))
        print(f"model: {result.best_path}  log: {result.log_path}  curve: {result.curve_path}")
        if math.isfinite(result.seconds_per_epoch):
            print(f"{result.epochs_done} epochs, {result.seconds_per_epoch:.2f} s/epoch ({result.status})")
    return 0


def _either(args: argparse.Namespace, name: str, flag: str) -> str:
    """The value of a positional argument or of its ``--flag`` twin (exactly one of them)."""
    pos, opt = getattr(args, f"{name}_pos"), getattr(args, name)
    if pos is not None and opt is not None and pos != opt:
        raise ValueError(f"give the {name} once: positional {pos!r} and {flag} {opt!r} differ")
    value = pos if pos is not None else opt
    if value is None:
        raise ValueError(f"missing the {name} file: mlip {args.command} needs {name.upper()} (or {flag})")
    return str(value)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_file
    from .metrics import format_table

    args.model = _either(args, "model", "--model")
    args.data = _either(args, "data", "--data")

    res = evaluate_file(
        args.model,
        args.data,
        args.output_dir,
        args.prefix,
        batch_size=args.batch_size,
        stress=True if args.stress else None,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
        stress_key=args.stress_key,
        device=args.device,
        plot=not args.no_plot,
        title=f"{Path(args.model).name} on {Path(args.data).name}",
    )
    print(format_table({Path(args.data).name: res.metrics}, transpose=True))
    for kind, path in res.files.items():
        print(f"{kind}: {path}")
    return 0


def _cmd_md(args: argparse.Namespace) -> int:
    from .evaluation import md_file
    from .metrics import format_table
    from .training import read_labelled

    args.model = _either(args, "model", "--model")
    args.structure = _either(args, "structure", "--structure")

    structures = read_labelled(args.structure, "structure")
    if not -len(structures) <= args.index < len(structures):
        raise ValueError(f"--index {args.index} is out of range: {args.structure} holds {len(structures)} structures")
    atoms = structures[args.index]
    if args.repeat:
        if len(args.repeat) != 3 or min(args.repeat) < 1:
            raise ValueError(f"--repeat needs three positive integers, got {args.repeat}")
        atoms = atoms.repeat(tuple(args.repeat))
    res = md_file(
        args.model,
        atoms,
        args.output_dir,
        ensemble=args.ensemble,
        temperature_K=args.temperature,
        timestep_fs=args.timestep,
        steps=args.steps,
        friction_per_fs=args.friction,
        seed=args.seed,
        log_every=args.log_every,
        trajectory_every=args.traj_every,
        device=args.device,
        title=f"{args.ensemble.upper()} MD, {len(atoms)} atoms",
    )
    print(format_table({"md": res.summary()}, transpose=True))
    for kind, path in res.files.items():
        print(f"{kind}: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    res = run_demo(
        output_dir=args.output_dir,
        max_minutes=args.max_minutes,
        epochs=args.epochs,
        seed=args.seed,
        n_structures=args.structures,
        md_steps=args.md_steps,
        verbose=not args.quiet,
    )
    return 0 if res.status != "interrupted" else 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mlip`` command; returns the exit status (see the module docstring)."""
    from .training import DataError, TrainingError

    args = build_parser().parse_args(argv)
    commands = {"train": _cmd_train, "eval": _cmd_eval, "md": _cmd_md, "demo": _cmd_demo, "lammps": lammps_cli.run}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (DataError, TrainingError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def entry() -> None:
    """The console script: the ``mlip`` process is ours, so glibc's malloc is told to keep freed
    memory (large temporaries are reused instead of page-faulted afresh each step; see
    :mod:`cartesian_irreps.runtime.allocator`), then :func:`main` runs."""
    from cartesian_irreps.runtime.allocator import keep_freed_memory

    keep_freed_memory()
    sys.exit(main())
