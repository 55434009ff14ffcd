"""GPU benchmark (CuPy): tensor products, the message-passing product and the potential, vs NumPy.

Run by benchmarks/gpu_check.sh on a machine with an NVIDIA GPU; prints a short table and writes
benchmarks/results/gpu.json. Times are medians after a warm-up, with a device synchronisation.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, sync, repeats=5) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main() -> int:
    import cupy as cp

    from cartesian_irreps.runtime import cartesian_harmonics, tensor_product
    from cartesian_irreps.runtime.message_passing import MessagePassingProduct

    sync = cp.cuda.Device().synchronize
    nosync = lambda: None  # noqa: E731
    rng = np.random.default_rng(0)
    rows = []
    E, C = 20000, 32
    v = rng.standard_normal((E, 3))
    vc = cp.asarray(v)
    rows.append(
        (
            "harmonics L=6",
            timed(lambda: cartesian_harmonics(v, 6), nosync),
            timed(lambda: cartesian_harmonics(vc, 6), sync),
        )
    )
    for t in [(1, 1, 2), (2, 2, 2), (3, 3, 2), (4, 4, 4)]:
        x = rng.standard_normal((E, C, 2 * t[0] + 1))
        y = rng.standard_normal((E, 2 * t[1] + 1))
        xc, yc = cp.asarray(x), cp.asarray(y)
        rows.append(
            (
                f"product {t} shared y",
                timed(lambda: tensor_product(x, y, *t, shared="y"), nosync),
                timed(lambda: tensor_product(xc, yc, *t, shared="y"), sync),
            )
        )
    for L in (1, 2, 3):
        mp = MessagePassingProduct(L, L, L)
        x = rng.standard_normal((E, C, (L + 1) ** 2))
        y = rng.standard_normal((E, (L + 1) ** 2))
        w = rng.standard_normal((E, C, mp.num_paths))
        g = rng.standard_normal((E, C, mp.out_dim))
        xc, yc, wc, gc = (cp.asarray(a) for a in (x, y, w, g))
        rows.append(
            (f"message passing L={L} fwd", timed(lambda: mp(x, y, w), nosync, 3), timed(lambda: mp(xc, yc, wc), sync))
        )
        rows.append(
            (
                f"message passing L={L} fwd+bwd",
                timed(lambda: (mp(x, y, w), mp.vjp(g, x, y, w)), nosync, 3),
                timed(lambda: (mp(xc, yc, wc), mp.vjp(gc, xc, yc, wc)), sync),
            )
        )
    from ase.build import bulk

    from mlip.data import SpeciesTable, batch_structures
    from mlip.model import ModelConfig, Potential

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.05, seed=0)
    batch = batch_structures([atoms], 5.0, SpeciesTable(["Cu"]))
    cfg = ModelConfig(
        elements=("Cu",),
        channels=32,
        lmax=2,
        hidden_lmax=1,
        correlation=3,
        avg_num_neighbors=batch.num_edges / batch.num_atoms,
    )
    pot = Potential.create(cfg, seed=0)
    gpu = Potential(cfg, {k: cp.asarray(a) for k, a in pot.params.items()})
    bgpu = batch.to(cp)
    rows.append(
        ("potential Cu256 E+F", timed(lambda: pot.evaluate(batch), nosync, 3), timed(lambda: gpu.evaluate(bgpu), sync))
    )
    print(f"{'case':36s} {'numpy (s)':>10s} {'cupy (s)':>10s} {'speed-up':>9s}")
    for name, a, b in rows:
        print(f"{name:36s} {a:10.4f} {b:10.4f} {a / b:8.1f}x")
    out = ROOT / "benchmarks" / "results" / "gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": cp.cuda.runtime.getDeviceProperties(0)["name"].decode(),
                "rows": [{"case": n, "numpy_s": a, "cupy_s": b} for n, a, b in rows],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
