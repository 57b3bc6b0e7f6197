#!/usr/bin/env python3
"""Load a packed SLED model the way users will, and synthesise one sentence.

    check_pack.py [--text "..."] [--output out.wav] MODEL.zip

Unpacks into a temporary cache (so the check does not depend on files under exp/),
builds ``SLEDText2Speech.from_pretrained(zip)``, decodes, and fails unless the result
is non-empty finite audio.
"""

import argparse
import sys
import tempfile

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_zip")
    parser.add_argument("--text", default="The quick brown fox jumps over the lazy dog.")
    parser.add_argument("--output", default=None)
    parser.add_argument("--max_frames", type=int, default=600)
    args = parser.parse_args()

    from espnet2_sled.bin.sled_inference import SLEDText2Speech

    with tempfile.TemporaryDirectory() as cache:
        tts = SLEDText2Speech.from_pretrained(args.model_zip, cachedir=cache, max_frames=args.max_frames)
        out = tts(args.text)
    wav = out["wav"].float().cpu().numpy() if "wav" in out else np.zeros(0)
    if wav.size == 0 or not np.isfinite(wav).all():
        sys.exit(f"check_pack: {args.model_zip} produced no usable audio for {args.text!r}")
    if args.output:
        from espnet2_sled.fileio import write_wav

        write_wav(args.output, wav, tts.fs)  # 16-bit, peaks limited to 0.99
    print(f"check_pack: {args.model_zip}: {len(wav) / tts.fs:.2f} s of audio at {tts.fs} Hz"
          + (f" -> {args.output}" if args.output else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
