#!/usr/bin/env python3
"""SLED speed and memory: train step, decode frames/s, KV cache vs recomputation, and the
paper model's batch-1 decode step beside the memory-bandwidth floor measured in this run.

    .venv/bin/python bench/bench_sled.py [--configs debug small paper] [--device cpu|cuda] [--quick]

Floors printed beside measurements:
* decode step floor = bytes of weights read per step / bandwidth, where the bandwidth is
  measured here by reading one contiguous buffer of that many bytes once (a single sum:
  a per-tensor sum would time kernel launches on a GPU, not memory);
* train step floor = 6 * params * tokens / peak matmul FLOP/s measured here (bf16 matmuls
  with --amp, fp32 otherwise).
"""

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from sled_import import make_importable  # noqa: E402

make_importable()

from espnet2_sled.modules.generation import generate, prefill  # noqa: E402
from espnet2_sled.modules.layout import build_layout  # noqa: E402
from espnet2_sled.tts.sled import SLED  # noqa: E402

SEQ = {"debug": (16, 64), "small": (32, 200), "paper": (48, 300)}  # (text tokens, frames) per utterance


def build(config: str, device) -> SLED:
    conf = yaml.safe_load((REPO / "conf" / f"{config}.yaml").read_text())["tts_conf"]
    conf.pop("latent", None), conf.pop("latent_conf", None)
    odim = 128 if config == "paper" else (80 if config == "small" else 8)
    torch.manual_seed(0)
    model = SLED(idim=16384 if config == "paper" else 256, odim=odim, **conf).to(device)
    with torch.no_grad():  # non-zero generator so decoding does real work
        model.lm.generator.output.linear.weight.normal_(0, 0.02)
    return model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeat=5, warmup=2):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def weight_stream_seconds(tensors, device):
    """Time to read as many bytes as these tensors hold, once (the bandwidth floor of a decode step)."""
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    buffer = torch.ones(nbytes // 4, device=device)
    return timeit(buffer.sum, device, repeat=7)


def matmul_peak_flops(device, dtype=torch.float32):
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timeit(lambda: a @ b, device, repeat=3)


def bench_train(model, config, batch, device, amp):
    N, T = SEQ[config]
    model.train()
    text = torch.randint(1, model.idim - 1, (batch, N), device=device)
    feats = torch.randn(batch, T, model.odim, device=device)
    tl, fl = torch.full((batch,), N, device=device), torch.full((batch,), T, device=device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _, _ = model(text, tl, feats, fl)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = timeit(step, device, repeat=3, warmup=1)
    params = sum(p.numel() for p in model.lm.parameters())
    return seconds, 6 * params * batch * (N + T + 2)


@torch.no_grad()
def bench_decode(model, config, batch, cfg_scale, device, frames=32):
    model.eval()
    N = SEQ[config][0]
    text = torch.randint(1, model.idim - 1, (batch, N), device=device)
    wrapped, wl = model.wrap_text(text, torch.full((batch,), N, device=device))
    noise = torch.randn(batch, frames, model.lm.noise_dim, device=device)

    def run():
        return generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=cfg_scale, stop_threshold=2.0,
                        max_frames=frames, noise=noise)
    total = timeit(run, device, repeat=3, warmup=1)
    pre = timeit(lambda: prefill(model.lm, wrapped, wl, model.eos_id, cfg=cfg_scale != 1.0, capacity=N + 2 + frames),
                 device, repeat=3, warmup=1)
    step = (total - pre) / frames
    return step, batch / step


@torch.no_grad()
def bench_recompute(model, config, device, frames=32):
    """Per-frame cost without a KV cache: re-run the whole prefix each step."""
    model.eval()
    N = SEQ[config][0]
    text = torch.randint(1, model.idim - 1, (1, N), device=device)
    wrapped, wl = model.wrap_text(text, torch.tensor([N], device=device))
    past = torch.randn(1, frames, model.odim, device=device)

    def run():
        for t in range(0, frames, 4):  # sample every 4th step, same prefix lengths as decoding
            layout = build_layout(wl, torch.tensor([t], device=device), "offline")
            model.lm.hidden_states(wrapped, wl, past[:, :t], torch.tensor([t], device=device), layout, model.eos_id)
    return timeit(run, device, repeat=2, warmup=1) / len(range(0, frames, 4))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["debug", "small", "paper"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for the train step")
    parser.add_argument("--json", type=str, default=None, help="also write results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    peak_dtype = torch.bfloat16 if args.amp else torch.float32
    peak = matmul_peak_flops(device, peak_dtype)
    print(f"measured {str(peak_dtype)[6:]} matmul peak: {peak / 1e9:.1f} GFLOP/s")
    results = []
    for config in args.configs:
        model = build(config, device)
        params = sum(p.numel() for p in model.lm.parameters())
        print(f"\n== {config}: {params / 1e6:.1f} M parameters, text {SEQ[config][0]} + frames {SEQ[config][1]}")
        for batch in args.batches:
            seconds, flops = bench_train(model, config, batch, device, args.amp)
            print(f"train step  batch {batch:2d}: {seconds * 1e3:8.1f} ms   floor {flops / peak * 1e3:8.1f} ms "
                  f"({seconds / (flops / peak):.2f}x)   peak mem {peak_memory_mb(device):.0f} MB")
            results.append(dict(config=config, kind="train", batch=batch, seconds=seconds, floor=flops / peak))
            gc.collect()
        for batch in args.batches:
            for cfg_scale in (1.0, 2.0):
                step, fps = bench_decode(model, config, batch, cfg_scale, device)
                print(f"decode      batch {batch:2d} cfg {cfg_scale}: {step * 1e3:7.2f} ms/step  "
                      f"{fps:8.1f} frames/s  ({fps / 75:.1f}x real time)   peak mem {peak_memory_mb(device):.0f} MB")
                results.append(dict(config=config, kind="decode", batch=batch, cfg=cfg_scale, step=step, fps=fps))
        # batch-1 step vs the bandwidth floor, and the KV cache vs recomputation
        lm = model.lm
        step_weights = [p for n, p in lm.named_parameters() if not n.startswith("embed_tokens")]
        weight_bytes = sum(p.numel() * p.element_size() for p in step_weights)
        floor = weight_stream_seconds(step_weights, device)
        step1, _ = bench_decode(model, config, 1, 1.0, device)
        step_cfg, _ = bench_decode(model, config, 1, 2.0, device)
        recompute = bench_recompute(model, config, device)
        print(f"batch-1 step: {step1 * 1e3:.2f} ms (no CFG), {step_cfg * 1e3:.2f} ms (CFG); weights read per step "
              f"{weight_bytes / 1e6:.0f} MB, streamed once in {floor * 1e3:.2f} ms "
              f"({weight_bytes / floor / 1e9:.1f} GB/s) -> {step1 / floor:.2f}x floor, CFG {step_cfg / floor:.2f}x floor")
        print(f"KV cache: {step1 * 1e3:.2f} ms/frame vs recomputing the prefix {recompute * 1e3:.2f} ms/frame "
              f"({recompute / step1:.1f}x speedup at <= {SEQ[config][0] + 34} positions; grows with length)")
        results.append(dict(config=config, kind="floor", step=step1, step_cfg=step_cfg, floor=floor,
                            weight_bytes=weight_bytes, recompute=recompute))
        del model
        gc.collect()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
