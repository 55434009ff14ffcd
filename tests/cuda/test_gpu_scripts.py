"""benchmarks/gpu_check.sh and benchmarks/gpu_benchmark.py are runnable (no GPU: syntax, --help, dry run)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)


def test_gpu_benchmark_help_and_dry_run(tmp_path):
    script = str(ROOT / "benchmarks" / "gpu_benchmark.py")
    out = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--edges" in out and "--dry-run" in out
    result = tmp_path / "gpu.json"
    args = ["--dry-run", "--skip", "model,train", "--edges", "60", "--channels", "2", "--repeats", "1"]
    run = subprocess.run([sys.executable, script, *args, "--output", str(result)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(result.read_text())["rows"]
    assert len(rows) == 12 and all(r["cpu_s"] > 0 and r["cuda_s"] > 0 for r in rows)
    assert "MP 60x2 L=3 float64 fwd+bwd" in run.stdout
