#!/usr/bin/env python3
"""SLED speed and memory: train step, decode frames/s, KV cache vs recomputation, and the
decode step beside the memory-bandwidth floor measured in this run.

    .venv/bin/python bench/bench_sled.py [--configs debug small paper] [--device cpu|cuda]
        [--decode_batches 1 8 32 64] [--modes eager fixed graph] [--precision] [--host_profile]

Decode step modes (the same frames; ``tests/modules/test_fixed_shape_step.py``):
* eager = the variable-shape step (``fixed_shape=False``: the cache sliced to its length,
  the mask rebuilt, a host sync per step for the stop decision);
* fixed = the fixed-shape step (``Decoder.step``), run eagerly;
* packed = fixed, with q | k | v and gate | up packed into one matmul each
  (``Decoder.packing``, opt-in for fp32: ``modules/packed.py``);
* graph = the fixed-shape step replayed as a CUDA graph (CPU: ``torch.compile``, only with
  ``--cpu_compile``: inductor builds C++ for minutes).

Floors printed beside measurements:
* decode step floor = bytes of weights read per step / bandwidth, where the bandwidth is
  measured here with one large contiguous copy (bytes read + written / seconds) of a
  buffer of that many bytes (a per-tensor copy would time kernel launches on a GPU);
* train step floor = 6 * params * tokens / peak matmul FLOP/s measured here (bf16 matmuls
  with --amp, fp32 otherwise).
``--precision`` adds int8 (CPU) / bf16 rows with their frame drift from fp32 at the same
noise (mean |difference| / std of the fp32 frames, as ``modules/precision.py``), over the
decoded frames (the model's own frames fed back: errors compound) and on the first one.
``--host_profile`` (small config) splits the batch-1 step into the model forward and the
time outside it (noise, bookkeeping, Python), with the top host ops from the profiler.
"""

import argparse
import copy
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

from espnet2_sled.modules.generation import DecodingState, generate, prefill  # noqa: E402
from espnet2_sled.modules.layout import build_layout  # noqa: E402
from espnet2_sled.modules.precision import prepare_for_decoding  # noqa: E402
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


def median(values):
    """The middle value (the upper one of an even count)."""
    return sorted(values)[len(values) // 2]


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
    return median(times)


def peak_memory_mb(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_bandwidth(nbytes, device):
    """Bytes/s of one large contiguous copy (read + write) of a ``nbytes`` buffer."""
    source = torch.ones(max(nbytes, 2**26) // 4, device=device)
    target = torch.empty_like(source)
    seconds = timeit(lambda: target.copy_(source), device, repeat=7)
    return 2 * source.numel() * 4 / seconds


def step_weight_bytes(lm):
    """Bytes of weights one decode step reads: every tensor of the model but the token table
    (int8 linears count their packed int8 weights)."""
    total = 0
    for name, tensor in lm.state_dict().items():
        if name.startswith("embed_tokens"):
            continue
        if isinstance(tensor, tuple):  # packed quantized linear (weight, bias)
            tensor = tensor[0]
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() or getattr(tensor, "is_quantized", False):
            total += tensor.numel() * tensor.element_size()
    for block in lm.decoder.layers:  # int8 packed q | k | v and gate | up (their float weights are empty)
        for pack in (block.self_attn.packed_qkv, block.mlp.packed_gate_up):
            if pack is not None and pack.quantized is not None:
                total += pack.quantized.weight().numel()
    return total


def matmul_peak_flops(device, dtype=torch.float32):
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timeit(lambda: a @ b, device, repeat=3)


def bench_train(model, config, batch, device, amp, repeat=3):
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
    seconds = timeit(step, device, repeat=repeat, warmup=1)
    params = sum(p.numel() for p in model.lm.parameters())
    return seconds, 6 * params * batch * (N + T + 2)


MODES = {"eager": dict(fixed_shape=False, decode_graph=False), "fixed": dict(fixed_shape=True, decode_graph=False),
         "packed": dict(fixed_shape=True, decode_graph=False), "graph": dict(fixed_shape=True, decode_graph=True)}


@torch.no_grad()
def bench_decode(model, config, batch, cfg_scale, device, frames=32, mode="fixed", lm=None, repeat=3):
    """(seconds per step, frames/s, the frames) of ``frames`` steps after a prefill (no stop)."""
    model.eval()
    lm = model.lm if lm is None else lm
    N = SEQ[config][0]
    g = torch.Generator().manual_seed(batch)
    text = torch.randint(1, model.idim - 1, (batch, N), generator=g).to(device)
    wrapped, wl = model.wrap_text(text, torch.full((batch,), N, device=device))
    noise = torch.randn(batch, frames, lm.noise_dim, generator=g).to(device)
    out = {}

    def run():
        out["gen"] = generate(lm, wrapped, wl, model.eos_id, cfg_scale=cfg_scale, stop_threshold=2.0,
                              max_frames=frames, noise=noise, **MODES[mode])
    packing = lm.decoder.packing
    lm.decoder.packing = mode == "packed" or packing
    try:
        total = timeit(run, device, repeat=repeat, warmup=1)
        pre = timeit(lambda: prefill(lm, wrapped, wl, model.eos_id, cfg=cfg_scale != 1.0, capacity=N + 2 + frames),
                     device, repeat=repeat, warmup=1)
    finally:
        lm.decoder.packing = packing
    step = (total - pre) / frames
    return step, batch / step, out["gen"].frames


def drift(frames, reference):
    return float((frames.float() - reference).abs().mean() / reference.std())


@torch.no_grad()
def host_profile(model, config, device, frames=64):
    """Batch-1 CFG-2 fixed-shape step: time inside the model forward vs outside it."""
    model.eval()
    starts, inside = [], []
    body = DecodingState.fixed_step

    def timed_body(self, *args):  # the model forward of one step: sample_frame + Decoder.step
        sync(device)
        start = time.perf_counter()
        result = body(self, *args)
        sync(device)
        starts.append(start)
        inside.append(time.perf_counter() - start)
        return result
    N = SEQ[config][0]
    text = torch.randint(1, model.idim - 1, (1, N), device=device)
    wrapped, wl = model.wrap_text(text, torch.tensor([N], device=device))
    noise = torch.Generator(device=device).manual_seed(0)

    def run():
        generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=2.0, stop_threshold=2.0, max_frames=frames,
                 noise=noise, decode_graph=False)
    run()
    DecodingState.fixed_step = timed_body
    try:
        periods, forwards = [], []
        for _ in range(3):  # medians over steps: robust to a few slow steps on a busy machine
            starts.clear(), inside.clear()
            run()
            periods += [b - a for a, b in zip(starts, starts[1:])]
            forwards += inside[:-1]
        step, inside_step = median(periods), median(forwards)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            run()
    finally:
        DecodingState.fixed_step = body
    print(f"host profile ({config}, batch 1, cfg 2, fixed-shape eager): step {step * 1e3:.3f} ms, model forward "
          f"{inside_step * 1e3:.3f} ms, outside it {(step - inside_step) * 1e3:.3f} ms "
          f"({(step - inside_step) / step * 100:.1f}% of the step); top host ops (profiler overhead included):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return step, inside_step


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


def bench_precision(model, config, device, frames, floor, args, results):
    """int8 (CPU) or bf16 rows: step time, x its own floor, and frame drift from fp32."""
    options = [("bf16", dict(decode_dtype="bfloat16"))]
    if device.type == "cpu":
        options.insert(0, ("int8", dict(quantize="int8")))
    mode = "graph" if device.type == "cuda" else "fixed"
    for name, option in options:
        low = copy.deepcopy(model.lm)
        prepare_for_decoding(low, **option)
        low_floor = step_weight_bytes(low) / (step_weight_bytes(model.lm) / floor)
        for batch in (1,) if device.type == "cpu" else args.decode_batches:
            _, _, reference = bench_decode(model, config, batch, 2.0, device, frames, mode, repeat=1)
            step, fps, out = bench_decode(model, config, batch, 2.0, device, frames, mode, lm=low, repeat=args.repeat)
            gap, first = drift(out, reference), drift(out[:, :1], reference[:, :1])
            print(f"{name} decode batch {batch:2d} cfg 2.0 ({mode}): {step * 1e3:7.2f} ms/step {fps:8.1f} f/s "
                  f"RTF {step * 75 / batch:.3f}  ({step / low_floor:.2f}x its floor {low_floor * 1e3:.2f} ms)  "
                  f"drift from fp32 {gap:.4f} over {frames} frames, {first:.4f} on the first", flush=True)
            results.append(dict(config=config, kind=name, batch=batch, step=step, fps=fps, drift=gap,
                                first_frame_drift=first, floor=low_floor))
        del low
        gc.collect()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["debug", "small", "paper"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="train step batch sizes")
    parser.add_argument("--train_seq", nargs=2, type=int, default=None, metavar=("TOKENS", "FRAMES"),
                        help="train step text tokens and frames per utterance (default per config; 4 x 5 s: 48 375)")
    parser.add_argument("--no_train", action="store_true", help="skip the train step")
    parser.add_argument("--decode_batches", nargs="*", type=int, default=[1, 8, 32, 64], help="none: no decode rows")
    parser.add_argument("--modes", nargs="+", default=["eager", "fixed", "graph"], choices=list(MODES))
    parser.add_argument("--cpu_compile", action="store_true", help="run the graph mode on CPU (torch.compile)")
    parser.add_argument("--decode_frames", type=int, default=32, help="frames per timed decode")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats (median), train and decode")
    parser.add_argument("--precision", action="store_true", help="int8 (CPU) / bf16 rows with their drift")
    parser.add_argument("--host_profile", action="store_true", help="time outside the model forward (small config)")
    parser.add_argument("--no_recompute", action="store_true", help="skip the KV cache vs recomputation row")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast for the train step")
    parser.add_argument("--json", type=str, default=None, help="also write results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    print("command: " + " ".join([Path(sys.executable).name] + sys.argv))
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if device.type == "cpu" and "graph" in args.modes and not args.cpu_compile:
        args.modes = [m for m in args.modes if m != "graph"]
        print("graph mode skipped on CPU (pass --cpu_compile to torch.compile the step; minutes of C++ build)")
    peak_dtype = torch.bfloat16 if args.amp else torch.float32
    peak = matmul_peak_flops(device, peak_dtype)
    print(f"measured {str(peak_dtype)[6:]} matmul peak: {peak / 1e9:.1f} GFLOP/s")
    results = []
    for config in args.configs:
        if args.train_seq:
            SEQ[config] = tuple(args.train_seq)
        model = build(config, device)
        params = sum(p.numel() for p in model.lm.parameters())
        print(f"\n== {config}: {params / 1e6:.1f} M parameters, text {SEQ[config][0]} + frames {SEQ[config][1]}")
        for batch in [] if args.no_train else args.batches:
            seconds, flops = bench_train(model, config, batch, device, args.amp, args.repeat)
            print(f"train step  batch {batch:2d}: {seconds * 1e3:8.1f} ms   floor {flops / peak * 1e3:8.1f} ms "
                  f"({seconds / (flops / peak):.2f}x)   peak mem {peak_memory_mb(device):.0f} MB")
            results.append(dict(config=config, kind="train", batch=batch, seconds=seconds, floor=flops / peak))
            gc.collect()
        # the decode step vs the bandwidth floor (weights read once per step)
        weight_bytes = step_weight_bytes(model.lm)
        bandwidth = copy_bandwidth(weight_bytes, device)
        floor = weight_bytes / bandwidth
        print(f"decode floor: weights read per step {weight_bytes / 1e6:.0f} MB / copy bandwidth "
              f"{bandwidth / 1e9:.1f} GB/s = {floor * 1e3:.3f} ms")
        results.append(dict(config=config, kind="floor", floor=floor, weight_bytes=weight_bytes, bandwidth=bandwidth))
        frames = args.decode_frames
        for batch in args.decode_batches:
            for cfg_scale in (1.0, 2.0):
                # The modes take turns, `repeat` rounds, each with its own bandwidth measurement:
                # a machine whose speed drifts (a shared host) moves every mode and the floor
                # alike, and the ratio is the median of the per-round ratios.
                steps, ratios = {m: [] for m in args.modes}, {m: [] for m in args.modes}
                outputs = {}
                for _ in range(args.repeat):
                    for mode in args.modes:
                        step, _, outputs[mode] = bench_decode(model, config, batch, cfg_scale, device, frames, mode,
                                                              repeat=1)
                        steps[mode].append(step)
                        ratios[mode].append(step / (weight_bytes / copy_bandwidth(weight_bytes, device)))
                row = []
                first = args.modes[0]  # same noise in every mode, so the same frames up to rounding
                gaps = {m: float((outputs[m].float() - outputs[first].float()).abs().max()) for m in args.modes}
                for mode in args.modes:
                    step, ratio = median(steps[mode]), median(ratios[mode])
                    row.append(f"{mode} {step * 1e3:7.2f} ms {batch / step:8.1f} f/s")
                    results.append(dict(config=config, kind="decode", mode=mode, batch=batch, cfg=cfg_scale, step=step,
                                        fps=batch / step, floor_ratio=ratio, steps=steps[mode], ratios=ratios[mode],
                                        max_abs_diff=gaps[mode]))
                    if batch == 1:
                        row[-1] += f" ({ratio:.2f}x floor)"
                print(f"decode batch {batch:2d} cfg {cfg_scale}: " + " | ".join(row) +
                      f"   peak mem {peak_memory_mb(device):.0f} MB", flush=True)
                for mode in args.modes[1:]:
                    print(f"  {mode} vs {first}: frames differ by at most {gaps[mode]:.2e} over {frames} frames")
        if args.precision:
            bench_precision(model, config, device, frames, floor, args, results)
        if args.host_profile:
            step, inside = host_profile(model, config, device)
            results.append(dict(config=config, kind="host_profile", step=step, model_forward=inside))
        if not args.no_recompute:
            step1, _, _ = bench_decode(model, config, 1, 1.0, device, frames, "fixed", repeat=args.repeat)
            recompute = bench_recompute(model, config, device)
            print(f"KV cache: {step1 * 1e3:.2f} ms/frame vs recomputing the prefix {recompute * 1e3:.2f} ms/frame "
                  f"({recompute / step1:.1f}x speedup at <= {SEQ[config][0] + 34} positions; grows with length)")
            results.append(dict(config=config, kind="recompute", step=step1, recompute=recompute))
        del model
        gc.collect()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
