#!/usr/bin/env python3
"""The CPU decode step through PyTorch and through the decode engine (ONNX Runtime: fp32,
int8, 4-bit weights), paper config (random weights), batch 1, CFG 1 and 2.

    .venv/bin/python bench/bench_engine.py [--configs paper] [--frames 16] [--repeat 5]
        [--backends eager fixed fixed-linear compiled engine-none engine-int8 engine-int4]

Per row: ms/step (median of every step timed alone, a decode's first step left out), RTF
(step / 13.3 ms, one 75 Hz frame), x its own floor (the bytes of
weights that variant reads per step: the model's for PyTorch, the ONNX file's for the
engine, / the copy bandwidth measured in this run, beside the row). Then the engine's
equality with the PyTorch fixed-shape step at the same noise (max |frame difference| over
the fed-back frames; stop steps are compared by tests/engine and tests/upstream), the int8 / int4
drift (mean |difference| / std of the fp32 frames, as modules/precision.py), and the
engine's first start (export + quantize + load) vs a second start (hash + load).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_sled import MODES, SEQ, build, copy_bandwidth, drift, step_weight_bytes  # noqa: E402
from espnet2_sled.engine.session import DecodeEngine, use_decode_backend  # noqa: E402
from espnet2_sled.modules import packed  # noqa: E402
from espnet2_sled.modules.generation import prefill  # noqa: E402

FRAME_MS = 1000 / 75


@torch.no_grad()
def step_times(model, config, cfg_scale, frames, mode, repeat):
    """(median seconds of one decode step, the first run's frames ``[1, frames, D]``): each
    step timed alone after a prefill, ``repeat`` decodes; a decode's first step (it sets
    up the window's buffers) is left out of the median."""
    lm, N = model.lm, SEQ[config][0]
    g = torch.Generator().manual_seed(1)
    wrapped, wl = model.wrap_text(torch.randint(1, model.idim - 1, (1, N), generator=g), torch.tensor([N]))
    noise = torch.randn(1, frames, lm.noise_dim, generator=g)
    options = MODES[mode]
    times, first = [], None
    for _ in range(repeat):
        state = prefill(lm, wrapped, wl, model.eos_id, cfg=cfg_scale != 1.0, capacity=N + 2 + frames, **options)
        out = []
        for step in range(frames):
            start = time.perf_counter()
            frame, _ = state.step(noise[:, step], cfg_scale)
            if step:
                times.append(time.perf_counter() - start)
            out.append(frame)
        first = torch.stack(out, 1) if first is None else first
    return sorted(times)[len(times) // 2], first


def engine_for(lm, backend, directory):
    """'engine-<quantize>' -> an attached DecodeEngine, prepared; else the PyTorch step."""
    if not backend.startswith("engine-"):
        use_decode_backend(lm, "torch")
        return None
    engine = use_decode_backend(lm, "onnxruntime", backend.split("-", 1)[1], directory=directory)
    return engine.prepare(cfg=True).prepare(cfg=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["paper"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cfg_scales", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--backends", nargs="+",
                        default=["eager", "fixed", "fixed-linear", "engine-none", "engine-int8", "engine-int4"])
    parser.add_argument("--engine_dir", type=Path, default=None, help="export cache (default: a fresh temp dir)")
    args = parser.parse_args()
    device = torch.device("cpu")
    print(f"threads: torch {torch.get_num_threads()}")
    for config in args.configs:
        model = build(config, device).eval()
        lm = model.lm
        with tempfile.TemporaryDirectory() as tmp:
            directory = args.engine_dir or Path(tmp)
            reference, small_rows = {}, packed.SMALL_ROWS
            for backend in args.backends:
                start = time.perf_counter()
                engine = engine_for(lm, backend, directory)
                if engine is not None:
                    first = time.perf_counter() - start
                    start = time.perf_counter()
                    DecodeEngine(lm, engine.quantize, directory).prepare(cfg=True).prepare(cfg=False)
                    second = time.perf_counter() - start
                    size = engine.paths[2].stat().st_size
                    print(f"{config} {backend}: first start (export{'+quantize' if engine.quantize != 'none' else ''}"
                          f" + load) {first:.1f} s, second start (hash + load) {second:.1f} s, "
                          f"file {size / 1e6:.0f} MB")
                weight_bytes = size if engine is not None else step_weight_bytes(lm)
                # fixed-linear: the fixed step with F.linear at every row count (before #22)
                packed.SMALL_ROWS = (2, 1) if backend == "fixed-linear" else small_rows
                for cfg_scale in args.cfg_scales:
                    mode = "eager" if backend == "eager" else "fixed"
                    if backend == "compiled":
                        mode = "graph"
                    step, frames = step_times(model, config, cfg_scale, args.frames, mode, args.repeat)
                    floor = weight_bytes / copy_bandwidth(weight_bytes, device)
                    line = (f"{config} {backend:12s} cfg {cfg_scale:g}: {step * 1e3:7.1f} ms/step  "
                            f"RTF {step * 1e3 / FRAME_MS:5.2f}  {step / floor:5.2f}x its floor "
                            f"({weight_bytes / 1e6:.0f} MB: {floor * 1e3:.1f} ms)")
                    if backend == "fixed":
                        reference[cfg_scale] = frames
                    elif cfg_scale in reference and backend.startswith("engine"):
                        ref = reference[cfg_scale]
                        line += (f"  max|diff| vs fixed {(frames - ref).abs().max():.2e}"
                                 f"  drift {drift(frames, ref):.4f}")
                    print(line, flush=True)
            use_decode_backend(lm, "torch")
            packed.SMALL_ROWS = small_rows


if __name__ == "__main__":
    main()
