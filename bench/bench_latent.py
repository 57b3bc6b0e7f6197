"""Latent-space speed on CPU: extraction real-time factor and one-shot vs streaming decode.

    .venv/bin/python bench/bench_latent.py [--threads 2] [--seconds 4] [--repeats 5]

Real 24 kHz Encodec architecture with deterministic random weights (speed does not depend
on the weights). Every number is the best of ``--repeats`` (the machine may be shared), and
each is printed next to a same-run baseline:

- extraction: ours vs Meta's ``encodec`` package (encoder + 8-level RVQ) on the same audio;
  goal >= 5x real time;
- decoding: streaming (chunks of t frames) vs our one-shot decode; goal <= 1.2x per second;
- mel: log-mel encode and Griffin-Lim decode cost per second of audio.
"""

import argparse
import time
from typing import Callable, Dict

import torch


def race(candidates: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Best wall time of each candidate, run round-robin so that load from other processes
    hits all of them alike (the ratios stay meaningful on a shared machine)."""
    for fn in candidates.values():
        fn()  # warm-up (oneDNN primitive creation)
    best = {name: float("inf") for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def stream(decoder_factory, frames: torch.Tensor, chunk: int) -> torch.Tensor:
    decoder = decoder_factory()
    return torch.cat([decoder.push(frames[:, i:i + chunk]) for i in range(0, frames.shape[1], chunk)], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each test utterance")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from encodec import EncodecModel

    from espnet2_sled.latent import EncodecLatent, MelLatent

    rate, seconds = 24000, args.seconds
    ours = EncodecLatent(weights="random")
    reference = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    reference.set_target_bandwidth(6.0)
    generator = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(8, int(seconds * rate), generator=generator)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, utterances of {seconds:g} s, "
          f"best of {args.repeats}")

    print("\n== extraction (audio -> latents [B, T, 128]); x real time = audio seconds / wall seconds")

    def package_encode(x):
        return reference.quantizer.decode(reference.quantizer.encode(reference.encoder(x[:, None]), 75, 6.0))

    with torch.no_grad():
        for batch in (1, 4, 8):
            x = audio[:batch]
            t = race({"ours": lambda: ours.encode(x), "package": lambda: package_encode(x)}, args.repeats)
            speed = batch * seconds / t["ours"]
            print(f"batch {batch}: ours {speed:5.1f}x real time ({t['ours'] / (batch * seconds) * 1000:5.1f} ms per s)"
                  f" | encodec package {batch * seconds / t['package']:5.1f}x | time ours/package "
                  f"{t['ours'] / t['package']:4.2f} | goal >= 5x: {'met' if speed >= 5 else 'MISSED'}")

    print("\n== Encodec decoding (latents -> audio), ms per second of audio; ratio to our one-shot")
    frames = ours.encode(audio[:1])
    candidates = {"one-shot": lambda: ours.decode(frames),
                  "package one-shot": lambda: reference.decoder(frames.transpose(1, 2))}
    for chunk in (1, 3, 8, 20, 45):
        candidates[f"stream t={chunk}"] = lambda chunk=chunk: stream(ours.stream_decoder, frames, chunk)
    with torch.no_grad():
        t = race(candidates, args.repeats)
    for name, value in t.items():
        ratio = value / t["one-shot"]
        goal = f"   goal <= 1.2: {'met' if ratio <= 1.2 else 'MISSED'}" if name.startswith("stream") else ""
        print(f"{name:17s} {value / seconds * 1000:6.1f} ms/s   ratio {ratio:4.2f}{goal}")

    print("\n== mel latent (80 bands, n_fft 1280, 32 Griffin-Lim iterations), ms per second of audio")
    mel = MelLatent()
    mel_frames = mel.encode(audio[:1])
    t = race({"encode": lambda: mel.encode(audio[:1]), "decode": lambda: mel.decode(mel_frames),
              "stream t=3": lambda: stream(mel.stream_decoder, mel_frames, 3),
              "stream t=20": lambda: stream(mel.stream_decoder, mel_frames, 20)}, max(1, args.repeats // 2))
    for name, value in t.items():
        ratio = f"   ratio to one-shot decode {value / t['decode']:4.2f}" if name.startswith("stream") else ""
        print(f"{name:12s} {value / seconds * 1000:6.1f} ms/s{ratio}")
    print(f"(mel streaming is approximate: {mel.stream_context_frames} context frames re-estimated per push)")


if __name__ == "__main__":
    main()
