#!/usr/bin/env bash
# The one command a session with a lent GPU runs, from the repository root (see benchmarks/gpu/README.md):
#   run(command="bash benchmarks/gpu/run_gpu.sh", carry=["wheels"], timeout_s=560)
# Installs the carried wheels (no network there), runs the GPU-marked tests, then every benchmark on CUDA; logs and
# JSON go to $OUT (what comes back), falling back to benchmarks/results/gpu_out when $OUT is unset. Each phase has its
# own time limit so the whole script ends within ~8 minutes and a slow phase cannot starve the others.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/benchmarks/results/gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
SITE="$PWD/.gpu_site"
T0=$(date +%s)
# seconds left of the budget minus a reserve, never below a floor: left RESERVE FLOOR
left() { local t=$((${BUDGET_S:-470} - ($(date +%s) - T0) - ${1:-0})); [ "$t" -lt "${2:-0}" ] && t=${2:-0}; echo "$t"; }

{
  echo "== $(date -u +%FT%TZ) $(hostname)"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  ls wheels/*.whl || { echo "no wheels/: carry it (see benchmarks/gpu/README.md)"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" wheels/*.whl
  # the package itself, built offline from this checkout (setuptools / wheel are on the image); the source on
  # PYTHONPATH below is the same code, so a failed build is not fatal
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" . \
    || echo "package build skipped: using the source tree on PYTHONPATH"
} 2>&1 | tee "$OUT/install.log"
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PYEOF' 2>&1 | tee -a "$OUT/install.log"
import torch, triton, monai, monai_meep
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(), "triton", triton.__version__,
      "monai", monai.__version__, "monai_meep", monai_meep.__file__)
PYEOF

# all kernel tests on CUDA: the compiled kernels (not the interpreter) vs the PyTorch reference, odd sizes included
echo "== kernel tests on CUDA, then the other GPU-marked tests ($(left) s left)" | tee "$OUT/tests.log"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/kernels -rfEs 2>&1 | tee -a "$OUT/tests.log"
timeout 45 "$PY" -m pytest -q -p no:cacheprovider -m gpu --ignore=tests/kernels tests 2>&1 | tail -30 \
  | tee -a "$OUT/tests.log"

echo "== benchmarks ($(left) s left)" | tee "$OUT/bench.log"
timeout "$(left 150 60)" "$PY" -m benchmarks.run --device cuda --out "$OUT/run_cuda.json" \
  --only bench_loss bench_kernels bench_hausdorff bench_sliding_window 2>&1 | tee -a "$OUT/bench.log"

echo "== calibration metrics vs torchmetrics / MONAI ($(left) s left)" | tee "$OUT/bench_metrics.log"
timeout "$(left 10 30)" "$PY" -m benchmarks.run --device cuda --out "$OUT/run_cuda_metrics.json" \
  --only bench_metrics --voxels "${METRICS_VOXELS:-1e8}" 2>&1 | tee -a "$OUT/bench_metrics.log"
echo "== done in $(( $(date +%s) - T0 )) s; copy $OUT/run_cuda*.json to benchmarks/results/ and commit them"
