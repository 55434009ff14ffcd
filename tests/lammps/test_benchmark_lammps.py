"""Smoke test of ``benchmarks/lammps.py`` with a 4-channel model on 128-256 Cu atoms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .helpers import requires_lammps

ROOT = Path(__file__).resolve().parents[2]


@requires_lammps
def test_lammps_benchmark_runs(tmp_path):
    out = tmp_path / "lammps.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "lammps.py"), "--sizes", "256", "--steps", "2"]
    cmd += ["--channels", "4", "--output", str(out), "--no-docs"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    runs = {(r["atoms"], r["ranks"]) for r in res["lammps"]}
    assert runs == {(256, 1), (256, 2), (128, 1), (512, 2)}
    assert [r["atoms"] for r in res["ase"]] == [256]
    assert [w["atoms_per_rank"] for w in res["weak"]] == [128, 256]
    for r in res["lammps"] + res["ase"]:
        assert r["ms_per_step"] > 0 and len(r["cpu_ms_per_step"]) == r["ranks"]
    assert "| Cu 256 | LAMMPS pair_style mlip | 2 |" in proc.stdout
