#!/usr/bin/env bash
# Issue #22's CPU rows as one command, on a quiet machine (2 threads, normal priority):
#   bash bench/run_cpu_engine.sh [bench/results/bench_cpu_engine.txt]
# 0. the step's linears at 1/2/4 rows: F.linear vs torch.mm(W, x^T) (bench_linear_rows.py);
# 1. paper decode step (random weights), batch 1, CFG 1 and 2: torch eager / fixed /
#    fixed-linear (F.linear at every row count, as before #22) / engine fp32 / int8 / int4
#    (ONNX Runtime): ms/step, RTF, x its own floor (its weight bytes / copy bandwidth
#    measured in the run), engine vs torch frames, int8/int4 drift,
#    the engine's first start (export + quantize) vs a second start;
#    COMPILED=1 adds the torch.compile'd step (inductor: minutes of C++ build per window);
# 2. streaming time to first audio, paper config, torch fixed vs engine fp32 / int8;
# 3. the server, paper config, 1 / 2 / 4 streaming clients, engine int8 (the fastest here).
# About 15-20 min on the 2-core AMD host (exports ~1-2 min each under load, less when quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/bench_cpu_engine.txt}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
backends="eager fixed fixed-linear engine-none engine-int8 engine-int4"
[ "${COMPILED:-0}" = 1 ] && backends="eager fixed fixed-linear compiled engine-none engine-int8 engine-int4"
{
  echo "command: bash bench/run_cpu_engine.sh $*"
  echo "host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, OMP_NUM_THREADS=$OMP_NUM_THREADS"
  echo "uptime before: $(uptime)"
  $py bench/bench_linear_rows.py
  $py bench/bench_engine.py --configs paper --frames 16 --repeat 5 --engine_dir "$cache" --backends $backends
  echo "uptime: $(uptime)"
  $py bench/bench_streaming.py --configs paper --modes fixed --trials 2
  XDG_CACHE_HOME=$cache $py bench/bench_streaming.py --configs paper --modes fixed --trials 2 --decode_backend onnxruntime
  XDG_CACHE_HOME=$cache $py bench/bench_streaming.py --configs paper --modes fixed --trials 2 --decode_backend onnxruntime --quantize int8
  echo "uptime: $(uptime)"
  XDG_CACHE_HOME=$cache $py bench/bench_server.py --configs paper --clients 1 2 4 --rounds 1 \
      --decode_backend onnxruntime --quantize int8 --out bench/results/server_cpu_engine.txt
  echo "uptime after: $(uptime)"
} 2>&1 | grep --line-buffered -v -i "warning" | tee "$out.tmp"
mv "$out.tmp" "$out"
