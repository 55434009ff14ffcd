"""Time the fused message-passing tensor product: compiled kernel vs NumPy reference.

**Edge section** (``--sections edge``): the per-edge product (the graph form on
``GraphIndex.identity(E)``: one edge per node pair, nothing gathered or summed).  For every rank L
(natural-parity paths, stacked layout, exact unit couplings), dtype and thread count, it times

* ``forward``: mode ``"z"`` (the product ``z`` from ``x``, ``y``, ``w``);
* ``gradients``: modes ``"x"``, ``"y"`` and ``"w"`` together (the three input gradients
  given the output gradient ``g``), i.e. the backward pass;

once writing into preallocated outputs (``out=``) and once allocating fresh outputs (which on
Linux adds the page faults of the new memory: about 0.5 GB for ``z`` at L=3 in float64).
Each number is the median over ``--repeats`` runs after one warm-up.  The reference
(:func:`phi_grad_graph_reference`, NumPy, threads as NumPy's BLAS uses them) is timed last, once
per L and dtype, with fresh outputs.

**Graph section** (``--sections graph``): the graph form on a real neighbour list, the 256-atom
copper cell (fcc, a = 3.61 Å, 4 x 4 x 4 cubic cells, rattled 0.05 Å with seed 0, cutoff 5 Å:
E = 10964 edges), C = 32 channels, with the message tables of the model's two layers at lmax = 2
(node ranks 0..0 in the first layer, 0..1 in the second; natural parity).  It compares

* ``chain``: what the model did before the fused op, ``A = segment_sum(z(x = h[s], y, w), r)``
  (``mlip.autodiff`` ``index_select`` / ``segment_sum`` on arrays, the per-edge product on
  ``GraphIndex.identity(E)`` for the product), and its backward given ``dL/dA``: ``ge = gA[r]``
  (gather), ``dh = segment_sum(mode x, s)``, ``dy = mode y``, ``dw = mode w`` (the gather
  ``gA[r]`` is counted with ``dh``; ``x = h[s]`` is reused from the forward, as autodiff keeps it);
* ``fused``: :func:`phi_grad_graph` modes ``z``, ``x``, ``y``, ``w`` (no ``(E, C, D)`` array).

Times are the best of ``--graph-repeats`` runs (less sensitive than the median to other jobs on
the machine), after one warm-up, allocating fresh outputs as the model does.

Run on an otherwise idle machine::

    python benchmarks/fused_kernel.py                      # L = 1 2 3, float64 float32, threads 1 2
    python benchmarks/fused_kernel.py --lmax 3 --dtype float64 --threads 2 --json out.json
    python benchmarks/fused_kernel.py --sections graph --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from cartesian_irreps._validate import triples
from cartesian_irreps.runtime.fused import (
    MODES,
    GraphIndex,
    PathTable,
    extension_available,
    phi_grad_graph,
    phi_grad_graph_reference,
)
from cartesian_irreps.runtime.timing import best_time, median_time

GRAD_MODES = ("x", "y", "w")
#: the argument each mode replaces (node features are ``h``)
REPLACED = {"z": "g", "x": "h", "y": "y", "w": "w"}


def natural_table(L: int) -> PathTable:
    """Natural-parity paths up to rank L with the exact unit couplings (derived with SymPy)."""
    from cartesian_irreps.symbolic.coupling import derive_coupling

    paths = [t for t in triples(L) if sum(t) % 2 == 0]
    return PathTable.from_couplings(paths, [derive_coupling(*t, "unit").floats() for t in paths])


def cu256_graph() -> tuple[Any, int]:
    """``(GraphIndex, build seconds)`` of the rattled 256-atom copper cell with a 5 Å cutoff."""
    import ase.build

    from mlip.data import SpeciesTable, batch_structures

    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.05, seed=0)
    batch = batch_structures([atoms], 5.0, SpeciesTable(["Cu"]))
    n = int(batch.species.shape[0])
    build = best_time(lambda: GraphIndex.build(batch.senders, batch.receivers, n), 20)
    return GraphIndex.build(batch.senders, batch.receivers, n), build


def model_tables() -> list[tuple[str, PathTable]]:
    """The message tables of the model's two layers at lmax = 2 (hidden ranks 0..1, natural parity)."""
    from mlip.model import ModelConfig, build_plan

    plan = build_plan(ModelConfig(elements=("Cu",), lmax=2, hidden_lmax=1, num_layers=2))
    out = []
    for lp, name in zip(plan, ("layer 1 (h ranks 0..0)", "layer 2 (h ranks 0..1)")):
        ((_, table, _),) = lp.message
        out.append((name, table))
    return out


def graph_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time the fused graph op against the gather -> product -> scatter chain on the Cu256 graph."""
    from mlip import autodiff as ad

    graph, build_s = cu256_graph()
    N, E, C = graph.num_nodes, graph.num_edges, args.channels
    s, r = graph.senders, graph.receivers
    edges = GraphIndex.identity(E)  # the per-edge product of the chain
    print(f"# graph: Cu256, N={N} E={E} C={C}; GraphIndex.build {build_s * 1e3:.2f} ms", flush=True)
    print(
        f"{'layer':>24} {'P':>2} {'dtype':>8} {'thr':>3} {'impl':>6} {'fwd':>8} {'grad x':>8} {'grad y':>8} "
        f"{'grad w':>8} {'bwd':>8} {'fwd+bwd':>8}  (ms)"
    )
    rng = np.random.default_rng(args.seed)
    results: list[dict[str, Any]] = []
    for name, table in model_tables():
        for dtype_name in args.dtype:
            dtype = np.dtype(dtype_name)
            h = rng.standard_normal((N, C, table.DX)).astype(dtype)
            y = rng.standard_normal((E, table.DY)).astype(dtype)
            w = rng.standard_normal((E, C, table.P)).astype(dtype)
            gA = rng.standard_normal((N, C, table.DZ)).astype(dtype)
            for threads in args.threads:
                xe = np.take(h, s, axis=0)  # kept from the forward, as autodiff does

                def gather(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
                    return ad.index_select(ad.constant(a), idx).data

                def scatter(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
                    return ad.segment_sum(ad.constant(a), idx, N).data

                def chain_x(threads: int = threads) -> np.ndarray:
                    ge = gather(gA, r)
                    return scatter(phi_grad_graph("x", table, edges, y=y, w=w, g=ge, threads=threads), s)

                ge = gather(gA, r)
                chain = {
                    "fwd": lambda t=threads: scatter(
                        phi_grad_graph("z", table, edges, h=gather(h, s), y=y, w=w, threads=t), r
                    ),
                    "x": chain_x,
                    "y": lambda t=threads, ge=ge: phi_grad_graph("y", table, edges, h=xe, w=w, g=ge, threads=t),
                    "w": lambda t=threads, ge=ge: phi_grad_graph("w", table, edges, h=xe, y=y, g=ge, threads=t),
                }
                fused = {
                    "fwd": lambda t=threads: phi_grad_graph("z", table, graph, h=h, y=y, w=w, threads=t),
                    "x": lambda t=threads: phi_grad_graph("x", table, graph, y=y, w=w, g=gA, threads=t),
                    "y": lambda t=threads: phi_grad_graph("y", table, graph, h=h, w=w, g=gA, threads=t),
                    "w": lambda t=threads: phi_grad_graph("w", table, graph, h=h, y=y, g=gA, threads=t),
                }
                rows = {}
                for impl, fns in (("chain", chain), ("fused", fused)):
                    t = {k: best_time(fn, args.graph_repeats) for k, fn in fns.items()}
                    bwd = t["x"] + t["y"] + t["w"]
                    rows[impl] = t["fwd"] + bwd
                    results.append(
                        {
                            "section": "graph",
                            "layer": name,
                            "paths": table.P,
                            "nodes": N,
                            "edges": E,
                            "channels": C,
                            "dtype": dtype_name,
                            "impl": impl,
                            "threads": threads,
                            "forward_s": t["fwd"],
                            "grad_x_s": t["x"],
                            "grad_y_s": t["y"],
                            "grad_w_s": t["w"],
                            "backward_s": bwd,
                        }
                    )
                    print(
                        f"{name:>24} {table.P:>2} {dtype_name:>8} {threads:>3} {impl:>6} {t['fwd'] * 1e3:>8.2f} "
                        f"{t['x'] * 1e3:>8.2f} {t['y'] * 1e3:>8.2f} {t['w'] * 1e3:>8.2f} {bwd * 1e3:>8.2f} "
                        f"{(t['fwd'] + bwd) * 1e3:>8.2f}",
                        flush=True,
                    )
                print(f"{'':>24} speed-up of fused over chain (fwd+bwd): {rows['chain'] / rows['fused']:.1f}x")
    return results


def edge_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time the per-edge product (compiled kernel per thread count, then the NumPy reference) for every L and dtype."""
    print(f"# edge section: E={args.edges} C={args.channels}")
    header = f"{'L':>2} {'P':>3} {'dtype':>8} {'impl':>10} {'threads':>7} {'fwd(out=)':>10} {'fwd(new)':>9}"
    header += f" {'grad(out=)':>10} {'grad(new)':>9}  [x / y / w with out=]"
    print(header)

    rng = np.random.default_rng(args.seed)
    results: list[dict[str, Any]] = []
    E, C = args.edges, args.channels
    edges = GraphIndex.identity(E)
    for L in args.lmax:
        table = natural_table(L)
        for dtype_name in args.dtype:
            dtype = np.dtype(dtype_name)
            shapes = {"h": (E, C, table.DX), "y": (E, table.DY), "w": (E, C, table.P), "g": (E, C, table.DZ)}
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
                        return phi_grad_graph_reference(mode, table, edges, **inputs(mode), out=out)

                else:
                    reps = args.repeats

                    def run(mode: str, out: Any, threads: int | None = threads) -> Any:
                        return phi_grad_graph(mode, table, edges, **inputs(mode), out=out, threads=threads)

                fwd_out = median_time(lambda: run("z", outs["z"]), reps)
                fwd_new = median_time(lambda: run("z", None), reps)
                per_mode = {m: median_time(lambda m=m: run(m, outs[m]), reps) for m in GRAD_MODES}
                grad_new = median_time(lambda: [run(m, None) for m in GRAD_MODES], reps)
                grad_out = sum(per_mode.values())
                row = {
                    "section": "edge",
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
    return results


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
    parser.add_argument(
        "--sections", nargs="+", default=["edge", "graph"], choices=("edge", "graph"), help="what to time"
    )
    parser.add_argument("--graph-repeats", type=int, default=20, help="runs per timing of the graph section")
    args = parser.parse_args(argv)

    if not extension_available():
        print("the compiled kernel cartesian_irreps._fused is not built; only the reference runs", file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"# load average (1 min) at start: {load:.2f}")
    if load > 0.5:
        print("# warning: the machine is busy; timings will be noisy", file=sys.stderr)
    results: list[dict[str, Any]] = []
    if "edge" in args.sections:
        results += edge_section(args)
    if "graph" in args.sections:
        results += graph_section(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"load_avg_1min_before": load, "results": results}, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
