"""Benchmark: accuracy of the mlip potential on acetylacetone (default) or 3BPA, trained under a time budget.

Acetylacetone (``--molecule acac``, 15 atoms): train on 450 structures of
``<data>/acac/train_300K.xyz`` with 50 more held out for validation (seeded split), per-element
energies ``E0`` from ``acac/isolated_atoms.xyz``; test on ``acac/test_MD_300K.xyz`` (650 structures);
energy profile along ``info["dihedral_angle"]`` (degrees, binned means).

3BPA (``--molecule 3bpa``, 27 atoms): train on 450 (+ 50 validation) of ``3bpa/train_300K.xyz``,
``E0`` from ``3bpa/iso_atoms.xyz``; test on the structures of ``3bpa/train_mixedT.xyz`` (300/600/1200 K)
that are not in ``train_300K.xyz`` (31 of its 500 are, which leaves 469). The file has no temperature key,
so the test errors are for the whole set; no energy profile unless ``--profile-dihedral k`` is given (the
structures are MD snapshots, not a dihedral scan).

Defaults follow the paper's molecule settings (/work/shared/method.md) where a 2-core CPU can afford
them: 2 layers, r_c = 5 Å, hidden L = 2, ν = 3, 8 Bessel functions, radial MLP 64-64-64, E : F = 1 : 10,
Adam (AMSGrad) lr 0.01, weight decay 5e-7, EMA 0.99, lr × 0.8 after 50 epochs without validation gain,
batch 5, float64, at most 2000 epochs within ``--budget-minutes`` (default 120) of training. Not the
paper's: 32 channels (not recorded there) and L = 2 instead of 3, chosen for a 2-hour run on 2 cores:
L = 3 costs 3-4x per epoch (acetylacetone: 32 channels, hidden L 2, 20 s/epoch at L = 2, 67 s at L = 3),
i.e. ~110 instead of ~360 epochs; ``--lmax 3`` gives the paper's model (see the timings in
``_molecule_benchmark.DEFAULTS``).

Outputs in ``--output-dir`` (default ``benchmarks/results/<molecule>/``): ``run/`` (checkpoint.npz,
best.npz, log.csv, learning_curve.png, train_config.json), ``test_metrics.json``,
``test_predictions.csv``, ``parity.png``, ``energy_profile.png`` / ``.csv`` and ``summary.json``
(settings, epochs, seconds per epoch, errors); the ``<!-- acac:start -->`` / ``<!-- acac:end -->`` (or
``3bpa``) section of ``docs/benchmarks.md`` is rewritten unless ``--no-docs``.

Examples::

    python benchmarks/acac.py                                   # 2 hours of training, then test and report
    python benchmarks/acac.py --resume --budget-minutes 60      # continue the same run for an hour more
    python benchmarks/acac.py --molecule 3bpa --channels 16
    python benchmarks/acac.py --budget-minutes 2 --epochs 2 --test-limit 50 --output-dir /tmp/acac --no-docs

Errors are in meV, meV/atom and meV/Å; times in seconds (budget in minutes). Exit status 0, 1 on bad
input, 130 when interrupted (the checkpoint is kept; continue with ``--resume``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

# One OpenBLAS thread: the model multiplies many small matrices, and threads only add hand-off cost on a
# shared 2-core machine (see mlip/cli.py). Must be set before NumPy is imported; an explicit value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

import _molecule_benchmark  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark with command-line options ``argv`` (default ``sys.argv[1:]``); the exit status."""
    return _molecule_benchmark.main(argv, default_molecule="acac", script="benchmarks/acac.py")


if __name__ == "__main__":
    from cartesian_irreps.runtime.allocator import keep_freed_memory

    keep_freed_memory()  # this process is ours: reuse freed memory (see cartesian_irreps.runtime.allocator)
    sys.exit(main())
