"""Time e3nn's channel-wise ('uvu') tensor product as MACE uses it.

Peer benchmark only: run it inside the peer venv (see README.md in this folder).
It is never imported by the ``cartesian_irreps`` package.

What is measured
----------------
The tensor product of MACE's interaction block: per-edge node features
``Cx0e + Cx1o + ... + CxLp`` (natural parity, p = (-1)^l, already gathered onto
the edges) times the edge spherical harmonics ``1x0e + 1x1o + ... + 1xLp``, with
one 'uvu' path per reachable output irrep ``l3 <= L`` of natural parity (the
logic of ``mace.modules.irreps_tools.tp_out_irreps_with_instructions``) and
per-edge weights (``shared_weights=False, internal_weights=False``).

* ``forward_s``: one forward call ``tp(x1, x2, w)``.
* ``forward_backward_s``: forward, then backward of ``out.sum()`` with respect
  to ``x1``, ``x2`` and ``w`` (all require grad).

Both are the median over ``--repeats`` runs after one warm-up run. A single
JSON object is printed to stdout at the end; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

# e3nn 0.4.4 (pinned by mace-torch) loads its constants with torch.load, which
# fails under torch >= 2.6's weights_only default; mace sets the same variable.
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
import e3nn
import torch
from e3nn import o3

Instruction = tuple[int, int, int, str, bool]


def log(msg: str) -> None:
    """Print a progress message to stderr."""
    print(msg, file=sys.stderr, flush=True)


def natural_irreps(lmax: int, mul: int) -> o3.Irreps:
    """Return ``mul x 0e + mul x 1o + ... + mul x lmax p`` with p = (-1)^l."""
    return o3.Irreps([(mul, (ell, (-1) ** ell)) for ell in range(lmax + 1)])


def tp_out_irreps_with_instructions(
    irreps1: o3.Irreps, irreps2: o3.Irreps, target_irreps: o3.Irreps
) -> tuple[o3.Irreps, list[Instruction]]:
    """Output irreps and 'uvu' instructions, as MACE builds them.

    Mirrors ``mace.modules.irreps_tools.tp_out_irreps_with_instructions``: one
    output slot per (i1, i2, l3) path whose irrep lies in ``target_irreps``,
    then the output irreps are sorted and the instructions renumbered.
    """
    irreps_out_list: list[tuple[int, o3.Irrep]] = []
    instructions: list[Instruction] = []
    for i, (mul, ir_in) in enumerate(irreps1):
        for j, (_, ir_edge) in enumerate(irreps2):
            for ir_out in ir_in * ir_edge:  # |l1 - l2| <= l3 <= l1 + l2
                if ir_out in target_irreps:
                    k = len(irreps_out_list)
                    irreps_out_list.append((mul, ir_out))
                    instructions.append((i, j, k, "uvu", True))
    irreps_out, permut, _ = o3.Irreps(irreps_out_list).sort()
    instructions = sorted(
        ((i1, i2, permut[k], mode, train) for i1, i2, k, mode, train in instructions),
        key=lambda ins: ins[2],
    )
    return irreps_out, instructions


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the benchmark and print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--edges", type=int, default=20000)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.set_default_dtype(dtype)

    lmax = args.lmax
    irreps_node = natural_irreps(lmax, args.channels)
    irreps_sh = natural_irreps(lmax, 1)
    target = natural_irreps(lmax, 1)
    irreps_out, instructions = tp_out_irreps_with_instructions(irreps_node, irreps_sh, target)
    tp = o3.TensorProduct(
        irreps_node,
        irreps_sh,
        irreps_out,
        instructions,
        shared_weights=False,
        internal_weights=False,
    )
    log(f"L={lmax} paths={len(instructions)} weight_numel={tp.weight_numel}")
    log(f"irreps_out={irreps_out}")

    gen = torch.Generator().manual_seed(args.seed)
    n = args.edges
    x1 = torch.randn(n, irreps_node.dim, generator=gen, dtype=dtype)
    x2 = torch.randn(n, irreps_sh.dim, generator=gen, dtype=dtype)
    w = torch.randn(n, tp.weight_numel, generator=gen, dtype=dtype)

    def forward() -> None:
        with torch.no_grad():
            tp(x1, x2, w)

    x1g, x2g, wg = (t.clone().requires_grad_(True) for t in (x1, x2, w))

    def forward_backward() -> None:
        for t in (x1g, x2g, wg):
            t.grad = None
        tp(x1g, x2g, wg).sum().backward()

    log("timing forward ...")
    t_fwd = median_time(forward, args.repeats)
    log(f"forward {t_fwd:.4f} s; timing forward+backward ...")
    t_fb = median_time(forward_backward, args.repeats)
    log(f"forward+backward {t_fb:.4f} s")

    result = {
        "L": lmax,
        "edges": n,
        "channels": args.channels,
        "dtype": args.dtype,
        "threads": args.threads,
        "load_avg_1min_before": load_before,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "e3nn": e3nn.__version__,
        "paths": len(instructions),
        "weight_numel": tp.weight_numel,
        "forward_s": t_fwd,
        "forward_backward_s": t_fb,
        "irreps_in1": str(irreps_node),
        "irreps_in2": str(irreps_sh),
        "irreps_out": str(irreps_out),
        "irreps_out_simplified": str(irreps_out.simplify()),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
