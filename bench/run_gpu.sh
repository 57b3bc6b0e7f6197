#!/usr/bin/env bash
# The decode checks for a GPU machine, as one command (torch only, no ESPnet needed):
#   bash bench/run_gpu.sh [bench/results/bench_gpu_decode.txt]
# 1. graph-captured vs eager decode step: same frames and stop steps (debug + paper config);
# 2. paper/small decode step eager vs fixed-shape vs CUDA graph at batch 1/8/32/64, CFG 1/2,
#    beside the bandwidth floor, plus bf16 rows with their drift from fp32;
# 3. streaming time to first audio per mode (paper config).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/bench_gpu_decode.txt}
py=${PYTHON:-python}
{
  echo "command: bash bench/run_gpu.sh $*"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
  $py bench/decode_equality.py --configs debug paper
  $py bench/bench_sled.py --configs small paper --no_train --decode_batches 1 8 32 64 --precision --no_recompute
  $py bench/bench_streaming.py --configs paper
} 2>&1 | tee "$out.tmp"
mv "$out.tmp" "$out"
