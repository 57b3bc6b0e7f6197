#!/usr/bin/env bash
# The CPU rows of issues #14 / #15 as one command, on a quiet machine (2 threads):
#   bash bench/run_cpu.sh [bench/results/bench_cpu.txt]
# 1. paper decode step (batch 1, CFG 2): eager vs fixed-shape vs packed vs the compiled step
#    (torch.compile: ~70 s of C++ build per window) beside the bandwidth floor, 9 rounds,
#    int8 / bf16 rows with their drift from fp32; small config: time outside the forward;
# 2. streaming time to first audio (small, paper);
# 3. paper training step 4 x 5 s fp32: peak memory, code only and as sled_train runs it;
# 4. the server under 1/2/4/8 concurrent streaming clients (mini model zips if the mini
#    recipe has run, and the paper config with random weights).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/bench_cpu.txt}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
{
  echo "command: bash bench/run_cpu.sh $*"
  echo "machine: $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  $py bench/bench_sled.py --configs paper --no_train --decode_batches 1 --modes eager fixed packed graph \
      --cpu_compile --repeat 9 --decode_frames 16 --precision --no_recompute
  $py bench/bench_sled.py --configs small --no_train --decode_batches 1 8 --host_profile --no_recompute
  $py bench/bench_streaming.py --configs small paper --trials 2
  $py bench/train_memory.py --mmap_threshold 0
  $py bench/train_memory.py
  $py bench/bench_server.py --out bench/results/server_cpu.txt
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$out.tmp"
mv "$out.tmp" "$out"
