#!/usr/bin/env python3
"""The graph-captured decode step gives the eager step's frames and stop steps, on this device.

    python bench/decode_equality.py [--configs debug paper] [--device cuda] [--graph true|aot_eager]

For a padded batch (offline, with stops), a voice prompt and a streaming session it decodes
with the eager variable-shape step (``fixed_shape=False``), the fixed-shape step and its
graph (a CUDA graph on CUDA; on CPU ``--graph aot_eager`` compiles quickly, ``true`` uses
inductor), at the same noise, and prints the max frame difference and whether the stop
steps agree. Exits 1 on a mismatch (frames beyond --tolerance or a different stop step).
The CPU tests (tests/modules/test_fixed_shape_step.py) check the same on the debug config.
"""

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_sled import build  # noqa: E402
from espnet2_sled.modules.generation import generate  # noqa: E402
from espnet2_sled.streaming import StreamingSession  # noqa: E402


def modes(graph):
    return {"eager": dict(fixed_shape=False, decode_graph=False), "fixed": dict(fixed_shape=True, decode_graph=False),
            "graph": dict(fixed_shape=True, decode_graph=graph)}


@torch.no_grad()
def offline(model, device, graph, prompt_frames=0, frames=80):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([12, 5, 9, 3])
    text = torch.randint(1, model.idim - 1, (4, 12), generator=g)
    wrapped, wl = model.wrap_text(text.to(device), lengths.to(device))
    prompt = torch.randn(4, prompt_frames, model.odim, generator=g).to(device) if prompt_frames else None
    noise = torch.randn(4, frames, model.lm.noise_dim, generator=g).to(device)
    # a threshold between the rows' highest stop probabilities: some rows stop, others run on
    probe = generate(model.lm, wrapped, wl, model.eos_id, prompt=prompt, stop_threshold=2.0, max_frames=frames,
                     noise=noise)
    threshold = float(probe.stop_probs.max(1).values.mean())
    out = {}
    for name, kw in modes(graph).items():
        gen = generate(model.lm, wrapped, wl, model.eos_id, prompt=prompt, stop_threshold=threshold,
                       max_frames=frames, noise=noise, **kw)
        out[name] = (gen.frames, gen.lengths)
    return out


@torch.no_grad()
def streaming(model, device, graph, frames=60):
    model.layout, model.tokens_per_chunk, model.frames_per_chunk = "packed", 5, 15
    noise = torch.randn(1, frames, model.lm.noise_dim, generator=torch.Generator().manual_seed(1)).to(device)
    text = "a streaming session reads five tokens and writes fifteen frames at a time "

    def tokenize(t):
        return [(ord(c) % (model.idim - 3)) + 1 for c in t]
    out = {}
    for name, kw in modes(graph).items():
        session = StreamingSession(model, tokenize, stop_threshold=2.0, max_frames=frames, noise=noise,
                                   decode_audio=False, **kw)
        chunks = list(session.push_text(text)) + list(session.end_text())
        out[name] = (torch.cat([c.frames for c in chunks]), torch.tensor([len(chunks)]))
    model.layout = "offline"
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["debug", "paper"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--graph", default="true", help="true, or a torch.compile backend name on CPU (aot_eager)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs frame difference (fp32)")
    args = parser.parse_args()
    device = torch.device(args.device)
    graph = True if args.graph == "true" else args.graph
    print("command: " + " ".join([Path(sys.executable).name] + sys.argv))
    print(f"device {device}, torch {torch.__version__}")
    failed = False
    for config in args.configs:
        model = build(config, device).eval()
        cases = (("padded batch", offline, {}), ("voice prompt", offline, dict(prompt_frames=7)),
                 ("streaming", streaming, {}))
        for case, decode, options in cases:
            out = decode(model, device, graph, **options)
            ref_frames, ref_lengths = out["eager"]
            for name in ("fixed", "graph"):
                frames, lengths = out[name]
                same_stops = torch.equal(lengths.cpu(), ref_lengths.cpu()) and frames.shape == ref_frames.shape
                diff = float((frames - ref_frames).abs().max()) if frames.shape == ref_frames.shape else float("inf")
                ok = same_stops and diff <= args.tolerance
                failed |= not ok
                print(f"{config:6s} {case:13s} {name:5s} vs eager: max |frame diff| {diff:.2e}, stop steps "
                      f"{'same' if same_stops else 'DIFFERENT'} {ref_lengths.tolist()}  {'ok' if ok else 'MISMATCH'}",
                      flush=True)
        del model
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
