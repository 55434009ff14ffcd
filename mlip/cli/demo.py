"""``mlip demo``: the whole pipeline on built-in EMT data (:mod:`mlip.demo`)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import announce_backend

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
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


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    announce_backend("numpy")
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
