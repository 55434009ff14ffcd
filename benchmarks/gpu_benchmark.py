"""GPU benchmark: the generated CUDA kernels (CuPy) beside the CPU compiled path of the same run.

Run by ``benchmarks/gpu_check.sh`` on a machine with an NVIDIA GPU; prints one table and writes
``benchmarks/results/gpu.json``. Rows:

* message-passing product (graph form, ``--edges`` edges x ``--channels`` channels, L = 1..3, all
  paths of both parities, float32/float64): forward (mode z) and forward+backward (modes z, x, y, w);
* model energy+forces (32 channels, L 2, hidden L 1, nu 3) for acac and 3BPA (from the shared BOTNet
  data, when found) and Cu fcc with 256, 2048, 16384 atoms, float32 and float64;
* training seconds per acac epoch (``--train-structures`` structures, float64), when the data is found.

Times are medians over ``--repeats`` runs after a warm-up (which compiles the kernels), with a device
synchronisation. CPU cases that would take longer than ``--cpu-budget`` seconds per call are run
once. Without a GPU the script exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIRS = (ROOT / ".." / "shared" / "data", Path("/work/shared/data"))


def timed(fn: Callable[[], object], sync: Callable[[], None], repeats: int, budget: float = 60.0) -> float:
    """Median wall time of ``fn`` (seconds) after one warm-up call; a slow call is not repeated."""
    t = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t
    if first > budget:
        return first
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--edges", type=int, default=20000, help="edges of the message-passing rows (default 20000)")
    p.add_argument("--channels", type=int, default=32, help="channels (default 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats after the warm-up (default 5)")
    p.add_argument("--cu-sizes", default="256,2048,16384", help="Cu atoms (multiples of 4 n^3; default 256,2048,16384)")
    p.add_argument("--train-structures", type=int, default=50, help="acac structures of the training epoch (50)")
    p.add_argument("--cpu-budget", type=float, default=30.0, help="a CPU call slower than this runs once (s)")
    p.add_argument("--skip", default="", help="comma list of sections to skip: mp, model, train")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="no GPU: NumPy in place of CuPy (the CUDA rows run the C twin); for checking the script",
    )
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "gpu.json"), help="JSON results")
    return p.parse_args(argv)


def _data(name: str, file: str) -> Path | None:
    for d in DATA_DIRS:
        path = (d / name / file).resolve()
        if path.is_file():
            return path
    return None


def message_passing_rows(args: argparse.Namespace, cp, sync) -> list[tuple[str, float, float]]:
    from cartesian_irreps.runtime.cuda import kernels
    from cartesian_irreps.runtime.fused import GraphIndex, PathTable, phi_grad_graph
    from cartesian_irreps.runtime.tables import dense_coupling

    rng = np.random.default_rng(0)
    E, C = args.edges, args.channels
    N = max(1, E // 20)
    graph = GraphIndex.build(rng.integers(0, N, E), np.sort(rng.integers(0, N, E)), N)
    rows = []
    for L in (1, 2, 3):
        ranks = range(L + 1)
        paths = [(a, b, c) for a in ranks for b in ranks for c in range(abs(a - b), min(a + b, L) + 1)]
        table = PathTable.from_couplings(paths, [dense_coupling(*p) for p in paths])
        for dtype in (np.float32, np.float64):
            h = rng.standard_normal((N, C, table.DX)).astype(dtype)
            y = rng.standard_normal((E, table.DY)).astype(dtype)
            w = rng.standard_normal((E, C, table.P)).astype(dtype)
            g = rng.standard_normal((N, C, table.DZ)).astype(dtype)
            hd, yd, wd, gd = (cp.asarray(a) for a in (h, y, w, g))

            def fwd(f, h, y, w):
                return f("z", table, graph, h=h, y=y, w=w)

            def fwd_bwd(f, h, y, w, g):
                return (
                    f("z", table, graph, h=h, y=y, w=w),
                    f("x", table, graph, y=y, w=w, g=g),
                    f("y", table, graph, h=h, w=w, g=g),
                    f("w", table, graph, h=h, y=y, g=g),
                )

            name = f"MP {E}x{C} L={L} {np.dtype(dtype).name}"
            rows.append(
                (
                    f"{name} fwd",
                    timed(lambda: fwd(phi_grad_graph, h, y, w), lambda: None, args.repeats, args.cpu_budget),
                    timed(lambda: fwd(kernels.phi_grad_graph, hd, yd, wd), sync, args.repeats),
                )
            )
            rows.append(
                (
                    f"{name} fwd+bwd",
                    timed(lambda: fwd_bwd(phi_grad_graph, h, y, w, g), lambda: None, args.repeats, args.cpu_budget),
                    timed(lambda: fwd_bwd(kernels.phi_grad_graph, hd, yd, wd, gd), sync, args.repeats),
                )
            )
    return rows


def _model(dtype: str, elements: tuple[str, ...], avg: float):
    from mlip.model import ModelConfig, Potential

    cfg = ModelConfig(
        elements=elements, channels=32, lmax=2, hidden_lmax=1, correlation=3, cutoff=5.0,
        avg_num_neighbors=avg, dtype=dtype,
    )  # fmt: skip
    return Potential.create(cfg, seed=0)


def model_rows(args: argparse.Namespace, cp, sync) -> list[tuple[str, float, float]]:
    from ase.build import bulk
    from ase.io import read

    from mlip.data import SpeciesTable, batch_structures
    from mlip.model import Potential

    systems = []
    for name, folder, file in (("acac", "acac", "train_300K.xyz"), ("3BPA", "3bpa", "train_mixedT.xyz")):
        path = _data(folder, file)
        if path is None:
            print(f"[skip] {name}: {folder}/{file} not found in {[str(d) for d in DATA_DIRS]}")
            continue
        systems.append((f"{name} (1 molecule)", [read(path, index=0)]))
    for n in (int(s) for s in args.cu_sizes.split(",") if s):
        k = round((n / 4) ** (1 / 3))
        if 4 * k**3 != n:
            raise SystemExit(f"--cu-sizes: {n} is not 4 n^3 (Cu fcc cubic cells)")
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((k, k, k))
        atoms.rattle(0.05, seed=0)
        systems.append((f"Cu{n}", [atoms]))
    rows = []
    for label, structs in systems:
        elements = tuple(sorted({s for a in structs for s in a.get_chemical_symbols()}))
        for dtype in ("float32", "float64"):
            batch = batch_structures(structs, 5.0, SpeciesTable(elements)).astype(np.dtype(dtype))
            pot = _model(dtype, elements, max(1.0, batch.num_edges / max(1, batch.num_atoms)))
            gpu = Potential(pot.config, {k: cp.asarray(v) for k, v in pot.params.items()})
            bgpu = batch.to(cp)
            rows.append(
                (
                    f"E+F {label} {dtype}",
                    timed(lambda: pot.evaluate(batch), lambda: None, args.repeats, args.cpu_budget),
                    timed(lambda: gpu.evaluate(bgpu), sync, args.repeats),
                )
            )
    return rows


def training_rows(args: argparse.Namespace, gpu_device: str) -> list[tuple[str, float, float]]:
    import tempfile

    from ase.io import read

    from mlip.training import TrainConfig, train

    path = _data("acac", "train_300K.xyz")
    if path is None:
        print("[skip] training: acac data not found")
        return []
    structs = read(path, index=f":{args.train_structures}")
    times = []
    for device in ("numpy", gpu_device):
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(
                model={"channels": 32, "lmax": 2, "hidden_lmax": 1, "correlation": 3, "cutoff": 5.0},
                epochs=2, batch_size=5, device=device, output_dir=out, progress=False, plot_every=10**6,
            )  # fmt: skip
            result = train(cfg, structs[: int(0.9 * len(structs))], structs[int(0.9 * len(structs)) :])
            times.append(result.seconds_per_epoch)
    return [(f"train acac {args.train_structures} structs s/epoch", times[0], times[1])]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        cp, name, sync = np, "none (dry run: C twin)", lambda: None
    else:
        try:
            import cupy as cp

            name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        except Exception as exc:  # no CuPy, no driver or no device
            print(f"no usable GPU/CuPy here ({type(exc).__name__}: {exc})")
            return 2
        sync = cp.cuda.Device().synchronize
    from cartesian_irreps.runtime.kernels import backend_record, require_compiled

    try:  # the CPU column is the compiled path; the NumPy reference would inflate every speed-up 3-7x
        status = require_compiled("benchmarks/gpu_benchmark.py")
    except RuntimeError as exc:
        print(f"error: {exc}")
        return 1
    skip = set(filter(None, args.skip.split(",")))
    cpu = f"CPU: compiled kernels, {status.threads} threads"
    print(f"GPU: {name} | array module {cp.__name__} {cp.__version__} | {cpu}")
    rows: list[tuple[str, float, float]] = []
    if "mp" not in skip:
        rows += message_passing_rows(args, cp, sync)
    if "model" not in skip:
        rows += model_rows(args, cp, sync)
    if "train" not in skip:
        rows += training_rows(args, "numpy" if args.dry_run else "cupy")
    print(f"\n{'case':44s} {'CPU compiled (s)':>16s} {'CUDA (s)':>10s} {'speed-up':>9s}")
    for case, cpu, gpu in rows:
        print(f"{case:44s} {cpu:16.4f} {gpu:10.4f} {cpu / gpu:8.1f}x")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": name,
                "cpu_backend": backend_record("numpy"),
                "gpu_backend": backend_record(cp) if cp is not np else {"description": "dry run: C twin of CUDA"},
                "rows": [{"case": c, "cpu_s": a, "cuda_s": b} for c, a, b in rows],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
