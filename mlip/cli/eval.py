"""``mlip eval``: predictions of a model on structures; errors (overall, per config_type) and a parity plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import announce_backend, either, warnings_as_lines

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="predictions of a model on structures; errors, per-config_type table and parity plot when labelled",
        usage="mlip eval [MODEL DATA | --model MODEL --data DATA] [options]",
        description="Predict energies and forces (and stress) of every structure. Where reference labels exist "
        "the errors are reported (over the labelled structures, with a warning that counts the others), per "
        "config_type too; unlabelled structures get predictions only. The output extxyz keeps every key of the "
        "input and adds the predictions as <pred-prefix>energy, <pred-prefix>forces, <pred-prefix>stress.",
    )
    p.add_argument("model_pos", nargs="?", metavar="MODEL", help="model file (best.npz)")
    p.add_argument("data_pos", nargs="?", metavar="DATA", help="structures (labelled or not)")
    p.add_argument("--model", help="model file (same as MODEL)")
    p.add_argument("--data", help="structures (same as DATA)")
    p.add_argument(
        "--output-dir", "--output", default="eval_output", help="folder of the outputs (default eval_output)"
    )
    p.add_argument("--prefix", default="eval", help="file name prefix (default eval)")
    p.add_argument("--pred-prefix", default="mlip_", help="prefix of the predicted keys in the extxyz (default mlip_)")
    p.add_argument("--batch-size", type=int, default=10, help="structures per evaluation (default 10)")
    p.add_argument("--stress", action="store_true", help="also evaluate the stress (every structure needs one)")
    p.add_argument("--energy-key", help="reference energy key (default energy; a given key must exist)")
    p.add_argument("--forces-key", help="reference forces key (default forces; a given key must exist)")
    p.add_argument("--stress-key", help="reference stress key (default stress)")
    p.add_argument(
        "--group-key", default="config_type", help="info key of the per-group error table (default config_type)"
    )
    p.add_argument("--device", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--no-plot", action="store_true", help="skip the parity plot")


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_file
    from ..metrics import format_table

    args.model = either(args, "model", "--model")
    args.data = either(args, "data", "--data")
    announce_backend(args.device)
    with warnings_as_lines():
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
            pred_prefix=args.pred_prefix,
            group_key=args.group_key or None,
        )
    print(format_table({Path(args.data).name: res.metrics}, transpose=True))
    if res.groups:
        cols = ("n_structures", "energy_rmse_mev_atom", "energy_mae_mev_atom", "force_rmse_mev_A", "force_mae_mev_A")
        print(f"\nerrors per {res.group_key}:")
        print(format_table({g: {c: m.get(c) for c in cols} for g, m in res.groups.items()}))
    if not res.labelled:
        print("no reference labels: predictions only")
    for kind, path in res.files.items():
        print(f"{kind}: {path}")
    return 0
