#!/usr/bin/env bash
# One script for a machine with an NVIDIA GPU and CuPy, under 8 minutes (build <= 60 s, tests <= 140 s,
# benchmark <= 300 s): builds the CPU kernels in place (the CPU column must be the compiled path, not
# the NumPy reference), runs the GPU tests (generated CUDA kernels vs the CPU path, no host round trips,
# the model to 1e-10) and the NVRTC/C-twin tests, then the GPU benchmark table (message-passing product,
# model energy+forces, training epoch; CPU compiled on $CPU_THREADS threads beside CUDA).
# Runs as is from the repository root: `bash benchmarks/gpu_check.sh`. Packages the GPU machine lacks
# (ase, vesin; hypothesis, nvidia-cuda-nvrtc-cu12 where absent) are installed from wheels in ./.whl,
# ./wheels or ../shared/wheels when one of those folders exists.
set -uo pipefail
cd "$(dirname "$0")/.."
CPU_THREADS=${CPU_THREADS:-2}
PY=${PYTHON:-$(command -v python3 || command -v python)}
for dir in .whl wheels ../shared/wheels; do
  if [ -d "$dir" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site "$dir"/*.whl \
      && export PYTHONPATH="/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}" \
      || echo "warning: could not install the wheels in $dir"
  fi
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PY' || { echo "no usable GPU/CuPy here"; exit 1; }
import cupy
print("GPU:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "| CuPy", cupy.__version__)
PY
start=$(date +%s)
# the compiled CPU kernels, in place (the source tree is on PYTHONPATH); a failed build is an error
# (setup.py's extensions through setuptools' build_ext only, so an older setuptools there that cannot
# read pyproject.toml's metadata still builds them)
timeout 60 "$PY" - >/tmp/gpu_check_build.log 2>&1 <<'PY'
import runpy

import setuptools

found = {}
setuptools.setup = lambda **kw: found.update(kw)  # setup.py declares; nothing else is read
runpy.run_path("setup.py")
dist = setuptools.Distribution({"ext_modules": found["ext_modules"], "cmdclass": found["cmdclass"]})
cmd = dist.get_command_obj("build_ext")
cmd.inplace = True
dist.run_command("build_ext")
PY
"$PY" -c "from cartesian_irreps.runtime.kernels import require_compiled; require_compiled('benchmarks/gpu_check.sh')" \
  || { echo "error: the compiled CPU kernels did not build (log: /tmp/gpu_check_build.log)"; tail -20 /tmp/gpu_check_build.log; exit 1; }
timeout 140 "$PY" -m pytest -q -p no:cacheprovider tests/gpu tests/cuda -rs 2>&1 | tail -15
tests_rc=${PIPESTATUS[0]}
# the CPU baseline on CPU_THREADS threads (the goals compare with the compiled path on 2 cores)
CARTESIAN_IRREPS_NUM_THREADS=$CPU_THREADS OPENBLAS_NUM_THREADS=$CPU_THREADS OMP_NUM_THREADS=$CPU_THREADS \
  timeout 300 "$PY" benchmarks/gpu_benchmark.py --repeats 3 --cpu-budget 10
bench_rc=$?
echo "--- summary: tests rc=$tests_rc, benchmark rc=$bench_rc, $(( $(date +%s) - start )) s"
exit $(( tests_rc != 0 || bench_rc != 0 ))
