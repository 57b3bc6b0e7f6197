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
from typing import Callable

import torch


def best_of(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
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
    with torch.no_grad():
        for batch in (1, 4, 8):
            x = audio[:batch]
            t_ours = best_of(lambda: ours.encode(x), args.repeats)
            t_ref = best_of(lambda: reference.quantizer.decode(
                reference.quantizer.encode(reference.encoder(x[:, None]), 75, 6.0)), args.repeats)
            speed = batch * seconds / t_ours
            print(f"batch {batch}: ours {speed:6.1f}x real time ({t_ours / (batch * seconds) * 1000:6.1f} ms per s)"
                  f" | encodec package {batch * seconds / t_ref:6.1f}x | ours/package time {t_ours / t_ref:5.2f}"
                  f" | goal >= 5x: {'met' if speed >= 5 else 'MISSED'}")

    print("\n== Encodec decoding (latents -> audio), ms per second of audio")
    frames = ours.encode(audio[:1])
    t_one = best_of(lambda: ours.decode(frames), args.repeats)
    with torch.no_grad():
        t_pkg = best_of(lambda: reference.decoder(frames.transpose(1, 2)), args.repeats)
    print(f"one-shot: {t_one / seconds * 1000:6.1f} ms/s   (encodec package decoder {t_pkg / seconds * 1000:6.1f}"
          f" ms/s, ratio {t_one / t_pkg:4.2f})")
    for chunk in (1, 3, 8, 15, 45):
        t_stream = best_of(lambda: stream(ours.stream_decoder, frames, chunk), args.repeats)
        ratio = t_stream / t_one
        print(f"stream t={chunk:2d}: {t_stream / seconds * 1000:6.1f} ms/s   ratio to one-shot {ratio:4.2f}"
              f"   goal <= 1.2: {'met' if ratio <= 1.2 else 'MISSED'}")

    print("\n== mel latent (80 bands, n_fft 1280, 32 Griffin-Lim iterations), ms per second of audio")
    mel = MelLatent()
    t_enc = best_of(lambda: mel.encode(audio[:1]), args.repeats)
    mel_frames = mel.encode(audio[:1])
    t_dec = best_of(lambda: mel.decode(mel_frames), args.repeats)
    print(f"encode {t_enc / seconds * 1000:6.1f} ms/s   Griffin-Lim decode {t_dec / seconds * 1000:6.1f} ms/s")
    for chunk in (3, 15):
        t_stream = best_of(lambda: stream(mel.stream_decoder, mel_frames, chunk), max(1, args.repeats // 2))
        print(f"stream t={chunk:2d}: {t_stream / seconds * 1000:6.1f} ms/s   ratio to one-shot {t_stream / t_dec:5.2f}"
              f"   (approximate streaming: {mel.stream_context_frames} context frames re-estimated per push)")


if __name__ == "__main__":
    main()
