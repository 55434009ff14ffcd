"""Benchmark: energy + forces inference time of the mlip potential (and of MACE, side by side).

What is timed
-------------
One call ``pot.evaluate(batch, forces=True)`` (energy and forces through reverse-mode autodiff) on a
batch built beforehand, i.e. one structure per call: the median wall time of ``--repeats`` calls after
``--warmup`` calls. Building the batch (validation + vesin neighbour list, :func:`mlip.data.batch_structures`)
is timed separately (median of ``--repeats`` builds); on the GPU the host-to-device copy of the batch is
reported apart as well and the device is synchronised before each clock read.

Model (random initialisation, seed 0): 32 channels, L (lmax) 2, hidden_lmax 1, correlation (nu) 3, 2
layers, cutoff 5 Å, 8 Bessel functions (polynomial envelope p = 5), radial MLP 64-64-64, readout MLP
16, elements = those of the structure, ``avg_num_neighbors`` = edges / atoms of the structure. This is
the MACE model of ``benchmarks/peers/mace_inference.py`` (hidden irreps 32x0e + 32x1o, max_ell 2).

Systems
-------
* ``acac``: acetylacetone (15 atoms), first structure of ``<data>/acac/train_300K.xyz``;
* ``3bpa``: 3BPA (27 atoms), first structure of ``<data>/3bpa/train_300K.xyz``;
* ``cu256``: periodic fcc Cu, ``bulk('Cu', 'fcc', a=3.61, cubic=True).repeat((4, 4, 4))`` rattled by
  0.05 Å (seed 0).

The molecules are skipped, with a message, when the data folder is missing.

Scaling study (unless ``--no-scaling``): 8 channels, float64, L = 1..4 (hidden_lmax = min(1, L)) at
nu = 3, and nu = 1..3 at L = 2 (the generated exact product-basis tables stop at nu = 3), on
``--scaling-systems``.

``--vs-mace`` runs ``benchmarks/peers/mace_inference.py`` in the peer venv (``--peer-python``, see
benchmarks/peers/README.md) in the same invocation, after our timings, and reports MACE's float64
time per call next to ours and the ratio MACE / ours.

Threads: ``--threads`` (default: the usable cores) for the fused message kernel
(``CARTESIAN_IRREPS_NUM_THREADS``) and for torch in the MACE run; ``--blas-threads`` (default: the same)
for NumPy's OpenBLAS/OpenMP, set before NumPy is imported. On a loaded machine, multi-threaded OpenBLAS
on the model's small matrices can be several times slower than one thread.

Writes ``benchmarks/results/inference.json``, ``docs/img/inference.png`` and the section between
``<!-- inference:start -->`` and ``<!-- inference:end -->`` of ``docs/benchmarks.md`` (created if
missing; the rest of the file is kept), unless ``--no-docs``. Times are wall-clock seconds (tables in
ms and µs/atom). Run on an otherwise idle machine: the 1-minute load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _early_threads(argv: list[str]) -> tuple[int, int]:
    """``(--threads, --blas-threads)`` from the command line, read before NumPy is imported."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    pre.add_argument("--blas-threads", type=int, default=None)
    known, _ = pre.parse_known_args(argv)
    return known.threads, known.blas_threads if known.blas_threads is not None else known.threads


# BLAS (OpenBLAS / OpenMP / MKL) reads its thread count when NumPy is first imported, so it is set here
# from the command line; the fused kernel reads CARTESIAN_IRREPS_NUM_THREADS at each call.
THREADS, BLAS_THREADS = _early_threads(sys.argv[1:])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(BLAS_THREADS)
# OpenBLAS's idle threads spin for up to 2^28 cycles after each call by default, taking a core from
# the fused kernels' threads that run between the matrix products; 1 lets them sleep at once
# (measured: 256-atom Cu, 2 threads, 0.20 s -> 0.16 s per call). An explicit setting is respected.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
os.environ["CARTESIAN_IRREPS_NUM_THREADS"] = str(THREADS)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]  # for the docs and results only: the code is the installed package

import ase  # noqa: E402
import ase.io  # noqa: E402
from ase.data import chemical_symbols  # noqa: E402

from cartesian_irreps.runtime.allocator import MALLOC_ENV, keep_freed_memory  # noqa: E402
from cartesian_irreps.runtime.kernels import backend_record, require_compiled  # noqa: E402
from cartesian_irreps.runtime.timing import machine_description  # noqa: E402
from mlip.data import Batch, SpeciesTable, batch_structures  # noqa: E402
from mlip.model import ModelConfig, Potential, param_shapes  # noqa: E402
from mlip.reference_data import fcc_cu_cell  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: whether glibc malloc was told to keep freed memory (set in main, passed on to the MACE process)
MALLOC: dict[str, bool] = {"kept": False}
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
PEER_SCRIPT = ROOT / "benchmarks" / "peers" / "mace_inference.py"
DEFAULT_DATA = Path("/work/shared/data")
SYSTEMS = ("acac", "3bpa", "cu256")
DATA_FILES = {"acac": "acac/train_300K.xyz", "3bpa": "3bpa/train_300K.xyz"}

#: The benchmark model (see the module docstring); elements and avg_num_neighbors come from the structure.
MODEL = dict(
    channels=32,
    lmax=2,
    hidden_lmax=1,
    correlation=3,
    num_layers=2,
    cutoff=5.0,
    num_bessel=8,
    envelope_p=5,
    radial_hidden=(64, 64, 64),
    readout_hidden=16,
)
SCALING_CHANNELS = 8


# ------------------------------------------------------------------------------------ helpers


def log(msg: str) -> None:
    """Progress message on stderr (tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def machine() -> str:
    """CPU model, cores, Python, NumPy and ASE versions."""
    return machine_description("ase")


def cu256() -> ase.Atoms:
    """256-atom periodic fcc Cu cell (a = 3.61 Å), positions rattled by 0.05 Å (seed 0)."""
    return fcc_cu_cell((4, 4, 4))


def load_systems(names: list[str], data: Path) -> tuple[dict[str, ase.Atoms], list[str]]:
    """The requested structures, and a message for each one skipped because its data file is missing."""
    systems: dict[str, ase.Atoms] = {}
    skipped: list[str] = []
    for name in names:
        if name == "cu256":
            systems[name] = cu256()
            continue
        path = data / DATA_FILES[name]
        if not path.is_file():
            skipped.append(f"{name}: skipped, {path} not found (the shared data folder is missing)")
            continue
        atoms = ase.io.read(path, index=0)
        assert isinstance(atoms, ase.Atoms)
        systems[name] = atoms
    return systems, skipped


def elements_of(atoms: ase.Atoms) -> tuple[int, ...]:
    """Atomic numbers present, ascending (the species order of the model)."""
    return tuple(sorted({int(z) for z in atoms.numbers}))


def build(atoms: ase.Atoms, cutoff: float, dtype: str) -> Batch:
    """A one-structure batch (NumPy arrays; labels ignored)."""
    return batch_structures(
        [atoms],
        cutoff,
        SpeciesTable(elements_of(atoms)),
        dtype=dtype,
        energy_key=None,
        forces_key=None,
        stress_key=None,
        virial_key=None,
        weight_key=None,
    )


def make_potential(atoms: ase.Atoms, dtype: str, xp: Any, **overrides: Any) -> tuple[Potential, ModelConfig]:
    """The benchmark model (random, seed 0) for ``atoms``, parameters on ``xp`` (numpy or cupy)."""
    kw = {**MODEL, **overrides}
    b = build(atoms, kw["cutoff"], "float64")
    config = ModelConfig(
        elements=tuple(chemical_symbols[z] for z in elements_of(atoms)),
        avg_num_neighbors=b.num_edges / b.num_atoms,
        dtype=dtype,
        **kw,
    )
    pot = Potential.create(config, seed=0)
    if xp is not np:
        pot = Potential(config, {k: xp.asarray(v) for k, v in pot.params.items()})
    _ = pot.plan
    return pot, config


def n_params(config: ModelConfig) -> int:
    """Number of scalar parameters."""
    return int(sum(int(np.prod(s)) for s in param_shapes(config).values()))


def timed(fn: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    """Wall times (s) of ``repeats`` calls after ``warmup`` calls, synchronising the device around each."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return times


def array_module(device: str) -> tuple[Any, Callable[[], None]]:
    """``(xp, synchronise)`` for ``device`` ('cpu' or 'gpu')."""
    if device == "cpu":
        return np, lambda: None
    import cupy

    return cupy, lambda: cupy.cuda.Device().synchronize()


def bench_system(
    name: str, atoms: ase.Atoms, dtype: str, device: str, repeats: int, warmup: int, **overrides: Any
) -> dict[str, Any]:
    """Batch-building and energy+forces times of one system with one model variant."""
    xp, sync = array_module(device)
    pot, config = make_potential(atoms, dtype, xp, **overrides)
    build_times = timed(lambda: build(atoms, config.cutoff, dtype), repeats, 1, lambda: None)
    batch = build(atoms, config.cutoff, dtype)
    row: dict[str, Any] = {}
    if xp is not np:
        row["to_device_s"] = statistics.median(timed(lambda: batch.to(xp), repeats, 1, sync))
        batch = batch.to(xp)
    out: dict[str, Any] = {}

    def call() -> None:
        out.update(pot.evaluate(batch, forces=True))

    times = timed(call, repeats, warmup, sync)
    energy = out["energy"]
    forces = out["forces"]
    if xp is not np:
        energy, forces = energy.get(), forces.get()
    seconds = statistics.median(times)
    row.update(
        system=name,
        dtype=dtype,
        device=device,
        n_atoms=batch.num_atoms,
        n_edges=batch.num_edges,
        avg_num_neighbors=config.avg_num_neighbors,
        channels=config.channels,
        lmax=config.lmax,
        hidden_lmax=config.hidden_lmax,
        correlation=config.correlation,
        n_params=n_params(config),
        build_batch_s=statistics.median(build_times),
        seconds_per_call=seconds,
        us_per_atom=seconds / batch.num_atoms * 1e6,
        times_s=times,
        energy=float(np.asarray(energy)[0]),
        max_abs_force=float(np.abs(np.asarray(forces)).max()),
    )
    log(
        f"{name} {dtype} {device} L={config.lmax} nu={config.correlation} K={config.channels}: "
        f"{seconds * 1e3:.2f} ms per call, batch {row['build_batch_s'] * 1e3:.2f} ms"
    )
    return row


def scaling_variants() -> list[dict[str, int]]:
    """(L, hidden_lmax, nu) of the scaling study: L = 1..4 at nu = 3, then nu = 1..3 at L = 2 (deduplicated)."""
    out: list[dict[str, int]] = []
    for L in range(1, 5):
        out.append(dict(lmax=L, hidden_lmax=min(1, L), correlation=3))
    for nu in range(1, 4):
        v = dict(lmax=2, hidden_lmax=1, correlation=nu)
        if v not in out:
            out.append(v)
    return out


def run_mace(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """Run the MACE peer benchmark in the peer venv; its JSON, or ``{"error": message}``."""
    peer = [n for n in names if n in ("acac", "cu256")]
    if not peer:
        return {"error": "no system MACE is timed on (acac, cu256) was run"}
    system = "all" if len(peer) == 2 else peer[0]
    cmd = [
        args.peer_python,
        str(PEER_SCRIPT),
        "--system",
        system,
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(max(args.warmup, 2)),
        "--threads",
        str(args.threads),
        "--acac-path",
        str(args.data / DATA_FILES["acac"]),
    ]
    log("running MACE: " + " ".join(cmd))
    try:
        env = {**os.environ, **(MALLOC_ENV if MALLOC["kept"] else {})}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.mace_timeout, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"could not run the MACE benchmark: {err}"}
    if proc.returncode != 0:
        return {"error": f"MACE benchmark failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as err:
        return {"error": f"MACE benchmark printed no JSON: {err}; stdout {proc.stdout[-500:]!r}"}


# ------------------------------------------------------------------------------------ tables, plot, docs


def table_main(rows: list[dict[str, Any]]) -> str:
    head = (
        "| system | atoms | edges | dtype | device | build batch (ms) | energy+forces (ms / structure) | µs / atom |\n"
        "|---|---:|---:|---|---|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        build_ms = r["build_batch_s"] * 1e3
        extra = f" + {r['to_device_s'] * 1e3:.2f} copy" if "to_device_s" in r else ""
        lines.append(
            f"| {r['system']} | {r['n_atoms']} | {r['n_edges']} | {r['dtype']} | {r['device']} | "
            f"{build_ms:.2f}{extra} | {r['seconds_per_call'] * 1e3:.2f} | {r['us_per_atom']:.0f} |"
        )
    return "\n".join(lines)


def table_mace(rows: list[dict[str, Any]], mace: dict[str, Any]) -> str:
    if "error" in mace:
        return f"MACE comparison not available: {mace['error']}"
    lines = [
        "| system | atoms | edges (ours / MACE) | params (ours / MACE) | ours float64 (ms) | "
        "MACE float64 (ms) | MACE / ours |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in mace["systems"].items():
        ours = next((r for r in rows if r["system"] == name and r["dtype"] == "float64"), None)
        if ours is None:
            continue
        ratio = m["seconds_per_call"] / ours["seconds_per_call"]
        lines.append(
            f"| {name} | {ours['n_atoms']} | {ours['n_edges']} / {m['n_edges']} | {ours['n_params']} / "
            f"{m['n_params']} | {ours['seconds_per_call'] * 1e3:.2f} | {m['seconds_per_call'] * 1e3:.2f} | "
            f"{ratio:.2f} |"
        )
    lines.append(
        f"\nMACE: mace-torch {mace['mace']}, torch {mace['torch']} (CPU, {mace['threads']} torch thread(s)), "
        f"e3nn {mace['e3nn']}, float64, median of {mace['repeats']} after {mace['warmup']} warm-up calls "
        f"(load average {mace['load_avg_1min_before']:.2f} at its start). A ratio above 1 means we are faster."
    )
    return "\n".join(lines)


def table_scaling(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| system | L | hidden L | ν | params | energy+forces (ms) | µs / atom |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['lmax']} | {r['hidden_lmax']} | {r['correlation']} | {r['n_params']} | "
            f"{r['seconds_per_call'] * 1e3:.2f} | {r['us_per_atom']:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], scaling: list[dict[str, Any]], mace: dict[str, Any] | None, path: Path) -> None:
    """Bars of the main timings (ours per dtype, MACE float64) and time vs L and vs ν."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 3 if scaling else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.2), squeeze=False)
    ax = axes[0, 0]
    names = list(dict.fromkeys(r["system"] for r in rows))
    series: list[tuple[str, list[float]]] = []
    for dev in dict.fromkeys(r["device"] for r in rows):
        for dt in ("float64", "float32"):
            vals = []
            for n in names:
                r = next((r for r in rows if r["system"] == n and r["dtype"] == dt and r["device"] == dev), None)
                vals.append(r["seconds_per_call"] * 1e3 if r else np.nan)
            if not np.isnan(vals).all():
                series.append((f"ours {dt} ({dev})", vals))
    if mace and "systems" in mace:
        vals = [mace["systems"][n]["seconds_per_call"] * 1e3 if n in mace["systems"] else np.nan for n in names]
        series.append(("MACE float64 (torch CPU)", vals))
    width = 0.8 / max(len(series), 1)
    xs = np.arange(len(names))
    for i, (label, vals) in enumerate(series):
        ax.bar(xs + (i - (len(series) - 1) / 2) * width, vals, width, label=label)
    ax.set_xticks(xs, names)
    ax.set_yscale("log")
    ax.set_ylabel("energy + forces, ms per structure")
    ax.set_title("K=32, L=2, hidden L=1, ν=3, 2 layers")
    ax.legend(fontsize=8)
    if scaling:
        for col, (var, fixed, label) in enumerate((("lmax", "correlation", "L"), ("correlation", "lmax", "ν")), 1):
            ax = axes[0, col]
            fixed_value = 3 if fixed == "correlation" else 2
            for k, n in enumerate(dict.fromkeys(r["system"] for r in scaling)):
                sel = sorted((r for r in scaling if r["system"] == n and r[fixed] == fixed_value), key=lambda r: r[var])
                ax.plot([r[var] for r in sel], [r["seconds_per_call"] * 1e3 for r in sel], "o-", color=f"C{k}", label=n)
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_xticks(range(1, 5))
            ax.set_ylabel("energy + forces, ms per structure")
            other = "ν = 3" if var == "lmax" else "L = 2"
            ax.set_title(f"{SCALING_CHANNELS} channels, float64, {other}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced (or appended)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        return text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    return text.rstrip() + "\n\n" + block + "\n"


def doc_section(out: dict[str, Any]) -> str:
    parts = [
        "## Inference: energy + forces per structure",
        "",
        f"Machine: {out['machine']}. Date: {out['date']}. Command: `{out['command']}`.",
        f"1-minute load average {out['load_avg_1min_before']:.2f} before and {out['load_avg_1min_after']:.2f} "
        f"after the run (other jobs slow the timings down). Threads: {out['threads']} (fused kernel; torch "
        f"for MACE), {out['blas_threads']} for OpenBLAS. glibc malloc "
        + (
            "set to keep freed memory in both processes (`cartesian_irreps.runtime.allocator`; "
            "`--default-malloc` turns it off)."
            if out.get("malloc_keeps_freed_memory")
            else "with its default thresholds."
        )
        + f" OPENBLAS_THREAD_TIMEOUT={out.get('openblas_thread_timeout')} (idle OpenBLAS threads sleep "
        "instead of spinning).",
        "",
        "Time of one `pot.evaluate(batch, forces=True)` on a prebuilt one-structure batch (median of "
        f"{out['repeats']} after {out['warmup']} warm-up calls); *build batch* is `batch_structures` "
        "(validation + vesin neighbour list), timed apart. Model: random (seed 0), 32 channels, L = 2, "
        "hidden L = 1, ν = 3, 2 layers, cutoff 5 Å, 8 Bessel functions, radial MLP 64-64-64, readout 16, "
        "avg_num_neighbors from the structure. The model code is still being optimised: rerun "
        "`benchmarks/inference.py` for current numbers.",
        "",
        table_main(out["results"]),
    ]
    if out["skipped"]:
        parts += ["", "Skipped: " + "; ".join(out["skipped"]) + "."]
    if out.get("vs_mace") is not None:
        parts += ["", "### Versus MACE (same hyperparameters, same structures)", "", out["vs_mace_table"]]
    if out["scaling"]:
        parts += [
            "",
            f"### Scaling with L and ν ({SCALING_CHANNELS} channels, float64)",
            "",
            table_scaling(out["scaling"]),
        ]
    parts += ["", "![inference timings](img/inference.png)"]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of acac,3bpa,cu256")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="gpu: CuPy (needs a GPU)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per measurement (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    p.add_argument("--no-scaling", action="store_true", help="skip the L / ν scaling study")
    p.add_argument("--scaling-systems", default="acac,cu256")
    p.add_argument("--scaling-repeats", type=int, default=3)
    p.add_argument("--vs-mace", action="store_true", help="also time MACE (float64, CPU) in the peer venv")
    p.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="threads of the fused kernel (ours) and of torch (MACE); default: the usable cores",
    )
    p.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="OpenBLAS/OpenMP threads of NumPy (default: --threads); read from the command line at import",
    )
    p.add_argument("--mace-timeout", type=float, default=1800.0, help="seconds")
    p.add_argument(
        "--allow-reference",
        action="store_true",
        help="time the NumPy reference when the compiled kernels are missing (refused by default)",
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md and the PNG")
    p.add_argument("--output", type=Path, default=RESULTS / "inference.json")
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's malloc thresholds alone (by default both our process and MACE's keep freed "
        "memory, see cartesian_irreps.runtime.allocator)",
    )
    args = p.parse_args(argv)
    MALLOC["kept"] = False if args.default_malloc else keep_freed_memory()
    names = [s for s in args.systems.split(",") if s]
    bad = [s for s in names if s not in SYSTEMS]
    if bad:
        p.error(f"unknown system(s) {bad}; choose from {SYSTEMS}")
    dtypes = [d for d in args.dtypes.split(",") if d]
    if any(d not in ("float32", "float64") for d in dtypes):
        p.error(f"--dtypes must be float32 and/or float64, got {args.dtypes}")
    if args.device == "gpu":
        try:
            import cupy  # noqa: F401
        except ImportError:
            print("skipping: --device gpu needs CuPy, which is not installed", file=sys.stderr)
            return 0
    xp_name = "cupy" if args.device == "gpu" else "numpy"
    if not args.allow_reference:
        try:
            require_compiled("benchmarks/inference.py", xp_name)
        except RuntimeError as err:
            print(f"error: {err} (or pass --allow-reference)", file=sys.stderr)
            return 1
    backend = backend_record(xp_name)
    print(f"backend: {backend['description']}", file=sys.stderr)
    command = "python benchmarks/inference.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load_before = os.getloadavg()[0]

    systems, skipped = load_systems(names, args.data)
    for msg in skipped:
        print(msg, file=sys.stderr)
    if not systems:
        print("nothing to benchmark: every requested system was skipped", file=sys.stderr)
        return 0

    rows = [
        bench_system(name, atoms, dt, args.device, args.repeats, args.warmup)
        for name, atoms in systems.items()
        for dt in dtypes
    ]
    scaling: list[dict[str, Any]] = []
    if not args.no_scaling:
        scaling_names = [s for s in args.scaling_systems.split(",") if s]
        sys_s, skipped_s = load_systems(scaling_names, args.data)
        for msg in skipped_s:
            print("scaling " + msg, file=sys.stderr)
            skipped.append("scaling " + msg)
        for name, atoms in sys_s.items():
            for v in scaling_variants():
                scaling.append(
                    bench_system(
                        name,
                        atoms,
                        "float64",
                        args.device,
                        args.scaling_repeats,
                        1,
                        channels=SCALING_CHANNELS,
                        **v,
                    )
                )
    mace = run_mace(args, list(systems)) if args.vs_mace else None
    load_after = os.getloadavg()[0]

    out: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": command,
        "load_avg_1min_before": load_before,
        "load_avg_1min_after": load_after,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "backend": backend,
        "threads": THREADS,
        "blas_threads": BLAS_THREADS,
        "malloc_keeps_freed_memory": MALLOC["kept"],
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        "model": {k: list(v) if isinstance(v, tuple) else v for k, v in MODEL.items()},
        "skipped": skipped,
        "results": rows,
        "scaling": scaling,
        "vs_mace": mace,
    }
    print(table_main(rows))
    if mace is not None:
        out["vs_mace_table"] = table_mace(rows, mace)
        print()
        print(out["vs_mace_table"])
    if scaling:
        print()
        print(table_scaling(scaling))
    print(f"\nload average (1 min): {load_before:.2f} before, {load_after:.2f} after")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    if not args.no_docs:
        plot(rows, scaling, mace, IMG / "inference.png")
        text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        DOC.write_text(replace_section(text, "inference", doc_section(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
