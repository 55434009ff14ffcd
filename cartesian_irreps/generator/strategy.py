"""Choosing how to evaluate each contraction: FLOP counts, measured timings, and the plans module.

For every contraction kind (pair, shared, reduce; see :mod:`cartesian_irreps.runtime.contractions`)
and every triple, each candidate strategy is

1. counted: FLOPs per batch row (opt_einsum's cost model for the einsum route, closed forms for the
   hand-ordered ones), together with the message-passing floor (fold the shared input once, then one
   small mat-vec per channel);
2. timed (``cartesian-irreps generate --tune``, :func:`tune`): the best of a few runs
   (:func:`cartesian_irreps.runtime.timing.best_time`) on ``ROWS`` rows x ``CHANNELS`` channels in
   float64 on this machine, stored in the committed ``tuning.json``.

``plans.py`` records the fastest measured strategy with both numbers and the reason; a triple that
was not timed falls back to the lowest FLOP count. Because the plans are written from the committed
tuning data, generation is deterministic; re-tuning is an explicit step.

For the full 3^l layout two routes are compared for the forward products: ``convert`` (full ->
compact with U, compact kernel, back with U^T) and ``direct`` (contract index pairs on the full
tensors with einsum, then remove traces with the 3^l3 x 3^l3 projector).

The tuner is a library feature (``cartesian_irreps.generator.strategy.tune``, used by the CLI) and
uses only the public runtime API: :func:`cartesian_irreps.runtime.contractions.contract` and its
strategy tables, :func:`cartesian_irreps.runtime.tables.coupling_arrays` and
:func:`~cartesian_irreps.runtime.tables.to_full_matrix`, :func:`cartesian_irreps.runtime.products.tensor_product`
and :mod:`cartesian_irreps.runtime.timing`.  The runtime in turn reads only the generated ``plans.py``
(through :mod:`cartesian_irreps.runtime.plan_lookup`), never this module.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import opt_einsum

from .._validate import triples
from ..runtime import contractions
from ..runtime.timing import best_time
from ..symbolic.coupling import derive_coupling
from .emit import header

TUNING_PATH = Path(__file__).with_name("tuning.json")
ROWS, CHANNELS = 1024, 32
FULL_ROWS = 256
FULL_MAX_TOTAL = 8
LARGE_ROWS = 20000
KIND_PERM = (0, 1, 2)


def _inputs(kind: str, dims: tuple[int, int, int], rows: int, rng: np.random.Generator):
    """Random operands ``u (rows, CHANNELS, A)``, ``v (rows, B)`` (kind ``shared``) or ``(rows, CHANNELS, B)``."""
    u = rng.standard_normal((rows, CHANNELS, dims[0]))
    v = rng.standard_normal((rows, dims[1]) if kind == "shared" else (rows, CHANNELS, dims[1]))
    return u, v


def einsum_path(kind: str, triple: tuple[int, int, int]) -> tuple:
    """opt_einsum's optimal path for the dense einsum at the large-batch size (20000 x 32)."""
    dims = tuple(2 * l + 1 for l in triple)
    shapes = [
        dims,
        (LARGE_ROWS, CHANNELS, dims[0]),
        (LARGE_ROWS, dims[1]) if kind == "shared" else (LARGE_ROWS, CHANNELS, dims[1]),
    ]
    path, _ = opt_einsum.contract_path(contractions.EQUATIONS[kind], *shapes, shapes=True, optimize="optimal")
    return tuple(tuple(p) for p in path)


@cache
def shape_info(triple: tuple[int, int, int]) -> tuple[tuple[int, int, int], int]:
    """``(dims, nnz)`` of a compact coupling, from the exact derivation."""
    f = derive_coupling(*triple, "unit").floats()
    return f.shape, int((f != 0).sum())


def flop_table(kind: str, triple: tuple[int, int, int]) -> dict[str, int]:
    """FLOPs per batch row (``CHANNELS`` channels) of every strategy of ``kind``, and the ``floor``."""
    dims, nnz = shape_info(triple)
    out = {s: contractions.flops(kind, s, dims, nnz, CHANNELS) for s in contractions.STRATEGIES[kind]}
    out["floor"] = contractions.floor_flops(kind, dims, nnz, CHANNELS)
    return out


def tune(lmax: int, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Measure every candidate strategy for every kind and triple up to ``lmax`` (float64).

    Uses the installed generated couplings, so ``lmax`` may not exceed their LMAX.
    """
    from ..runtime import tables
    from ..runtime.products import tensor_product

    rng = np.random.default_rng(0)
    timings: dict[str, float] = {}
    jobs = [(kind, t) for kind in contractions.KINDS for t in triples(lmax)]
    full_jobs = [(t, shared) for t in triples(lmax) if sum(t) <= FULL_MAX_TOTAL for shared in (None, "y")]
    total = len(jobs) + len(full_jobs)
    for n, (kind, t) in enumerate(jobs):
        cp = tables.coupling_arrays(*t, "unit", KIND_PERM, np.float64, np)
        u, v = _inputs(kind, cp.dims, ROWS, rng)
        path = list(einsum_path(kind, t))
        for s in contractions.STRATEGIES[kind]:
            if s == "diagonal" and cp.diagonal is None:
                continue  # not applicable to this coupling
            secs = best_time(lambda s=s: contractions.contract(kind, s, cp, u, v, np, path))
            timings[f"{kind}:{t[0]},{t[1]},{t[2]}:{s}"] = float(f"{secs:.3g}")
        if progress:
            progress(n + 1, total, f"{kind} {t}")
    for n, (t, shared) in enumerate(full_jobs):
        l1, l2, l3 = t
        u1, u2 = tables.to_full_matrix(l1, np.float64, np), tables.to_full_matrix(l2, np.float64, np)
        x = (rng.standard_normal((FULL_ROWS, CHANNELS, 2 * l1 + 1)) @ u1).reshape((FULL_ROWS, CHANNELS) + (3,) * l1)
        ybase = rng.standard_normal((FULL_ROWS, 2 * l2 + 1) if shared == "y" else (FULL_ROWS, CHANNELS, 2 * l2 + 1))
        y = (ybase @ u2).reshape(ybase.shape[:-1] + (3,) * l2)
        for route in ("convert", "direct"):
            secs = best_time(lambda r=route: tensor_product(x, y, *t, layout="full", shared=shared, strategy=r))
            timings[f"full-{shared or 'pair'}:{l1},{l2},{l3}:{route}"] = float(f"{secs:.3g}")
        if progress:
            progress(len(jobs) + n + 1, total, f"full {t}")
    import importlib.metadata

    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": __import__("os").cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opt_einsum": importlib.metadata.version("opt_einsum"),
        "rows": ROWS,
        "channels": CHANNELS,
        "full_rows": FULL_ROWS,
        "dtype": "float64",
        "timings": dict(sorted(timings.items())),
    }


def load_tuning(path: Path = TUNING_PATH) -> dict:
    """The tuning data written by :func:`save_tuning` (``{"timings": {}}`` when there is none)."""
    if not path.exists():
        return {"timings": {}}
    return json.loads(path.read_text())


def save_tuning(data: dict, path: Path = TUNING_PATH) -> None:
    """Write the result of :func:`tune` as sorted, indented JSON (deterministic for equal data)."""
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _fmt_ms(s: float) -> str:
    """Seconds as milliseconds with three significant digits."""
    return f"{s * 1e3:.3g} ms"


def choose(kind: str, triple: tuple[int, int, int], timings: dict[str, float]) -> tuple[str, str]:
    """``(strategy, reason)`` for one contraction: fastest measured, else lowest FLOP count."""
    flops = flop_table(kind, triple)
    key = f"{kind}:{triple[0]},{triple[1]},{triple[2]}"
    applicable = [s for s in contractions.STRATEGIES[kind] if flops[s] < contractions.NOT_APPLICABLE]
    measured = {s: timings[f"{key}:{s}"] for s in applicable if f"{key}:{s}" in timings}
    fl = ", ".join(f"{s} {flops[s]}" for s in applicable)
    if measured:
        best = min(measured, key=lambda s: (measured[s], s))
        others = ", ".join(f"{s} {_fmt_ms(v)}" for s, v in sorted(measured.items()) if s != best)
        untimed = [s for s in applicable if s not in measured]
        note = f"; not timed: {', '.join(untimed)}" if untimed else ""
        fastest = f"fastest measured {_fmt_ms(measured[best])} ({others}){note}"
        return best, f"{fastest}; FLOPs/row: {fl}; floor {flops['floor']}"
    best = min(applicable, key=lambda s: (flops[s], s))
    return best, f"not timed: lowest FLOP count; FLOPs/row: {fl}; floor {flops['floor']}"


def choose_full(triple: tuple[int, int, int], shared: str | None, timings: dict[str, float]) -> tuple[str, str]:
    """``(route, reason)`` for a full-layout forward product: the faster measured route, else ``convert``."""
    key = f"full-{shared or 'pair'}:{triple[0]},{triple[1]},{triple[2]}"
    measured = {r: timings.get(f"{key}:{r}") for r in ("convert", "direct")}
    if None in measured.values():
        return "convert", "not timed (direct route only considered for l1+l2+l3 <= 8): convert"
    best = min(measured, key=lambda r: (measured[r], r))
    other = "direct" if best == "convert" else "convert"
    return best, f"fastest measured {_fmt_ms(measured[best])} vs {other} {_fmt_ms(measured[other])}"


def plans_source(lmax: int, tuning: dict | None = None) -> str:
    """Source of ``generated/plans.py`` from the tuning data (deterministic)."""
    tuning = load_tuning() if tuning is None else tuning
    timings = tuning.get("timings", {})
    where = (
        f"timed on {tuning.get('machine', '?')} ({tuning.get('cpu_count', '?')} cores), "
        f"numpy {tuning.get('numpy', '?')}, "
        f"{tuning.get('rows', ROWS)} rows x {tuning.get('channels', CHANNELS)} channels, float64"
        if timings
        else "no timings: chosen by FLOP count"
    )
    lines = [
        header(lmax, "Evaluation plans: the chosen strategy of every contraction, with its reason."),
        f"LMAX = {lmax}",
        f"# {where}",
        "",
        "# kind -> (l_a, l_b, l_out) -> (strategy, reason)",
        "COMPACT = {",
    ]
    paths = []
    for kind in contractions.KINDS:
        lines.append(f"    {kind!r}: {{")
        paths.append(f"    {kind!r}: {{")
        for t in triples(lmax):
            s, why = choose(kind, t, timings)
            lines.append(f"        {t}: ({s!r}, {why!r}),")
            paths.append(f"        {t}: {einsum_path(kind, t)!r},")
        lines.append("    },")
        paths.append("    },")
    lines += ["}", "", "# opt_einsum path of the dense einsum route at 20000 rows x 32 channels", "EINSUM_PATHS = {"]
    lines += paths
    lines += [
        "}",
        "",
        "# ((l1, l2, l3), shared) -> (route, reason) for forward products in the full layout",
        "FULL = {",
    ]
    for t in triples(lmax):
        for shared in (None, "y"):
            r, why = choose_full(t, shared, timings)
            lines.append(f"    ({t}, {shared!r}): ({r!r}, {why!r}),")
    lines += ["}", ""]
    return "\n".join(lines)
