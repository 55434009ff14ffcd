"""Shared machinery of the small-molecule accuracy benchmarks (acetylacetone, 3BPA): train, test, report.

Used by ``benchmarks/acac.py`` (``--molecule acac`` or ``3bpa``). Only the public API of :mod:`mlip`
is used (:class:`mlip.training.TrainConfig`, :class:`mlip.training.Trainer`,
:func:`mlip.evaluation.evaluate_structures`, :mod:`mlip.plots`, :func:`mlip.metrics.format_table`).

Steps of :func:`run`:

1. read the training file and draw ``n_train`` + ``n_valid`` structures from it with
   ``numpy.random.default_rng(seed).permutation`` (training first, then validation); read the
   isolated-atom energies (eV) and the test file, dropping test structures that also occur in the
   training file (same species and positions to 1e-6 Å) and keeping an evenly spaced subset when
   ``--test-limit`` is given;
2. train under the time budget (``--budget-minutes``, training only; the evaluation afterwards takes
   about a minute) into ``<output-dir>/run/`` (``checkpoint.npz``, ``best.npz``, ``log.csv``,
   ``learning_curve.png``, ``train_config.json``); ``--resume`` continues an interrupted or
   budget-stopped run exactly (give the same options again);
3. evaluate ``best.npz`` (the EMA weights of the best validation epoch) on the test set: energy RMSE/MAE
   in meV and meV/atom, force RMSE/MAE in meV/Å, for the whole set and per group of a grouping key
   (``config_type``, ``temperature``, ...) when one takes several values;
4. an energy profile along a dihedral coordinate stored in the test structures (acetylacetone:
   ``info["dihedral_angle"]``, degrees, wrapped to [-180, 180)): reference and predicted energies
   averaged in bins of ``--profile-bin-width`` degrees, each in meV relative to its own minimum
   (:func:`mlip.plots.energy_profile`);
5. write ``test_metrics.json``, ``test_predictions.csv``, ``parity.png``, ``energy_profile.png`` (+
   ``energy_profile.csv``) and ``summary.json`` into ``<output-dir>``, print a summary table, and
   replace the section between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` of
   ``docs/benchmarks.md`` (appended when missing; the rest of the file is kept) unless ``--no-docs``.

Units: Å, eV and eV/Å in the data; errors in meV, meV/atom, meV/Å; times in seconds (budget in minutes);
angles in degrees.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from cartesian_irreps.runtime.kernels import backend_record, require_compiled
from cartesian_irreps.runtime.timing import machine_description
from mlip.evaluation import EvalResult, evaluate_structures, write_predictions_csv
from mlip.metrics import compute_metrics, format_table
from mlip.model import load_model, param_shapes
from mlip.training import (
    DataError,
    TrainConfig,
    Trainer,
    TrainingError,
    load_checkpoint,
    load_isolated_energies,
    read_labelled,
)

__all__ = [
    "DEFAULTS",
    "MOLECULES",
    "MoleculeSpec",
    "binned_profile",
    "build_parser",
    "main",
    "replace_section",
    "run",
]

#: The repository (docs, results, data): the code itself is always the installed package, never this tree.
ROOT = Path(__file__).resolve().parents[1]
#: Default data folder: ``../shared/data`` relative to the repository root.
DEFAULT_DATA = (ROOT / ".." / "shared" / "data").resolve()
#: Default documentation file whose molecule section is rewritten.
DEFAULT_DOCS = ROOT / "docs" / "benchmarks.md"
#: Info keys that may group test structures (first one with 2..50 distinct values on every structure wins).
GROUP_KEYS = ("config_type", "temperature", "temperature_K", "T", "temp")
#: Metrics reported for the test set (names of :func:`mlip.metrics.compute_metrics`).
TEST_METRICS = (
    ("energy_rmse_mev", "E RMSE (meV)"),
    ("energy_mae_mev", "E MAE (meV)"),
    ("energy_rmse_mev_atom", "E RMSE (meV/atom)"),
    ("energy_mae_mev_atom", "E MAE (meV/atom)"),
    ("force_rmse_mev_A", "F RMSE (meV/Å)"),
    ("force_mae_mev_A", "F MAE (meV/Å)"),
)


@dataclass(frozen=True)
class MoleculeSpec:
    """Files and conventions of one molecule's benchmark (paths relative to the data folder).

    Attributes:
        name: short name, also the docs marker (``<!-- name:start -->``) and the results folder.
        title: human-readable name.
        train_file: structures the training and validation sets are drawn from.
        isolated_file: single-atom structures with their energies (eV): the per-element ``E0``.
        test_file: test structures (those also in ``train_file`` are dropped).
        profile_key: ``info`` key of a scalar dihedral angle (degrees) for the energy profile, or ``None``.
        dihedrals_key: ``info`` key of a list of dihedral angles (degrees) usable with ``--profile-dihedral``.
        no_profile_reason: printed (and written to the summary) when there is no default profile.
    """

    name: str
    title: str
    train_file: str
    isolated_file: str
    test_file: str
    profile_key: str | None = None
    dihedrals_key: str | None = None
    no_profile_reason: str = ""


MOLECULES: dict[str, MoleculeSpec] = {
    "acac": MoleculeSpec(
        name="acac",
        title="Acetylacetone",
        train_file="acac/train_300K.xyz",
        isolated_file="acac/isolated_atoms.xyz",
        test_file="acac/test_MD_300K.xyz",
        profile_key="dihedral_angle",
    ),
    "3bpa": MoleculeSpec(
        name="3bpa",
        title="3BPA",
        train_file="3bpa/train_300K.xyz",
        isolated_file="3bpa/iso_atoms.xyz",
        test_file="3bpa/train_mixedT.xyz",
        dihedrals_key="dihedrals",
        no_profile_reason=(
            "no energy profile for 3BPA by default: its test structures are MD snapshots at 300, 600 and "
            "1200 K in which all three dihedrals move together (no torsion scan), so energies averaged along "
            "any one dihedral mostly show the thermal energy of the mixed temperatures (each dihedral explains "
            "under 20% of the energy variance); pass --profile-dihedral 0, 1 or 2 to draw one anyway"
        ),
    ),
}

#: Paper-like defaults (/work/shared/method.md) where a 2-core CPU affords them. Channels and L were chosen
#: for a 2-hour run by timing (float64, one OpenBLAS thread, acetylacetone, s/epoch incl. validation):
#: K=16: L=2 10.2-10.9 s, L=3 31-37 s; K=32: L=2 15.6-19.9 s, L=3 62-67 s (hidden L 1-2). L = 3 costs
#: 3-4x per epoch and learned no faster per epoch than K=32, L=2, hidden L=2 in 5-minute probes, which
#: reaches ~360 epochs in 2 h (the paper's L = 3 would get ~110 with K=32, ~190 with K=16).
DEFAULTS: dict[str, Any] = {
    "n_train": 450,
    "n_valid": 50,
    "seed": 0,
    "budget_minutes": 120.0,
    "epochs": 2000,
    "channels": 32,
    "lmax": 2,
    "hidden_lmax": 2,
    "correlation": 3,
    "num_layers": 2,
    "cutoff": 5.0,
    "num_bessel": 8,
    "radial_hidden": (64, 64, 64),
    "batch_size": 5,
    "lr": 0.01,
    "weight_decay": 5e-7,
    "ema_decay": 0.99,
    "energy_weight": 1.0,
    "forces_weight": 10.0,
    "patience": 50,
    "lr_factor": 0.8,
    "dtype": "float64",
    "device": "numpy",
    "plot_every": 10,
    "profile_bin_width": 5.0,
    "profile_min_count": 3,
}


# ------------------------------------------------------------------------------------------- helpers


def log(text: str) -> None:
    """A progress line on stdout (flushed at once)."""
    print(text, flush=True)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return v


def machine() -> str:
    """CPU model, usable cores, Python, NumPy and ASE versions."""
    return machine_description("ase")


def _load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def _structure_key(atoms: Atoms) -> bytes:
    """Species and positions rounded to 1e-6 Å: equal for the same structure read from two files."""
    pos = np.round(np.asarray(atoms.positions, dtype=np.float64), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    return np.asarray(atoms.numbers, dtype=np.int64).tobytes() + pos.tobytes()


def _finite(v: Any) -> Any:
    """JSON-safe value: non-finite floats become ``None``; containers are converted recursively."""
    if isinstance(v, Mapping):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Path):
        return str(v)
    return v


def _write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(payload), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _rel(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` with forward slashes (for Markdown links)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# ---------------------------------------------------------------------------------------------- data


@dataclass
class BenchmarkData:
    """The structures of a benchmark run.

    Attributes:
        train, valid: training and validation structures (drawn from the training file).
        test: test structures (not in the training file).
        isolated: ``{symbol: energy (eV)}`` of the isolated atoms.
        n_file: structures in the training file.
        n_test_file: structures in the test file.
        n_test_excluded: test structures dropped because the training file holds them too.
    """

    train: list[Atoms]
    valid: list[Atoms]
    test: list[Atoms]
    isolated: dict[str, float]
    n_file: int
    n_test_file: int
    n_test_excluded: int


def load_data(
    spec: MoleculeSpec, data_dir: Path, n_train: int, n_valid: int, seed: int, test_limit: int | None = None
) -> BenchmarkData:
    """Read and split the data of ``spec`` (see the module docstring).

    Raises:
        DataError: a missing file, or fewer structures than ``n_train + n_valid``.
    """
    paths = {what: data_dir / rel for what, rel in (("training", spec.train_file), ("test", spec.test_file))}
    iso_path = data_dir / spec.isolated_file
    for what, p in [*paths.items(), ("isolated-atoms", iso_path)]:
        if not p.is_file():
            raise DataError(f"{what} file {p} does not exist (set --data-dir to the folder holding {spec.name}/)")
    structures = read_labelled(paths["training"], "training")
    if n_train + n_valid > len(structures):
        raise DataError(
            f"{paths['training']} holds {len(structures)} structures, fewer than --n-train {n_train} + "
            f"--n-valid {n_valid}"
        )
    order = np.random.default_rng(seed).permutation(len(structures))
    train = [structures[int(i)] for i in order[:n_train]]
    valid = [structures[int(i)] for i in order[n_train : n_train + n_valid]]
    isolated = load_isolated_energies(iso_path)
    test_all = read_labelled(paths["test"], "test")
    seen = {_structure_key(a) for a in structures}
    test = [a for a in test_all if _structure_key(a) not in seen]
    n_excluded = len(test_all) - len(test)
    if not test:
        raise DataError(f"every structure of {paths['test']} is also in {paths['training']}: no test set")
    if test_limit is not None and test_limit < len(test):
        keep = np.unique(np.linspace(0, len(test) - 1, test_limit).round().astype(np.int64))
        test = [test[int(i)] for i in keep]
    return BenchmarkData(
        train=train,
        valid=valid,
        test=test,
        isolated=isolated,
        n_file=len(structures),
        n_test_file=len(test_all),
        n_test_excluded=n_excluded,
    )


def group_of(structures: Sequence[Atoms]) -> tuple[str, list[str]] | None:
    """The first key of :data:`GROUP_KEYS` present on every structure with 2..50 distinct values:
    ``(key, value of each structure as text)``; ``None`` when there is none."""
    for key in GROUP_KEYS:
        if not all(key in a.info for a in structures):
            continue
        values = [str(a.info[key]) for a in structures]
        if 2 <= len(set(values)) <= 50:
            return key, values
    return None


def _single_group(structures: Sequence[Atoms]) -> str | None:
    """``"key = value"`` of a grouping key that has one value on every structure (for the message)."""
    for key in GROUP_KEYS:
        if structures and all(key in a.info for a in structures):
            values = {str(a.info[key]) for a in structures}
            if len(values) == 1:
                return f"{key} = {values.pop()}"
    return None


def grouped_metrics(result: EvalResult, groups: tuple[str, list[str]] | None) -> dict[str, dict[str, Any]]:
    """``{set name: metrics}`` for the whole test set (``"all"``) and for every group (meV, meV/atom, meV/Å)."""
    pred = result.predictions
    out: dict[str, dict[str, Any]] = {"all": dict(result.metrics)}
    if groups is None:
        return out
    key, values = groups
    ptr = np.concatenate([[0], np.cumsum(pred.n_atoms)])
    for value in sorted(set(values), key=_natural):
        idx = np.array([i for i, v in enumerate(values) if v == value], dtype=np.int64)
        atoms = np.concatenate([np.arange(ptr[i], ptr[i + 1]) for i in idx])
        rf = result.ref_forces
        m = compute_metrics(
            pred.energy[idx],
            result.ref_energy[idx],
            pred.n_atoms[idx],
            pred.forces[atoms] if rf is not None else None,
            rf[atoms] if rf is not None else None,
        )
        out[f"{key}={value}"] = m
    return out


def _natural(text: str) -> tuple[float, str]:
    """Sort key: numbers by value (``"600"`` before ``"1200"``), then text."""
    digits = "".join(c for c in text if c.isdigit() or c == ".")
    try:
        return float(digits), text
    except ValueError:
        return math.inf, text


# ------------------------------------------------------------------------------------------- profile


@dataclass
class Profile:
    """Energies averaged in bins of a coordinate.

    Attributes:
        centres: (B,) bin centres (degrees).
        counts: (B,) structures per bin.
        ref, pred: (B,) mean reference / predicted total energies (eV).
        bin_width: bin width (degrees).
        xlabel: axis label.
    """

    centres: np.ndarray
    counts: np.ndarray
    ref: np.ndarray
    pred: np.ndarray
    bin_width: float
    xlabel: str

    def relative_mev(self) -> tuple[np.ndarray, np.ndarray]:
        """Reference and predicted curves, each in meV relative to its own minimum."""
        return (self.ref - self.ref.min()) * 1000.0, (self.pred - self.pred.min()) * 1000.0

    def metrics(self) -> dict[str, float]:
        """RMSE and largest absolute difference (meV) of the two relative curves; the reference span (meV)."""
        r, p = self.relative_mev()
        d = p - r
        return {
            "profile_rmse_mev": float(np.sqrt(np.mean(d * d))),
            "profile_max_abs_diff_mev": float(np.abs(d).max()),
            "profile_ref_span_mev": float(r.max()),
            "profile_bins": int(self.centres.size),
        }


def binned_profile(
    x: Any, ref: Any, pred: Any, bin_width: float, min_count: int, xlabel: str, lo: float | None = None
) -> Profile | None:
    """Average reference and predicted energies (eV) in bins of ``bin_width`` along ``x`` (degrees).

    Bins start at ``lo`` (default: ``x.min()`` floored to a multiple of ``bin_width``); bins with fewer
    than ``min_count`` structures are dropped. ``None`` when fewer than 2 bins remain.
    """
    xs = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if xs.size == 0:
        return None
    start = math.floor(xs.min() / bin_width) * bin_width if lo is None else lo
    idx = np.floor((xs - start) / bin_width).astype(np.int64)
    nb = int(idx.max()) + 1
    counts = np.bincount(idx, minlength=nb)
    keep = counts >= max(min_count, 1)
    if keep.sum() < 2:
        return None
    ref_mean = np.bincount(idx, weights=ref, minlength=nb)[keep] / counts[keep]
    pred_mean = np.bincount(idx, weights=pred, minlength=nb)[keep] / counts[keep]
    centres = start + (np.arange(nb)[keep] + 0.5) * bin_width
    return Profile(centres, counts[keep], ref_mean, pred_mean, float(bin_width), xlabel)


def profile_coordinate(
    spec: MoleculeSpec, structures: Sequence[Atoms], dihedral_index: int | None
) -> tuple[np.ndarray, str, str] | str:
    """``(x in degrees, axis label, description)`` of the profile coordinate, or why there is none."""
    if dihedral_index is not None:
        key = spec.dihedrals_key or spec.profile_key
        if key is None or not all(key in a.info for a in structures):
            return f"the test structures have no {key or 'dihedral'!r} info: no energy profile"
        values = []
        for a in structures:
            v = np.atleast_1d(np.asarray(a.info[key], dtype=np.float64))
            if dihedral_index >= v.size:
                return f"--profile-dihedral {dihedral_index}: {key!r} holds only {v.size} angle(s)"
            values.append(v[dihedral_index])
        x = np.asarray(values)
        return x, f"dihedral {dihedral_index} (°)", f"info[{key!r}][{dihedral_index}]"
    if spec.profile_key is None:
        return spec.no_profile_reason or "no dihedral coordinate in the data: no energy profile"
    if not all(spec.profile_key in a.info for a in structures):
        return f"not every test structure has info[{spec.profile_key!r}]: no energy profile"
    x = np.array([float(a.info[spec.profile_key]) for a in structures])
    x = (x + 180.0) % 360.0 - 180.0  # 350° is -10°: the angles of a 300 K run sit around 0
    return x, "dihedral angle (°)", f"info[{spec.profile_key!r}] (wrapped to [-180°, 180°))"


def write_profile(profile: Profile, out_dir: Path, title: str) -> tuple[Path, Path]:
    """``energy_profile.png`` (:func:`mlip.plots.energy_profile`) and ``energy_profile.csv``."""
    from mlip.plots import energy_profile

    png = energy_profile(
        profile.centres, profile.ref, profile.pred, out_dir / "energy_profile.png", profile.xlabel, title
    )
    r, p = profile.relative_mev()
    path = out_dir / "energy_profile.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["bin_centre_deg", "structures", "ref_mean_eV", "pred_mean_eV", "ref_rel_meV", "pred_rel_meV"])
        for row in zip(profile.centres, profile.counts, profile.ref, profile.pred, r, p):
            w.writerow(
                [f"{row[0]:.6g}", int(row[1]), f"{row[2]:.10g}", f"{row[3]:.10g}", f"{row[4]:.6g}", f"{row[5]:.6g}"]
            )
    return png, path


# ---------------------------------------------------------------------------------------------- docs


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- name:start -->`` and ``<!-- name:end -->`` replaced by
    ``body`` (appended at the end when the markers are missing); everything else is kept."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    if i >= 0 and j >= 0:
        return text[:i] + block + text[j + len(end) :]
    return (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"


def update_docs(docs: Path, name: str, body: str) -> Path:
    """Rewrite the ``name`` section of ``docs`` (created with a ``# Benchmarks`` title if missing)."""
    text = docs.read_text() if docs.is_file() else "# Benchmarks\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    tmp = docs.with_name(docs.name + ".tmp")
    tmp.write_text(replace_section(text, name, body))
    os.replace(tmp, docs)
    return docs


def docs_section(summary: Mapping[str, Any], spec: MoleculeSpec, docs: Path) -> str:
    """The Markdown section of one benchmark run (settings, results, machine, command, images)."""
    s = summary
    m = s["model"]
    t = s["training"]
    d = s["data"]
    radial = "-".join(str(v) for v in m["radial_hidden"])
    settings = [
        (
            "model",
            f"{m['num_layers']} layers, {m['channels']} channels, L = {m['lmax']}, hidden L = "
            f"{m['hidden_lmax']}, ν = {m['correlation']}, r_c = {m['cutoff']:g} Å, {m['num_bessel']} Bessel "
            f"functions, radial MLP {radial}, products {m['products']}",
        ),
        ("parameters", str(s["parameters"])),
        (
            "optimiser",
            f"Adam{' (AMSGrad)' if t['amsgrad'] else ''}, lr {t['lr']:g}, batch {t['batch_size']}, "
            f"weight decay {t['weight_decay']:g}, EMA {t['ema_decay']:g}, lr × {t['lr_factor']:g} after "
            f"{t['patience']} epochs without validation gain",
        ),
        ("loss", f"E : F = {t['energy_weight']:g} : {t['forces_weight']:g}, {t['dtype']}"),
        (
            "data",
            f"{d['n_train']} train / {d['n_valid']} valid from `{d['train_file_rel']}` (seed {t['seed']}), "
            f"E0 from `{d['isolated_file_rel']}`; test `{d['test_file_rel']}`: {d['n_test']} structures"
            + (f" ({d['n_test_excluded']} also in the training file dropped)" if d["n_test_excluded"] else ""),
        ),
        (
            "budget",
            f"{s['budget_minutes'] or math.inf:g} min of training (last invocation), at most {t['epochs']} epochs",
        ),
        (
            "run",
            f"{s['epochs_done']} epochs ({s['status']}), best epoch {s['best_epoch']}, "
            f"{_fmt(s['seconds_per_epoch'], 1)} s/epoch, training {_fmt(s['training_seconds'] / 60.0, 1)} min",
        ),
    ]
    lines = [
        f"## {spec.title}: accuracy after training on {d['n_train']} structures",
        "",
        f"Machine: {s['machine']}. Date: {s['date']}. 1-minute load average {_fmt(s['load_average_before'])} "
        f"before and {_fmt(s['load_average_after'])} after. Threads: OpenBLAS {s['threads']['OPENBLAS_NUM_THREADS']}, "
        f"fused kernel {s['threads']['CARTESIAN_IRREPS_NUM_THREADS']}.",
        "",
        "Command: " + ", then ".join(f"`{c}`" for c in s.get("commands") or [s["command"]]),
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in settings],
        "",
        "| set | structures | " + " | ".join(label for _, label in TEST_METRICS) + " |",
        "|---|---:|" + "---:|" * len(TEST_METRICS),
    ]
    for name, met in s["test_metrics"].items():
        label = f"test ({name})" if name != "all" else f"test `{Path(d['test_file_rel']).name}`"
        lines.append(
            f"| {label} | {met['n_structures']} | " + " | ".join(_fmt(met.get(k)) for k, _ in TEST_METRICS) + " |"
        )
    bv = s.get("best_valid") or {}
    lines.append(
        f"| validation (best epoch) | {d['n_valid']} | - | - | {_fmt(bv.get('valid_energy_rmse_mev_atom'))} | - | "
        f"{_fmt(bv.get('valid_force_rmse_mev_A'))} | - |"
    )
    lines.append("")
    if s.get("group_note"):
        lines += [s["group_note"] + ".", ""]
    prof = s.get("profile")
    if prof and prof.get("metrics"):
        pm = prof["metrics"]
        lines += [
            f"Energy profile along {prof['coordinate']}: {pm['profile_bins']} bins of {prof['bin_width']:g}° (at least "
            f"{prof['min_count']} structures each); curves relative to their minima differ by "
            f"{_fmt(pm['profile_rmse_mev'])} meV RMS, {_fmt(pm['profile_max_abs_diff_mev'])} meV at most "
            f"(reference span {_fmt(pm['profile_ref_span_mev'])} meV).",
            "",
        ]
    elif prof and prof.get("skipped"):
        lines += [f"Energy profile: {prof['skipped']}.", ""]
    files = s["files"]
    for key, label in (("learning_curve", "learning curve"), ("parity", "parity plot"), ("energy_profile", "profile")):
        if files.get(key):
            lines.append(f"![{spec.name} {label}]({_rel(docs_image(docs, spec.name, key), docs.parent)})")
    return "\n".join(lines)


def docs_image(docs: Path, name: str, key: str) -> Path:
    """Where the docs keep a copy of a run's figure: ``<docs dir>/img/<name>_<key>.png``."""
    return docs.parent / "img" / f"{name}_{key}.png"


def copy_figures(summary: Mapping[str, Any], name: str, docs: Path) -> None:
    """Copy the run's PNGs next to the docs (:func:`docs_image`), so the section's links hold wherever
    ``--output-dir`` was; a figure the run did not make is removed there rather than left stale."""
    for key in ("learning_curve", "parity", "energy_profile"):
        target = docs_image(docs, name, key)
        source = summary["files"].get(key)
        if source:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(summary["output_dir"]) / source, target)
        else:
            target.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- command


def build_parser(default_molecule: str = "acac") -> argparse.ArgumentParser:
    """Command-line options (defaults from :data:`DEFAULTS`)."""
    D = DEFAULTS
    p = argparse.ArgumentParser(
        description="Train the mlip potential on acetylacetone (or 3BPA) under a time budget, test it, plot "
        "parity and energy profile, and write the results (see benchmarks/_molecule_benchmark.py).",
    )
    p.add_argument(
        "--molecule", choices=sorted(MOLECULES), default=default_molecule, help="benchmark (default %(default)s)"
    )
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="shared data folder (default ../shared/data)")
    p.add_argument("--output-dir", type=Path, help="results folder (default benchmarks/results/<molecule>)")
    p.add_argument("--budget-minutes", type=float, default=D["budget_minutes"], help="training time budget, minutes")
    p.add_argument("--resume", action="store_true", help="continue <output-dir>/run (same options as before)")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if <output-dir>/run has a checkpoint")
    p.add_argument("--eval-only", action="store_true", help="no training: test <output-dir>/run/best.npz")
    p.add_argument(
        "--allow-reference",
        action="store_true",
        help="run with the NumPy reference when the compiled kernels are missing (refused by default: 3x slower)",
    )
    g = p.add_argument_group("data")
    g.add_argument("--n-train", type=_positive_int, default=D["n_train"], help="training structures (default 450)")
    g.add_argument("--n-valid", type=_positive_int, default=D["n_valid"], help="validation structures (default 50)")
    g.add_argument("--seed", type=int, default=D["seed"], help="seed of split, initialisation and shuffling")
    g.add_argument("--test-limit", type=_positive_int, help="test on an evenly spaced subset of this many structures")
    g = p.add_argument_group("model")
    g.add_argument("--channels", type=_positive_int, default=D["channels"], help="channels K (default %(default)s)")
    g.add_argument("--lmax", type=int, default=D["lmax"], help="largest rank L of messages (default %(default)s)")
    g.add_argument("--hidden-lmax", type=int, default=D["hidden_lmax"], help="hidden rank (default %(default)s)")
    g.add_argument("--correlation", type=_positive_int, default=D["correlation"], help="ν (default %(default)s)")
    g.add_argument("--num-layers", type=_positive_int, default=D["num_layers"], help="layers (default %(default)s)")
    g.add_argument("--cutoff", type=float, default=D["cutoff"], help="cutoff radius, Å (default %(default)s)")
    g.add_argument("--num-bessel", type=_positive_int, default=D["num_bessel"], help="radial basis size (default 8)")
    g.add_argument("--radial-hidden", type=_int_list, default=D["radial_hidden"], help="radial MLP (default 64,64,64)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=_positive_int, default=D["epochs"], help="epoch limit (default %(default)s)")
    g.add_argument("--batch-size", type=_positive_int, default=D["batch_size"], help="default %(default)s")
    g.add_argument("--lr", type=float, default=D["lr"], help="learning rate (default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=D["weight_decay"], help="default %(default)s")
    g.add_argument("--ema-decay", type=float, default=D["ema_decay"], help="default %(default)s")
    g.add_argument("--energy-weight", type=float, default=D["energy_weight"], help="w_E (default %(default)s)")
    g.add_argument("--forces-weight", type=float, default=D["forces_weight"], help="w_F (default %(default)s)")
    g.add_argument("--patience", type=int, default=D["patience"], help="epochs before lr reduction (default 50)")
    g.add_argument("--lr-factor", type=float, default=D["lr_factor"], help="lr reduction factor (default 0.8)")
    g.add_argument("--dtype", choices=("float32", "float64"), default=D["dtype"], help="default %(default)s")
    g.add_argument("--device", choices=("numpy", "cupy"), default=D["device"], help="default %(default)s")
    g.add_argument("--plot-every", type=_positive_int, default=D["plot_every"], help="learning-curve period")
    g.add_argument("--threads", type=_positive_int, help="threads of the fused kernel (default: its own)")
    g = p.add_argument_group("report")
    g.add_argument("--profile-bin-width", type=float, default=D["profile_bin_width"], help="degrees (default 5)")
    g.add_argument("--profile-min-count", type=_positive_int, default=D["profile_min_count"], help="per bin (3)")
    g.add_argument("--profile-dihedral", type=int, help="profile along dihedral k of a 'dihedrals' list (3BPA)")
    g.add_argument("--docs-file", type=Path, default=DEFAULT_DOCS, help="Markdown file of the results section")
    g.add_argument("--no-docs", action="store_true", help="do not touch the docs file")
    g.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def train_config(args: argparse.Namespace, run_dir: Path) -> TrainConfig:
    """The :class:`TrainConfig` of the command-line options (training files are passed as structures)."""
    model = {
        "channels": args.channels,
        "lmax": args.lmax,
        "hidden_lmax": args.hidden_lmax,
        "correlation": args.correlation,
        "num_layers": args.num_layers,
        "cutoff": args.cutoff,
        "num_bessel": args.num_bessel,
        "radial_hidden": list(args.radial_hidden),
    }
    return TrainConfig(
        model=model,
        # the recorded runs (docs/benchmarks.md) fitted a per-element shift on top of the isolated-atom E0s
        e0_shift=True,
        seed=args.seed,
        epochs=args.epochs,
        max_minutes=args.budget_minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        amsgrad=True,
        weight_decay=args.weight_decay,
        ema_decay=args.ema_decay,
        energy_weight=args.energy_weight,
        forces_weight=args.forces_weight,
        patience=args.patience,
        lr_factor=args.lr_factor,
        dtype=args.dtype,
        device=args.device,
        output_dir=str(run_dir),
        plot_every=args.plot_every,
        progress=not args.quiet,
    )


def _count(config: Any) -> int:
    """Number of trainable parameters of a :class:`mlip.model.ModelConfig`."""
    return int(sum(math.prod(shape) for shape in param_shapes(config).values()))


def _epoch_seconds(history: Sequence[Mapping[str, Any]]) -> float:
    """Median wall time of an epoch (s) from the cumulative ``time_s`` of the log rows."""
    t = [float(r["time_s"]) for r in history if r.get("time_s") is not None]
    if not t:
        return math.nan
    steps = np.diff(np.concatenate([[0.0], t]))
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else math.nan


def run(args: argparse.Namespace, command: str) -> int:
    """Train, test and report (see the module docstring); the exit status (0, 1 or 130 interrupted)."""
    spec = MOLECULES[args.molecule]
    out_dir = Path(args.output_dir) if args.output_dir else ROOT / "benchmarks" / "results" / spec.name
    run_dir = out_dir / "run"
    if args.threads is not None:
        os.environ["CARTESIAN_IRREPS_NUM_THREADS"] = str(args.threads)
    if args.resume and args.overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    load_before = _load_average()
    t_start = time.perf_counter()
    config = train_config(args, run_dir)  # checks the options before any data is read
    data_dir = Path(args.data_dir)
    log(f"[{spec.name}] reading {data_dir / spec.train_file}, {data_dir / spec.test_file}")
    data = load_data(spec, data_dir, args.n_train, args.n_valid, args.seed, args.test_limit)
    log(
        f"[{spec.name}] {len(data.train)} train / {len(data.valid)} valid of {data.n_file} (seed {args.seed}); "
        f"test {len(data.test)} of {data.n_test_file}"
        + (f" ({data.n_test_excluded} also in the training file dropped)" if data.n_test_excluded else "")
        + f"; E0 (eV): {', '.join(f'{k} {v:.6f}' for k, v in data.isolated.items())}"
    )

    if args.eval_only:
        meta, _ = load_checkpoint(run_dir / "checkpoint.npz")
        status = "evaluated only"
        epochs_done = int(meta["epoch"])
        best_epoch = int(meta["best"]["epoch"])
        best_valid = dict(meta["best"].get("valid", {}))
        history = list(meta["history"])
        training_seconds = float(meta.get("elapsed_s", math.nan))
        session_epoch_s = math.nan
        train_settings = dict(meta["train_config"])
        best_path = run_dir / "best.npz"
        curve = run_dir / "learning_curve.png"
        log(f"[{spec.name}] --eval-only: {run_dir} holds {epochs_done} epochs, best epoch {best_epoch}")
    else:
        trainer = Trainer(config, data.train, data.valid, data.isolated, resume=args.resume, overwrite=args.overwrite)
        log(
            f"[{spec.name}] model: {args.num_layers} layers, {args.channels} channels, L {args.lmax}, hidden L "
            f"{args.hidden_lmax}, ν {args.correlation}, {_count(trainer.model_config)} parameters; budget "
            f"{args.budget_minutes:g} min, at most {args.epochs} epochs"
        )
        result = trainer.fit()
        if result.status == "interrupted":
            log(f"[{spec.name}] interrupted after {result.epochs_done} epochs; rerun the command with --resume")
            return 130
        status = result.status
        epochs_done = result.epochs_done
        best_epoch = result.best_epoch
        best_valid = dict(result.best_valid)
        history = list(result.history)
        training_seconds = float(history[-1]["time_s"]) if history else result.seconds
        session_epoch_s = result.seconds_per_epoch
        train_settings = config.to_dict()
        best_path = result.best_path
        curve = result.curve_path if result.curve_path is not None else run_dir / "learning_curve.png"
    if not best_path.is_file():
        raise TrainingError(f"{best_path} does not exist: no completed epoch to test")
    model_config, params = load_model(best_path)
    n_params = int(sum(int(np.size(v)) for v in params.values()))

    log(f"[{spec.name}] testing {best_path} on {len(data.test)} structures ...")
    t_eval = time.perf_counter()
    res = evaluate_structures(best_path, data.test, batch_size=10, device=args.device)
    eval_seconds = time.perf_counter() - t_eval
    groups = group_of(data.test)
    group_note = None
    if groups is None:
        single = _single_group(data.test)
        group_note = (
            f"Every test structure has {single}: one group"
            if single
            else f"No temperature or config_type key in {Path(spec.test_file).name}: whole test set only"
        )
        log(f"[{spec.name}] {group_note}")
    metrics = grouped_metrics(res, groups)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | None] = {  # relative to out_dir
        "run_dir": _rel(run_dir, out_dir),
        "best_model": _rel(best_path, out_dir),
        "checkpoint": _rel(run_dir / "checkpoint.npz", out_dir),
        "log": _rel(run_dir / "log.csv", out_dir),
        "learning_curve": _rel(Path(curve), out_dir) if Path(curve).is_file() else None,
    }
    metrics_path = _write_json(
        out_dir / "test_metrics.json",
        {"test_file": str(data_dir / spec.test_file), "model": str(best_path), "metrics": metrics},
    )
    files["test_metrics"] = _rel(metrics_path, out_dir)
    files["predictions"] = _rel(write_predictions_csv(out_dir / "test_predictions.csv", data.test, res), out_dir)
    from mlip.plots import parity_plot

    n = res.predictions.n_atoms
    files["parity"] = _rel(
        parity_plot(
            res.ref_energy / n,
            res.predictions.energy / n,
            res.ref_forces,
            res.predictions.forces if res.ref_forces is not None else None,
            out_dir / "parity.png",
            title=f"{spec.title}: {Path(spec.test_file).name} ({len(data.test)} structures), best epoch {best_epoch}",
            metrics=metrics["all"],
        ),
        out_dir,
    )

    # energy profile
    profile_info: dict[str, Any] = {"bin_width": args.profile_bin_width, "min_count": args.profile_min_count}
    coord = profile_coordinate(spec, data.test, args.profile_dihedral)
    files["energy_profile"] = None
    (out_dir / "energy_profile.png").unlink(missing_ok=True)  # never leave a stale figure of an older run
    (out_dir / "energy_profile.csv").unlink(missing_ok=True)
    if isinstance(coord, str):
        profile_info["skipped"] = coord
        log(f"[{spec.name}] {coord}")
    else:
        x, xlabel, description = coord
        prof = binned_profile(
            x, res.ref_energy, res.predictions.energy, args.profile_bin_width, args.profile_min_count, xlabel
        )
        if prof is None:
            profile_info["skipped"] = (
                f"fewer than 2 bins of {args.profile_bin_width:g}° hold {args.profile_min_count} structures"
            )
            log(f"[{spec.name}] no energy profile: {profile_info['skipped']}")
        else:
            title = f"{spec.title}: {Path(spec.test_file).name}, means in {args.profile_bin_width:g}° bins"
            png, csv_path = write_profile(prof, out_dir, title)
            files["energy_profile"] = _rel(png, out_dir)
            files["energy_profile_csv"] = _rel(csv_path, out_dir)
            profile_info.update(coordinate=description, xlabel=xlabel, metrics=prof.metrics())

    seconds_per_epoch = _epoch_seconds(history)
    commands = [command]
    if args.resume or args.eval_only:  # the same run: keep the commands of its earlier invocations
        try:
            commands = [*json.loads((out_dir / "summary.json").read_text()).get("commands", []), command]
        except (OSError, ValueError, AttributeError):
            pass
    summary: dict[str, Any] = {
        "benchmark": spec.name,
        "molecule": spec.title,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "backend": backend_record(args.device),
        "threads": {
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
            "CARTESIAN_IRREPS_NUM_THREADS": os.environ.get("CARTESIAN_IRREPS_NUM_THREADS", "default (usable CPUs)"),
        },
        "command": command,
        "commands": commands,
        "output_dir": str(out_dir.resolve()),
        "status": status,
        "budget_minutes": train_settings.get("max_minutes"),
        "epochs_done": epochs_done,
        "best_epoch": best_epoch,
        "seconds_per_epoch": seconds_per_epoch,
        "seconds_per_epoch_this_session": session_epoch_s,
        "training_seconds": training_seconds,
        "test_seconds": eval_seconds,
        "total_seconds_this_session": time.perf_counter() - t_start,
        "parameters": n_params,
        "data": {
            "data_dir": str(data_dir),
            "train_file_rel": spec.train_file,
            "isolated_file_rel": spec.isolated_file,
            "test_file_rel": spec.test_file,
            "n_train": len(data.train),
            "n_valid": len(data.valid),
            "n_train_file": data.n_file,
            "n_test": len(data.test),
            "n_test_file": data.n_test_file,
            "n_test_excluded": data.n_test_excluded,
            "test_limit": args.test_limit,
            "split": f"numpy.random.default_rng({args.seed}).permutation: first {len(data.train)} train, "
            f"next {len(data.valid)} valid",
            "isolated_energies_eV": data.isolated,
        },
        "model": model_config.to_dict(),
        "training": train_settings,
        "best_valid": best_valid,
        "test_metrics": metrics,
        "group_note": group_note,
        "profile": profile_info,
        "files": files,
        "history": history,
    }
    summary_path = _write_json(out_dir / "summary.json", summary)

    if not args.no_docs:
        copy_figures(summary, spec.name, Path(args.docs_file))
        docs = update_docs(Path(args.docs_file), spec.name, docs_section(summary, spec, Path(args.docs_file)))
        log(f"[{spec.name}] updated the {spec.name} section of {docs}")

    # final table
    rows: dict[str, dict[str, Any]] = {}
    for name, met in metrics.items():
        rows[f"test {name}"] = {"structures": met["n_structures"], **{lab: met.get(k) for k, lab in TEST_METRICS}}
    rows["valid (best epoch)"] = {
        "structures": len(data.valid),
        "E RMSE (meV/atom)": best_valid.get("valid_energy_rmse_mev_atom"),
        "F RMSE (meV/Å)": best_valid.get("valid_force_rmse_mev_A"),
    }
    print()
    print(format_table(rows, precision=2, transpose=True))
    run_rows = {
        spec.name: {
            "status": status,
            "epochs (best)": f"{epochs_done} ({best_epoch})",
            "s / epoch": seconds_per_epoch,
            "training (min)": training_seconds / 60.0,
            "test (s)": eval_seconds,
            "parameters": n_params,
        }
    }
    if profile_info.get("metrics"):
        run_rows[spec.name]["profile RMSE (meV)"] = profile_info["metrics"]["profile_rmse_mev"]
    print()
    print(format_table(run_rows, precision=2, transpose=True))
    print(f"\nresults: {out_dir} (summary.json, test_metrics.json, parity.png, run/)")
    log(f"[{spec.name}] summary: {summary_path}")
    return 0


def main(argv: Sequence[str] | None = None, default_molecule: str = "acac", script: str = "benchmarks/acac.py") -> int:
    """Parse the options and :func:`run`; prints ``error: ...`` and returns 1 on bad input or a failed run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(default_molecule).parse_args(argv)
    command = shlex.join(["python", script, *argv])
    try:
        if not args.allow_reference:
            require_compiled(script, args.device)
        print(f"backend: {backend_record(args.device)['description']}", file=sys.stderr)
        return run(args, command)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (DataError, TrainingError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
