#!/usr/bin/env bash
# Table 1 at the paper's setting (--budget full) on a lent H200, in calls of ~8 minutes that resume where the last
# one stopped. The one command a session with a GPU runs, from the repository root:
#
#   run(command="bash scripts/gpu_table1.sh", carry=["wheels"], timeout_s=590)
#
# wheels/ (git-ignored) holds monai, nibabel, pytorch-ignite, fire, termcolor (benchmarks/gpu/README.md) and nilearn
# (the WMH phantom's anatomy): pip download --no-deps --only-binary=:all: --python-version 3.12 -d wheels nilearn==0.14.1
#
# State between calls: the device machine starts bare each time, so everything a later call needs travels in the
# working tree. This script reads results/gpu_state/table1_<task>_<backbone>_full.tar.gz (markers, per-subject CSVs,
# bin tables, logs: no checkpoints) when present, works until its time budget, and writes the updated archive to
# $OUT/results/. After each call, copy it back so the next call continues from it:
#   cp <files_at>/results/table1_*_full.tar.gz results/gpu_state/
# and unpack the tables / figures for committing:  tar -xzf results/gpu_state/table1_la_unet_full.tar.gz -C /tmp/x
# (export/ inside holds table1.md, table1.csv, the PNGs, manifest.json and per_subject/ -> results/la_full/).
#
# Settings (environment): TASKS ("la wmh"; UNet first, as the issue asks), BACKBONE (unet), SEEDS (3), ROWS (all),
# BUDGET_S (450: seconds of work for the whole call, all tasks), WORKERS (3 runner processes sharing the GPU; the
# runner's per-unit locks keep them apart), RESERVE_S (40: left for archiving), RUN_BUDGET (full; "quick" for a CPU
# dry run of this script), SITE (where the wheels are installed, default .gpu_site).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/results/gpu_out}"
mkdir -p "$OUT/results" results/gpu_state
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
SITE="${SITE:-$PWD/.gpu_site}"
T0=$(date +%s)
TASKS="${TASKS:-la wmh}"
BACKBONE="${BACKBONE:-unet}"
SEEDS="${SEEDS:-3}"
WORKERS="${WORKERS:-3}"
RUN_BUDGET="${RUN_BUDGET:-full}"  # quick: a CPU dry run of this script
LOG="$OUT/gpu_table1.log"
left() { echo $(( ${BUDGET_S:-450} - ($(date +%s) - T0) - ${RESERVE_S:-40} )); }

{
  echo "== $(date -u +%FT%TZ) $(hostname)"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  ls wheels/*.whl || { echo "no wheels/: carry it (see the header of this script)"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" wheels/*.whl
} >>"$LOG" 2>&1 || exit 2
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export MONAI_MEEP_CACHE="${MONAI_MEEP_CACHE:-/tmp/monai_meep_cache}"  # phantoms: regenerated on each fresh machine
"$PY" -c "import torch, monai, monai_meep, nilearn; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), \
'monai', monai.__version__)" >>"$LOG" 2>&1 || { echo "environment broken, see $LOG"; exit 2; }

ROW_ARGS=()
[ -n "${ROWS:-}" ] && read -r -a ROW_ARGS <<<"--rows ${ROWS}"
for task in $TASKS; do
  name="table1_${task}_${BACKBONE}_${RUN_BUDGET}"
  work="/tmp/$name"
  mkdir -p "$work"
  [ -f "results/gpu_state/$name.tar.gz" ] && tar -xzf "results/gpu_state/$name.tar.gz" -C "$work"
  args=(-m monai_meep.apps.experiments table1 --task "$task" --budget "$RUN_BUDGET" --backbone "$BACKBONE" --seeds "$SEEDS"
        --out "$work/out" --no-progress "${ROW_ARGS[@]}")
  if [ "$(left)" -gt 60 ]; then
    echo "== $task: $WORKERS workers, $(left) s ($(date -u +%T))" >>"$LOG"
    pids=()
    for w in $(seq 1 "$WORKERS"); do
      t=$(left)
      [ "$t" -gt 30 ] || break
      # the runner starts no unit it expects to overrun --time-limit; timeout is the hard stop behind it
      timeout "$((t + 15))" "$PY" "${args[@]}" --time-limit "$(awk "BEGIN{print $t/60}")" \
        >>"$work/worker$w.log" 2>&1 &
      pids+=($!)
      sleep 20  # staggered: the first worker generates the phantom (file-locked), the others then reuse it
    done
    wait "${pids[@]}"
    for f in "$work"/worker*.log; do { echo "---- $task $(basename "$f")"; tail -30 "$f"; } >>"$LOG"; done
  fi
  # table, figures and manifest from everything finished so far (starts nothing), then the archive for next time
  "$PY" "${args[@]}" --time-limit 0 --export "$work/export" >"$OUT/${name}.md" 2>>"$LOG"
  tar -czf "$OUT/results/$name.tar.gz" -C "$work" --exclude='*.pt' --exclude='events.out.tfevents*' \
    --exclude='maps' --exclude='.lock_*' out export
  grep -E "runs done" "$OUT/${name}.md" >>"$LOG"
done
echo "== done in $(( $(date +%s) - T0 )) s; copy $OUT/results/*.tar.gz to results/gpu_state/" | tee -a "$LOG"
