#!/usr/bin/env bash
# GPU readiness check, sized to finish in under 8 minutes on one GPU (not yet timed on one):
#   1. the benchmark runner's --full training rows (ResNet-50 train step, optimizer step,
#      ResNet-101 rollback) on every backend: TensorFlow, TensorFlow+XLA, JAX, torch;
#   2. its --full evaluation rows (Market-1501-scale ranking) and input pipeline;
#   3. one short Table-2-shaped run: ResNet-50 at 288x144, batch 32, rollback vs base_cy over
#      4 periods, on the built-in synthetic data (random initial weights: a shape check, not
#      the paper's numbers);
#   4. a two-process NCCL smoke run on torch (benchmarks/torch_data_parallel.py --gpu: two
#      processes, one GPU each, vs one process at the same global batch); skipped with fewer
#      than two GPUs (NCCL takes one GPU per process). With --cpu: the same over Gloo, tiny.
# Everything lands in OUTPUT_DIR: gpu_check.md (all tables), the runner's JSON, logs.
#
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]          # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu [OUTPUT_DIR]    # tiny sizes on CPU: checks the script
set -euo pipefail

SIZE_FLAG=--full
IMAGE="(288, 144)"; BATCH=32; BACKBONE=resnet50; IDENTITIES=32; TIMEOUT=420
if [[ "${1:-}" == "--cpu" ]]; then
  shift
  SIZE_FLAG=--tiny
  IMAGE="(32, 16)"; BATCH=8; BACKBONE=resnet18; IDENTITIES=4; TIMEOUT=1800
fi
OUT=$(realpath -m "${1:-gpu_check_results}")
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
SECONDS=0
{
  echo "# GPU check ($(date -u +%FT%TZ), size ${SIZE_FLAG#--})"
  echo
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    | sed 's/^/GPU: /' || echo "GPU: none found (nvidia-smi)"
  echo
} > "$OUT/gpu_check.md"

echo "== 1-2. Benchmark runner: training rows on every backend, evaluation rows"
python benchmarks/run_all.py "$SIZE_FLAG" --sections step others --timeout "$TIMEOUT" \
  --output_dir "$OUT/benchmarks" 2>&1 | tee "$OUT/benchmarks.log"
cat "$OUT/benchmarks/benchmark_results.md" >> "$OUT/gpu_check.md"
echo "Benchmarks done at ${SECONDS} s."

echo "== 3. Table-2-shaped run at ${IMAGE}, synthetic data"
rm -rf "$OUT/table2_shaped"
python -m experiments.main --config=experiments/configs/table2.py:market1501 \
  --workdir="$OUT/table2_shaped" \
  --config.dataset.name=synthetic \
  --config.synthetic.num_train_identities="$IDENTITIES" \
  --config.synthetic.num_test_identities="$IDENTITIES" \
  --config.synthetic.image_size="$IMAGE" \
  --config.image_size="$IMAGE" \
  --config.batch_size="$BATCH" \
  --config.model.backbone="$BACKBONE" \
  --config.model.weights="" \
  --config.plan.period_epochs=2 --config.plan.decay_epochs=1 \
  --config.evaluation.every_epochs=0 2>&1 | tee "$OUT/table2_shaped.log"
{
  echo
  echo "## Table-2-shaped run (${BACKBONE}, ${IMAGE}, batch ${BATCH}, synthetic data, 4 periods of 2 epochs)"
  echo
  cat "$OUT/table2_shaped/comparison.md"
  echo
  echo "Total wall clock: ${SECONDS} s."
} >> "$OUT/gpu_check.md"
echo "== 4. Two-process data-parallel smoke run on torch"
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
if [[ "$SIZE_FLAG" == "--tiny" ]]; then
  DP_ARGS=(--height 32 --width 32 --batch_size 4 --warmup_steps 1 --steps 1)
elif (( GPUS >= 2 )); then
  DP_ARGS=(--gpu --height 288 --width 144 --batch_size 32 --warmup_steps 3 --steps 10)
else
  DP_ARGS=()
fi
if (( ${#DP_ARGS[@]} )); then
  KERAS_BACKEND=torch timeout "$TIMEOUT" python benchmarks/torch_data_parallel.py "${DP_ARGS[@]}" \
    --output "$OUT/torch_data_parallel.json" 2>&1 | tee "$OUT/torch_data_parallel.log"
  {
    echo
    echo "## Two-process torch data parallelism (${DP_ARGS[*]})"
    echo
    grep "^| Data-parallel" "$OUT/torch_data_parallel.log" || echo "failed: see torch_data_parallel.log"
  } >> "$OUT/gpu_check.md"
else
  echo "Skipped: ${GPUS} GPU(s); the NCCL run needs two (one per process)." \
    | tee -a "$OUT/gpu_check.md"
fi
echo "Wrote $OUT/gpu_check.md (${SECONDS} s)."
