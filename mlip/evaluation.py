"""Evaluation and molecular dynamics of a trained potential: the public names in one place.

The code lives in :mod:`mlip.predict` (model loading, :func:`predict`, the backend line),
:mod:`mlip.evaluate` (errors against labels, unlabelled structures, per-``config_type`` errors),
:mod:`mlip.eval_output` (CSV and extxyz files) and :mod:`mlip.md` (MD with a blow-up guard); this module
re-exports them so ``from mlip.evaluation import ...`` keeps working.
"""

from __future__ import annotations

from .eval_output import write_predictions_csv, write_predictions_extxyz
from .evaluate import NO_LABELS, EvalResult, evaluate_file, evaluate_structures, group_metrics
from .md import MDDiverged, MDError, MDResult, md_file, run_md
from .predict import Predictions, backend_line, load_potential, predict

__all__ = [
    "NO_LABELS",
    "EvalResult",
    "MDDiverged",
    "MDError",
    "MDResult",
    "Predictions",
    "backend_line",
    "evaluate_file",
    "evaluate_structures",
    "group_metrics",
    "load_potential",
    "md_file",
    "predict",
    "run_md",
    "write_predictions_csv",
    "write_predictions_extxyz",
]
