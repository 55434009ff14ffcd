"""Benchmark: generated tensor-product kernels vs a straightforward einsum, and vs e3nn.

Part 1 (always): for every triple with ranks <= --lmax, each layout and dtype, the time per call of
the channel-wise product ``z[e, c, k] = sum C[i, j, k] x[e, c, i] y[e, c, j]`` at --edges x --channels

* generated kernel: ``cartesian_irreps.runtime.tensor_product`` (its generated plan);
* reference: ``numpy.einsum("ijk,eci,ecj->eck", C, x, y)`` over the dense coupling of that layout
  (3^l1 x 3^l2 x 3^l3 in the full layout). Where the reference would take minutes it is timed on
  fewer edges and scaled linearly (marked ``*``; the cost is exactly linear in the edges).

Part 2 (``--vs-e3nn``): the message-passing product (node features up to L, edge harmonics up to L,
outputs up to L, natural-parity paths, every path kept and scaled by its own per-edge, per-channel
weight), forward and forward+backward, against e3nn's 'uvu' tensor product as MACE uses it, run side
by side in the same invocation through the peer environment (``--peer-python``, see
benchmarks/peers/README.md).

Writes ``benchmarks/results/tensor_products.json``, ``docs/img/tensor_products.png`` and the tables in
``docs/benchmarks.md`` (between markers). Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from cartesian_irreps._validate import triples  # noqa: E402
from cartesian_irreps.runtime import tables  # noqa: E402
from cartesian_irreps.runtime.layouts import to_full  # noqa: E402
from cartesian_irreps.runtime.products import tensor_product  # noqa: E402
from cartesian_irreps.runtime.timing import machine_description, median_time  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
REFERENCE_BUDGET = 2e9  # multiply-adds the reference may do in one timed call before we scale down


def full_dense_coupling(triple: tuple[int, int, int]) -> np.ndarray:
    """Dense full-layout coupling F[I, J, K] = sum C[m1,m2,m3] U1[m1,I] U2[m2,J] U3[m3,K] (float64)."""
    c = tables.dense_coupling(*triple)
    u1, u2, u3 = (tables.to_full_matrix(l, np.float64, np) for l in triple)
    return np.einsum("abc,ai,bj,ck->ijk", c, u1, u2, u3, optimize=True)


def bench_triple(triple, layout, dtype, edges, channels, repeats, rng) -> dict:
    l1, l2, _ = triple
    xc = rng.standard_normal((edges, channels, 2 * l1 + 1)).astype(dtype)
    yc = rng.standard_normal((edges, channels, 2 * l2 + 1)).astype(dtype)
    if layout == "compact":
        x, y = xc, yc
        dense = tables.dense_coupling(*triple).astype(dtype)
        xr, yr = x, y
    else:
        x, y = to_full(xc, l1), to_full(yc, l2)
        dense = full_dense_coupling(triple).astype(dtype)
        xr, yr = x.reshape(edges, channels, -1), y.reshape(edges, channels, -1)
    kernel = median_time(lambda: tensor_product(x, y, *triple, layout=layout), repeats)
    cost = edges * channels * dense.size
    sub = edges if cost <= REFERENCE_BUDGET else max(1, int(edges * REFERENCE_BUDGET / cost))
    ref = median_time(lambda: np.einsum("ijk,eci,ecj->eck", dense, xr[:sub], yr[:sub]), 1 if sub < edges else repeats)
    ref *= edges / sub
    z = tensor_product(x[:4], y[:4], *triple, layout=layout).reshape(4, channels, -1)
    zr = np.einsum("ijk,eci,ecj->eck", dense, xr[:4], yr[:4])
    err = float(np.abs(z - zr).max() / max(np.abs(zr).max(), 1e-30))
    return {
        "triple": list(triple),
        "layout": layout,
        "dtype": np.dtype(dtype).name,
        "kernel_s": kernel,
        "reference_s": ref,
        "reference_scaled": sub < edges,
        "speedup": ref / kernel,
        "max_rel_diff": err,
    }


def part1(args) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    jobs = [(t, layout, dt) for t in triples(args.lmax) for layout in args.layouts for dt in args.dtypes]
    for n, (t, layout, dt) in enumerate(jobs):
        r = bench_triple(t, layout, dt, args.edges, args.channels, args.repeats, rng)
        rows.append(r)
        print(
            f"[{n + 1}/{len(jobs)}] {t} {layout:7s} {dt:7s} kernel {r['kernel_s'] * 1e3:9.2f} ms  "
            f"reference {r['reference_s'] * 1e3:11.1f} ms{'*' if r['reference_scaled'] else ' '}  "
            f"x{r['speedup']:.1f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def table1(rows: list[dict], args) -> str:
    lines = [
        "| triple | layout | dtype | kernel (ms) | einsum reference (ms) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        star = "*" if r["reference_scaled"] else ""
        lines.append(
            f"| {tuple(r['triple'])} | {r['layout']} | {r['dtype']} | {r['kernel_s'] * 1e3:.2f} | "
            f"{r['reference_s'] * 1e3:.1f}{star} | {r['speedup']:.1f}x |"
        )
    slowest = min(rows, key=lambda r: r["speedup"])
    lines.append("")
    lines.append(
        f"Smallest speed-up: {slowest['speedup']:.1f}x at {tuple(slowest['triple'])} {slowest['layout']} "
        f"{slowest['dtype']}. `*`: reference timed on fewer edges and scaled linearly."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- part 2: vs e3nn
def ours_message_passing(lmax: int, edges: int, channels: int, repeats: int) -> dict:
    from cartesian_irreps.runtime.message_passing import MessagePassingProduct

    mp = MessagePassingProduct(lmax, lmax, lmax, parity="natural")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((edges, channels, (lmax + 1) ** 2))
    y = rng.standard_normal((edges, (lmax + 1) ** 2))
    w = rng.standard_normal((edges, channels, mp.num_paths))
    g = rng.standard_normal((edges, channels, mp.out_dim))
    fwd = median_time(lambda: mp(x, y, w), repeats)

    def fwd_bwd():
        mp(x, y, w)
        mp.vjp(g, x, y, w)

    both = median_time(fwd_bwd, repeats)
    return {
        "forward_s": fwd,
        "forward_backward_s": both,
        "paths": mp.num_paths,
        "flops": mp.flops(edges, channels),
        "kernel": mp.backend_name,
    }


def peer_e3nn(args, lmax: int) -> dict:
    script = ROOT / "benchmarks" / "peers" / "e3nn_tp.py"
    cmd = [
        args.peer_python,
        str(script),
        "--lmax",
        str(lmax),
        "--edges",
        str(args.edges),
        "--channels",
        str(args.channels),
        "--dtype",
        "float64",
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def part2(args) -> list[dict]:
    rows = []
    for lmax in (1, 2, 3):
        ours = ours_message_passing(lmax, args.edges, args.channels, args.repeats)
        peer = peer_e3nn(args, lmax)
        row = {
            "L": lmax,
            "ours": ours,
            "e3nn": peer,
            "forward_ratio": peer["forward_s"] / ours["forward_s"],
            "forward_backward_ratio": peer["forward_backward_s"] / ours["forward_backward_s"],
        }
        rows.append(row)
        print(
            f"L={lmax}: ours fwd {ours['forward_s']:.4f} s, fwd+bwd {ours['forward_backward_s']:.4f} s | e3nn fwd "
            f"{peer['forward_s']:.4f} s, fwd+bwd {peer['forward_backward_s']:.4f} s | x{row['forward_ratio']:.1f} / "
            f"x{row['forward_backward_ratio']:.1f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def table2(rows: list[dict]) -> str:
    lines = [
        "| L | paths | ours forward (s) | e3nn forward (s) | ratio | ours fwd+bwd (s) | e3nn fwd+bwd (s) | ratio | "
        "ours GFLOP/s (fwd, floor FLOPs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, p = r["ours"], r["e3nn"]
        gf = o["flops"]["forward_floor"] / o["forward_s"] / 1e9
        lines.append(
            f"| {r['L']} | {o['paths']} | {o['forward_s']:.4f} | {p['forward_s']:.4f} | "
            f"{r['forward_ratio']:.1f}x | {o['forward_backward_s']:.4f} | {p['forward_backward_s']:.4f} | "
            f"{r['forward_backward_ratio']:.1f}x | {gf:.1f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- output
def machine() -> str:
    """CPU model, usable cores, Python, NumPy and opt_einsum versions."""
    return machine_description("opt_einsum")


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        return text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    return text.rstrip() + "\n\n" + block + "\n"


def plot(rows1: list[dict], rows2: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 2 if rows2 else 1
    fig, axes = plt.subplots(1, ncols, figsize=(7 * ncols, 4.5), squeeze=False)
    ax = axes[0, 0]
    for layout, marker in (("compact", "o"), ("full", "s")):
        for dt, color in (("float64", "C0"), ("float32", "C1")):
            sel = [r for r in rows1 if r["layout"] == layout and r["dtype"] == dt]
            if sel:
                ax.scatter(
                    range(len(sel)),
                    [r["speedup"] for r in sel],
                    marker=marker,
                    color=color,
                    s=14,
                    label=f"{layout} {dt}",
                )
    ax.axhline(1, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("triple (l1, l2, l3), lexicographic")
    ax.set_ylabel("speed-up over np.einsum reference")
    ax.set_title("Generated kernels vs einsum over the dense coupling")
    ax.legend(fontsize=8)
    if rows2:
        ax = axes[0, 1]
        ls = [r["L"] for r in rows2]
        width = 0.2
        xs = np.arange(len(ls))
        ax.bar(xs - 1.5 * width, [r["ours"]["forward_s"] for r in rows2], width, label="ours forward")
        ax.bar(xs - 0.5 * width, [r["e3nn"]["forward_s"] for r in rows2], width, label="e3nn forward")
        ax.bar(xs + 0.5 * width, [r["ours"]["forward_backward_s"] for r in rows2], width, label="ours fwd+bwd")
        ax.bar(xs + 1.5 * width, [r["e3nn"]["forward_backward_s"] for r in rows2], width, label="e3nn fwd+bwd")
        ax.set_xticks(xs, [f"L={v}" for v in ls])
        ax.set_yscale("log")
        ax.set_ylabel("seconds per call")
        ax.set_title("Message-passing product, 20000 edges x 32 channels, float64")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lmax", type=int, default=4)
    p.add_argument("--edges", type=int, default=20000)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--layouts", default="compact,full")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--vs-e3nn", action="store_true", help="also run the message-passing comparison with e3nn")
    p.add_argument("--skip-triples", action="store_true", help="only the message-passing comparison")
    p.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md and the PNG")
    args = p.parse_args(argv)
    args.dtypes = args.dtypes.split(",")
    args.layouts = args.layouts.split(",")
    command = "python benchmarks/tensor_products.py " + " ".join(argv if argv is not None else sys.argv[1:])
    rows1 = [] if args.skip_triples else part1(args)
    rows2 = part2(args) if args.vs_e3nn else []
    # a part that was not run keeps its earlier results (and command) in the JSON and the plot
    path = RESULTS / "tensor_products.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    out = {
        "machine": machine(),
        "edges": args.edges,
        "channels": args.channels,
        "threads": args.threads,
        "command_triples": command if rows1 else previous.get("command_triples", previous.get("command")),
        "command_vs_e3nn": command if rows2 else previous.get("command_vs_e3nn", previous.get("command")),
        "triples": rows1 or previous.get("triples", []),
        "vs_e3nn": rows2 or previous.get("vs_e3nn", []),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    header = (
        f"Machine: {out['machine']}.\nCommand: `{command}`; {args.edges} edges x {args.channels} channels, "
        f"{args.threads} thread(s) for both sides."
    )
    if rows1:
        print(table1(rows1, args))
    if rows2:
        print(table2(rows2))
    if not args.no_docs:
        text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        if rows1:
            title = "## Tensor products: generated kernels vs the einsum reference (every triple, l <= 4)"
            text = replace_section(text, "tensor-products", title + "\n\n" + header + "\n\n" + table1(rows1, args))
        if rows2:
            title = "## Message-passing product vs e3nn's channel-wise ('uvu') tensor product"
            text = replace_section(text, "vs-e3nn", title + "\n\n" + header + "\n\n" + table2(rows2))
        DOC.write_text(text)
        plot(out["triples"], out["vs_e3nn"], IMG / "tensor_products.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
