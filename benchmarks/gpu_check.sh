#!/usr/bin/env bash
# One script for a machine with an NVIDIA GPU and CuPy: the CuPy tests, then the GPU benchmark, then a
# short table. Runs as is from the repository root (well under 10 minutes). Wheels for packages the
# GPU machine lacks (ase, vesin, hypothesis) are taken from ./wheels or ../shared/wheels if present.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
for dir in wheels ../shared/wheels; do
  if [ -d "$dir" ]; then python -m pip install -q --no-index --find-links "$dir" ase vesin hypothesis 2>/dev/null || true; fi
done
python - <<'PY' || { echo "no usable GPU/CuPy here"; exit 1; }
import cupy
print("GPU:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "| CuPy", cupy.__version__)
PY
start=$(date +%s)
python -m pytest -q -p no:cacheprovider tests/gpu tests/runtime/test_fused.py tests/autodiff/test_higher_order.py \
  tests/mlip/test_data.py -k "cupy or gpu or Cupy" -rs 2>&1 | tail -15
tests_rc=${PIPESTATUS[0]}
timeout 420 python benchmarks/gpu_benchmark.py
bench_rc=$?
echo "--- summary: tests rc=$tests_rc, benchmark rc=$bench_rc, $(( $(date +%s) - start )) s"
exit $(( tests_rc != 0 || bench_rc != 0 ))
