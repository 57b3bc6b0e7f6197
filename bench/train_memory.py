#!/usr/bin/env python3
"""Peak memory (RSS) of SLED training steps, by phase: forward, backward, optimizer step.

    .venv/bin/python bench/train_memory.py [--config paper] [--batch 4] [--tokens 48] [--frames 375]

Runs ``--steps`` fp32 CPU training steps in the order of ``bench_sled.py``'s train step
(forward, zero_grad, backward, AdamW step) at the same noise and dropout seeds, with glibc's
mmap threshold fixed as ``sled_train`` fixes it (``--mmap_threshold 0``: glibc's default),
sampling the process RSS every 5 ms, and prints each step's loss (identical across code
versions that do not change the math) and the peak RSS of each phase. Memory is not
distorted by a busy machine; the step times printed are.
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from sled_import import make_importable  # noqa: E402

make_importable()
from espnet2_sled.memory import return_large_frees_to_os  # noqa: E402
from espnet2_sled.tts.sled import SLED  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48, help="text tokens per utterance")
    parser.add_argument("--frames", type=int, default=375, help="latent frames per utterance (375 = 5 s at 75 Hz)")
    parser.add_argument("--steps", type=int, default=2, help="the peak comes in step 2 (AdamW states exist)")
    parser.add_argument("--mmap_threshold", type=int, default=1 << 20,
                        help="as sled_train (espnet2_sled/memory.py); 0: glibc's default dynamic threshold")
    args = parser.parse_args()
    print("command: " + " ".join([Path(sys.executable).name] + sys.argv))
    if args.mmap_threshold:
        fixed = return_large_frees_to_os(args.mmap_threshold)
        print(f"glibc mmap threshold fixed at {args.mmap_threshold} bytes: {fixed}")
    conf = yaml.safe_load((REPO / "conf" / f"{args.config}.yaml").read_text())
    tts_conf = conf["tts_conf"]
    tts_conf.pop("latent", None), tts_conf.pop("latent_conf", None)
    B, N, T = args.batch, args.tokens, args.frames
    torch.manual_seed(0)
    model = SLED(idim=16384, odim=conf.get("odim", 128), **tts_conf).train()
    g = torch.Generator().manual_seed(1)
    text = torch.randint(1, 16000, (B, N), generator=g)
    feats = torch.randn(B, T, model.odim, generator=g)
    lengths = (torch.full((B,), N), torch.full((B,), T))
    noise = torch.randn(tts_conf.get("energy_samples", 2), B * T, model.lm.noise_dim, generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    page = os.sysconf("SC_PAGE_SIZE")
    phase, peaks = ["setup"], {}

    def sample():
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**30
            peaks[phase[0]] = max(peaks.get(phase[0], 0.0), rss)
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
    print(f"{args.config}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, batch {B} x "
          f"({N} tokens + {T} frames), fp32, {torch.get_num_threads()} threads")
    for step in range(args.steps):
        torch.manual_seed(10 + step)  # dropout masks
        start = time.perf_counter()
        phase[0] = f"step {step + 1} forward"
        loss, _, _ = model(text, lengths[0], feats, lengths[1], text_dropout=torch.zeros(B, dtype=torch.bool),
                           noise=noise)
        phase[0] = f"step {step + 1} backward"
        opt.zero_grad()
        loss.backward()
        phase[0] = f"step {step + 1} optimizer"
        opt.step()
        seconds = time.perf_counter() - start
        time.sleep(0.05)
        phase[0] = "between steps"
        time.sleep(0.05)
        step_peaks = {k.split(" ", 2)[2]: v for k, v in peaks.items() if k.startswith(f"step {step + 1} ")}
        print(f"step {step + 1}: loss {loss.item():.10f}  ({seconds:.1f} s)  peak RSS GiB: "
              + ", ".join(f"{k} {v:.2f}" for k, v in step_peaks.items()), flush=True)
    print(f"peak RSS over the run: {max(peaks.values()):.2f} GiB = {max(peaks.values()) * 2**30 / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
