#!/usr/bin/env bash
# One script for a machine with an NVIDIA GPU and CuPy, under 8 minutes (tests <= 140 s, benchmark <= 320 s):
# the GPU tests (generated CUDA kernels vs the CPU path, no host round trips, the model to 1e-10), the
# NVRTC/C-twin tests, then the GPU benchmark table (message-passing product, model energy+forces, training epoch; CPU compiled beside
# CUDA). Runs as is from the repository root: `bash benchmarks/gpu_check.sh`. Wheels for packages the GPU
# machine lacks (ase, vesin, hypothesis, nvidia-cuda-nvrtc-cu12) are taken from ./wheels or ../shared/wheels.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
for dir in wheels ../shared/wheels; do
  if [ -d "$dir" ]; then
    python -m pip install -q --no-index --find-links "$dir" ase vesin hypothesis nvidia-cuda-nvrtc-cu12 2>/dev/null || true
  fi
done
python - <<'PY' || { echo "no usable GPU/CuPy here"; exit 1; }
import cupy
print("GPU:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "| CuPy", cupy.__version__)
PY
start=$(date +%s)
timeout 140 python -m pytest -q -p no:cacheprovider tests/gpu tests/cuda -rs 2>&1 | tail -15
tests_rc=${PIPESTATUS[0]}
timeout 320 python benchmarks/gpu_benchmark.py --repeats 3 --cpu-budget 10
bench_rc=$?
echo "--- summary: tests rc=$tests_rc, benchmark rc=$bench_rc, $(( $(date +%s) - start )) s"
exit $(( tests_rc != 0 || bench_rc != 0 ))
