"""Time mace-torch's MACE model: energy + forces per call, on CPU.

Peer benchmark only: run it inside the peer venv (see README.md in this folder).
It is never imported by the ``cartesian_irreps`` package.

What is measured
----------------
One call ``model(batch, compute_force=True, training=False)`` of a randomly
initialised (seeded) ``mace.modules.MACE`` model, i.e. energy and forces via
autograd, with the graph built once beforehand through MACE's own data
pipeline (``config_from_atoms`` -> ``AtomicData.from_config`` ->
``torch_geometric.Batch``). Graph building is not timed. The reported time is
the median over ``--repeats`` calls after ``--warmup`` warm-up calls.

Model: hidden irreps ``32x0e+32x1o`` (hidden l_max 1), spherical harmonics
max_ell 2, correlation 3, 2 interaction layers (first
``RealAgnosticInteractionBlock``, then ``RealAgnosticResidualInteractionBlock``,
as ``mace_run_train --model MACE`` does), r_max 5.0, 8 Bessel functions,
polynomial cutoff p = 5, radial MLP [64, 64, 64], readout MLP ``16x0e``, SiLU
gate, zero atomic energies, average neighbour count taken from the structure.

Systems: ``acac`` (first structure of the acetylacetone training set) and
``cu256`` (256-atom periodic fcc Cu cell, positions rattled with stdev 0.05 A,
seed 0). One JSON object is printed to stdout at the end; progress goes to
stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

# e3nn 0.4.4 (pinned by mace-torch) loads its constants with torch.load, which
# fails under torch >= 2.6's weights_only default; mace sets the same variable.
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
import ase
import ase.build
import ase.io
import e3nn
import numpy as np
import torch
from e3nn import o3

# mace prints a notice about cuequivariance to stdout on import; keep stdout
# for the single JSON result.
with contextlib.redirect_stdout(sys.stderr):
    import mace
    from mace import data as mace_data
    from mace import modules
    from mace.tools import torch_geometric
    from mace.tools.utils import AtomicNumberTable

DEFAULT_ACAC = Path("/work/shared/data/acac/train_300K.xyz")
R_MAX = 5.0


def log(msg: str) -> None:
    """Print a progress message to stderr."""
    print(msg, file=sys.stderr, flush=True)


def acac_atoms(path: Path) -> ase.Atoms:
    """First structure of the acetylacetone data set."""
    atoms = ase.io.read(path, index=0)
    assert isinstance(atoms, ase.Atoms)
    return atoms


def cu256_atoms() -> ase.Atoms:
    """256-atom periodic fcc Cu cell, positions rattled (stdev 0.05 A, seed 0)."""
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
    atoms.rattle(stdev=0.05, seed=0)
    return atoms


def build_batch(atoms: ase.Atoms, z_table: AtomicNumberTable) -> torch_geometric.batch.Batch:
    """Build MACE's graph batch for one structure with MACE's own pipeline."""
    config = mace_data.config_from_atoms(atoms)
    graph = mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=R_MAX)
    return torch_geometric.Batch.from_data_list([graph])


def build_model(z_table: AtomicNumberTable, avg_num_neighbors: float, reduced_cg: bool) -> modules.MACE:
    """Randomly initialised MACE model with the benchmark hyper-parameters."""
    n_el = len(z_table.zs)
    return modules.MACE(
        r_max=R_MAX,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=2,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=2,
        num_elements=n_el,
        hidden_irreps=o3.Irreps("32x0e+32x1o"),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(n_el),
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=list(z_table.zs),
        correlation=3,
        gate=torch.nn.functional.silu,
        radial_MLP=[64, 64, 64],
        radial_type="bessel",
        use_reduced_cg=reduced_cg,
    )


def time_system(name: str, atoms: ase.Atoms, args: argparse.Namespace) -> dict[str, Any]:
    """Build graph and model for one system and time energy+forces calls."""
    z_table = AtomicNumberTable(sorted({int(z) for z in atoms.numbers}))
    batch = build_batch(atoms, z_table)
    n_atoms = int(batch["positions"].shape[0])
    n_edges = int(batch["edge_index"].shape[1])
    avg_nn = n_edges / n_atoms
    log(f"{name}: {n_atoms} atoms, {n_edges} edges, avg neighbours {avg_nn:.3f}")

    torch.manual_seed(args.seed)
    model = build_model(z_table, avg_nn, args.reduced_cg)
    model.eval()
    batch_dict = batch.to_dict()

    def call() -> dict[str, Any]:
        return model(dict(batch_dict), compute_force=True, training=False)

    for _ in range(args.warmup):
        call()
    times = []
    out: dict[str, Any] = {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    log(f"{name}: {seconds:.4f} s per energy+forces call")
    return {
        "n_atoms": n_atoms,
        "n_edges": n_edges,
        "avg_num_neighbors": avg_nn,
        "seconds_per_call": seconds,
        "times_s": times,
        "energy": float(out["energy"].detach().sum()),
        "max_abs_force": float(out["forces"].detach().abs().max()),
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the benchmark and print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="all", choices=("acac", "cu256", "all"))
    parser.add_argument("--acac-path", type=Path, default=DEFAULT_ACAC)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reduced-cg",
        action="store_true",
        help="use MACE's reduced CG coefficients (mace_run_train default: off)",
    )
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float64)

    systems: dict[str, ase.Atoms] = {}
    if args.system in ("acac", "all"):
        systems["acac"] = acac_atoms(args.acac_path)
    if args.system in ("cu256", "all"):
        systems["cu256"] = cu256_atoms()

    result: dict[str, Any] = {
        "dtype": "float64",
        "threads": args.threads,
        "load_avg_1min_before": load_before,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "reduced_cg": args.reduced_cg,
        "torch": torch.__version__,
        "e3nn": e3nn.__version__,
        "mace": mace.__version__,
        "model": {
            "hidden_irreps": "32x0e+32x1o",
            "max_ell": 2,
            "correlation": 3,
            "num_interactions": 2,
            "r_max": R_MAX,
            "num_bessel": 8,
            "num_polynomial_cutoff": 5,
            "radial_MLP": [64, 64, 64],
            "MLP_irreps": "16x0e",
        },
        "systems": {name: time_system(name, at, args) for name, at in systems.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
