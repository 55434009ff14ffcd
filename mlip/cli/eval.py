"""``mlip eval``: errors of a model on a labelled file, per-structure predictions and a parity plot."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import either

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
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


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_file
    from ..metrics import format_table

    args.model = either(args, "model", "--model")
    args.data = either(args, "data", "--data")

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
