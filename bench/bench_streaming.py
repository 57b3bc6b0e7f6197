#!/usr/bin/env python3
"""Streaming SLED: time to first audio and steady-state RTF, beside the per-frame floor.

    .venv/bin/python bench/bench_streaming.py [--configs debug paper] [--cfg_scale 2.0] [--device cuda]
        [--modes eager fixed graph]

For each config (streaming layout, frames_per_chunk from the config or --frames_per_chunk)
and each decode-step mode (eager = variable-shape step, fixed = fixed-shape step, graph =
its CUDA graph; on CPU only with --cpu_compile, as in bench_sled.py) it measures in the
same run:
* step   = one decode step (CFG included) from ``generate``;
* decode = one chunk through the latent space's streaming decoder;
* first  = session start -> first audio chunk, text pushed whole (the graph mode's first
  chunk includes capturing its graphs: that is what a new session pays);
and prints first / (frames_per_chunk * step + decode) (goal <= 1.2) and the RTF of the
chunks after the first (compute seconds per second of audio). On a GPU every time includes
the audio's copy to the host (what a player needs).
"""

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_sled import MODES, build, median, sync  # noqa: E402
from espnet2_sled.engine.session import use_decode_backend  # noqa: E402
from espnet2_sled.latent import build_latent_space  # noqa: E402
from espnet2_sled.modules.generation import generate  # noqa: E402
from espnet2_sled.streaming import StreamingSession  # noqa: E402

TEXT = ("Streaming speech synthesis starts talking before the whole sentence has arrived, "
        "which matters when the text comes from a language model one word at a time.")


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["debug", "paper"])
    parser.add_argument("--cfg_scale", type=float, default=2.0)
    parser.add_argument("--frames_per_chunk", type=int, default=45)
    parser.add_argument("--tokens_per_chunk", type=int, default=5)
    parser.add_argument("--chunks", type=int, default=4, help="chunks to generate per run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--modes", nargs="+", default=["eager", "fixed", "graph"], choices=list(MODES))
    parser.add_argument("--cpu_compile", action="store_true", help="run the graph mode on CPU (torch.compile)")
    parser.add_argument("--trials", type=int, default=3, help="sessions per mode (median)")
    parser.add_argument("--decode_backend", default="torch", choices=["torch", "onnxruntime"],
                        help="onnxruntime: the fixed mode's step through the CPU decode engine (exported first)")
    parser.add_argument("--quantize", default="none", choices=["none", "int8", "int4"])
    args = parser.parse_args()
    device = torch.device(args.device)
    print("command: " + " ".join([Path(sys.executable).name] + sys.argv))
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, cfg_scale {args.cfg_scale}")
    if device.type == "cpu" and "graph" in args.modes and not args.cpu_compile:
        args.modes = [m for m in args.modes if m != "graph"]
        print("graph mode skipped on CPU (pass --cpu_compile to torch.compile the step; minutes of C++ build)")
    for config in args.configs:
        model = build(config, device).eval()
        config = model.config
        config.layout = "packed"
        config.tokens_per_chunk, config.frames_per_chunk = args.tokens_per_chunk, args.frames_per_chunk
        if model.odim == 128:
            model.latent_space = build_latent_space("encodec", weights="random").to(device).eval()
        else:
            model.latent_space = build_latent_space("mel", n_mels=model.odim).to(device).eval()
        m = args.frames_per_chunk
        tokens = [(ord(c) % (model.idim - 3)) + 1 for c in TEXT]

        def tokenize(text):
            return [(ord(c) % (model.idim - 3)) + 1 for c in text]

        engine = use_decode_backend(model.lm, args.decode_backend, args.quantize)
        if engine is not None:  # exported / loaded once per model, before any session (a server's start)
            engine.prepare(cfg=args.cfg_scale != 1)
            print(f"decode backend: onnxruntime, quantize {args.quantize}")
        params = sum(p.numel() for p in model.lm.parameters()) / 1e6
        print(f"\n== {config} ({params:.1f} M params, {m} frames = {m / 75:.2f} s per chunk, "
              f"{args.tokens_per_chunk} tokens read per chunk)")
        # one chunk through the streaming decoder
        chunk = torch.randn(1, m, model.odim, device=device)
        decoder = model.latent_space.stream_decoder(1)
        decoder.push(chunk)
        decode = median([_timed(lambda: decoder.push(chunk).cpu()) for _ in range(3)])
        print(f"chunk decode {decode * 1e3:.1f} ms")
        wrapped, wl = model.wrap_text(torch.tensor([tokens[:20]], device=device), torch.tensor([20], device=device))
        frames = 2 * m
        for mode in args.modes:
            # per-frame step (same decoding state and step as the session)
            def run_generate(n):
                start = time.perf_counter()
                generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=args.cfg_scale, stop_threshold=2.0,
                         max_frames=n, **MODES[mode])
                sync(device)
                return time.perf_counter() - start

            run_generate(4)
            many, one = median([run_generate(frames) for _ in range(3)]), median([run_generate(1) for _ in range(3)])
            step = (many - one) / (frames - 1)
            # the session
            firsts, rtfs = [], []
            for trial in range(args.trials):
                session = StreamingSession(model, tokenize, cfg_scale=args.cfg_scale, stop_threshold=2.0,
                                           max_frames=args.chunks * m, noise=torch.Generator(device).manual_seed(trial),
                                           **MODES[mode])
                start = time.perf_counter()
                chunks = []
                for c in session.push_text(TEXT):
                    c.audio.cpu()  # the player's copy (waits for the GPU)
                    chunks.append(c)
                    if len(chunks) == 1:
                        firsts.append(time.perf_counter() - start)
                    if len(chunks) == args.chunks:
                        break
                audio_seconds = sum(c.audio.shape[0] for c in chunks[1:]) / model.latent_space.sample_rate
                rtfs.append(sum(c.compute_seconds for c in chunks[1:]) / audio_seconds)
                session.close()
            first = median(firsts)
            budget = m * step + decode
            print(f"[{mode}] decode step {step * 1e3:.2f} ms (floor of the schedule); "
                  f"time to first audio {first:.3f} s "
                  f"vs {m} x step + decode = {budget:.3f} s -> {first / budget:.2f}x (goal <= 1.2); steady-state RTF "
                  f"{median(rtfs):.3f} (compute s per audio s; floor {budget / (m / 75):.3f})", flush=True)


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
