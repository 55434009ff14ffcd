"""Time the fused message-passing tensor product: compiled kernel vs NumPy reference.

For every rank L (natural-parity paths, stacked layout, exact unit couplings), dtype and
thread count, it times

* ``forward``: mode ``"z"`` (the product ``z`` from ``x``, ``y``, ``w``);
* ``gradients``: modes ``"x"``, ``"y"`` and ``"w"`` together (the three input gradients
  given the output gradient ``g``), i.e. the backward pass;

once writing into preallocated outputs (``out=``) and once allocating fresh outputs (which on
Linux adds the page faults of the new memory: about 0.5 GB for ``z`` at L=3 in float64).
Each number is the median over ``--repeats`` runs after one warm-up.  The reference
(:func:`phi_grad_reference`, NumPy, threads as NumPy's BLAS uses them) is timed last, once
per L and dtype, with fresh outputs.

Run on an otherwise idle machine::

    python benchmarks/fused_kernel.py                      # L = 1 2 3, float64 float32, threads 1 2
    python benchmarks/fused_kernel.py --lmax 3 --dtype float64 --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cartesian_irreps._validate import triples
from cartesian_irreps.runtime.fused import MODES, PathTable, extension_available, phi_grad, phi_grad_reference

GRAD_MODES = ("x", "y", "w")
REPLACED = {"z": "g", "x": "x", "y": "y", "w": "w"}


def natural_table(L: int) -> PathTable:
    """Natural-parity paths up to rank L with the exact unit couplings (derived with SymPy)."""
    from cartesian_irreps.symbolic.coupling import derive_coupling

    paths = [t for t in triples(L) if sum(t) % 2 == 0]
    return PathTable.from_couplings(paths, [derive_coupling(*t, "unit").floats() for t in paths])


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, run the timings, print a table (and optionally write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--edges", type=int, default=20000)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"], choices=("float64", "float32"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true", help="skip the (slow) NumPy reference")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not extension_available():
        print("the compiled kernel cartesian_irreps._fused is not built; only the reference runs", file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"# E={args.edges} C={args.channels} load average (1 min) at start: {load:.2f}")
    if load > 0.5:
        print("# warning: the machine is busy; timings will be noisy", file=sys.stderr)
    header = f"{'L':>2} {'P':>3} {'dtype':>8} {'impl':>10} {'threads':>7} {'fwd(out=)':>10} {'fwd(new)':>9}"
    header += f" {'grad(out=)':>10} {'grad(new)':>9}  [x / y / w with out=]"
    print(header)

    rng = np.random.default_rng(args.seed)
    results: list[dict[str, Any]] = []
    E, C = args.edges, args.channels
    for L in args.lmax:
        table = natural_table(L)
        for dtype_name in args.dtype:
            dtype = np.dtype(dtype_name)
            shapes = {"x": (E, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P), "g": (E, C, table.DZ)}
            arrays = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}

            def inputs(mode: str, arrays: dict = arrays) -> dict:
                return {k: v for k, v in arrays.items() if k != REPLACED[mode]}

            outs = {m: np.empty_like(arrays[REPLACED[m]]) for m in MODES}
            impls: list[tuple[str, int | None]] = []
            if extension_available():
                impls += [("C kernel", t) for t in args.threads]
            if not args.no_reference:
                impls.append(("reference", None))
            for impl, threads in impls:
                if impl == "reference":
                    reps = args.reference_repeats

                    def run(mode: str, out: Any) -> Any:
                        return phi_grad_reference(mode, table, **inputs(mode), out=out)

                else:
                    reps = args.repeats

                    def run(mode: str, out: Any, threads: int | None = threads) -> Any:
                        return phi_grad(mode, table, **inputs(mode), out=out, threads=threads)

                fwd_out = median_time(lambda: run("z", outs["z"]), reps)
                fwd_new = median_time(lambda: run("z", None), reps)
                per_mode = {m: median_time(lambda m=m: run(m, outs[m]), reps) for m in GRAD_MODES}
                grad_new = median_time(lambda: [run(m, None) for m in GRAD_MODES], reps)
                grad_out = sum(per_mode.values())
                row = {
                    "L": L,
                    "paths": table.P,
                    "edges": E,
                    "channels": C,
                    "dtype": dtype_name,
                    "impl": impl,
                    "threads": threads,
                    "forward_out_s": fwd_out,
                    "forward_new_s": fwd_new,
                    "gradients_out_s": grad_out,
                    "gradients_new_s": grad_new,
                    **{f"grad_{m}_out_s": t for m, t in per_mode.items()},
                }
                results.append(row)
                detail = " / ".join(f"{per_mode[m]:.4f}" for m in GRAD_MODES)
                print(
                    f"{L:>2} {table.P:>3} {dtype_name:>8} {impl:>10} {threads or '-':>7} {fwd_out:>10.4f} "
                    f"{fwd_new:>9.4f} {grad_out:>10.4f} {grad_new:>9.4f}  [{detail}]",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"load_avg_1min_before": load, "results": results}, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
