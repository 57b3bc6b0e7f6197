#!/usr/bin/env python3
"""Where the decode engine's step goes: ONNX Runtime's own profiler over 16 steps of the
paper config (random weights), CFG 2, batch 1; kernel time per op type per step.

    .venv/bin/python bench/profile_engine.py [none|int8|int4] [--engine_dir DIR]
"""

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_sled import build  # noqa: E402
from espnet2_sled.engine.session import use_decode_backend  # noqa: E402
from espnet2_sled.modules.generation import generate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("quantize", nargs="?", default="int8", choices=["none", "int8", "int4"])
    parser.add_argument("--engine_dir", type=Path, default=None)
    args = parser.parse_args()
    model = build("paper", torch.device("cpu")).eval()
    with tempfile.TemporaryDirectory() as tmp:
        engine = use_decode_backend(model.lm, "onnxruntime", args.quantize, directory=args.engine_dir or Path(tmp))
        engine.prepare(cfg=True)
        ort = engine.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        engine.sessions[2] = ort.InferenceSession(str(engine.paths[2]), options, providers=["CPUExecutionProvider"])
        text = torch.randint(1, 1000, (1, 48))
        wrapped, wl = model.wrap_text(text, torch.tensor([48]))
        with torch.no_grad():
            generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=2.0, stop_threshold=2.0, max_frames=16)
        events = json.loads(Path(engine.sessions[2].end_profiling()).read_text())
    per_op, runs = collections.Counter(), 0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
        runs += event.get("name") == "model_run"
    print(f"quantize {args.quantize}, threads {torch.get_num_threads()}: {runs} steps, kernel time "
          f"{sum(per_op.values()) / runs / 1e3:.2f} ms/step (profiler on)")
    for op, micros in per_op.most_common(12):
        print(f"  {op:28s} {micros / runs / 1e3:6.2f} ms/step")


if __name__ == "__main__":
    main()
