"""``mlip md``: NVE or Langevin molecular dynamics with a model (ASE); trajectory, drift, speed, plot."""

from __future__ import annotations

import argparse
from typing import Any

from .common import announce_backend, either, int_list

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
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
    p.add_argument("--repeat", type=int_list, help="supercell repetitions, e.g. 2,2,2")
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
    p.add_argument(
        "--max-temperature",
        type=float,
        help="stop (exit 1) when the temperature exceeds this, K (default 10 x --temperature + 10000)",
    )
    p.add_argument(
        "--max-energy-change",
        type=float,
        default=1.0,
        help="NVE: stop (exit 1) when the total energy moves more than this from its start, eV/atom (default 1)",
    )


def run(args: argparse.Namespace) -> int:
    from ..evaluation import md_file
    from ..metrics import format_table
    from ..training import read_labelled

    args.model = either(args, "model", "--model")
    args.structure = either(args, "structure", "--structure")
    announce_backend(args.device)

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
        max_temperature_K=args.max_temperature,
        max_energy_change_ev_atom=args.max_energy_change,
    )
    print(format_table({"md": res.summary()}, transpose=True))
    for kind, path in res.files.items():
        print(f"{kind}: {path}")
    return 0
