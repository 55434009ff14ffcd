"""The test sets of a run (``test_files``): the best model evaluated on each after training.

For each file ``<name>.xyz``, :func:`mlip.evaluation.evaluate_file` writes
``<output_dir>/test/<name>_predictions.{csv,extxyz}`` and ``<name>_metrics.json``;
``<output_dir>/test_metrics.json`` maps every file (as given) to its metrics (RMSEs and MAEs in meV,
meV/atom, meV/Å).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ase import Atoms

from ..archive import atomic_write_text, jsonable
from .config import TrainConfig

__all__ = ["evaluate_test_sets"]


def evaluate_test_sets(
    model_path: Path, test_sets: Sequence[tuple[str, list[Atoms]]], out_dir: Path, config: TrainConfig
) -> dict[str, dict[str, float]]:
    """Evaluate ``model_path`` on every test set; writes the files above and returns ``{file: metrics}``."""
    from ..evaluation import evaluate_file

    results: dict[str, dict[str, float]] = {}
    used: set[str] = set()
    for name, structures in test_sets:
        stem = Path(name).stem or "test"
        prefix, k = stem, 1
        while prefix in used:
            k += 1
            prefix = f"{stem}_{k}"
        used.add(prefix)
        res = evaluate_file(
            model_path,
            structures,
            out_dir / "test",
            prefix,
            batch_size=config.valid_batch_size,
            stress=True if config.stress_weight > 0 else None,
            energy_key=config.energy_key,
            forces_key=config.forces_key,
            stress_key=config.stress_key,
            device=config.device,
            plot=False,
        )
        results[name] = dict(res.metrics)
    atomic_write_text(out_dir / "test_metrics.json", json.dumps(jsonable(results), indent=2) + "\n")
    return results
