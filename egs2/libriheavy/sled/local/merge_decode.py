#!/usr/bin/env python3
"""Merge decoding jobs DIR/logdir/output.{1..N} into DIR/{wav/, wav.scp, timing.jsonl}.

    merge_decode.py --nj N [--keys KEY_FILE] DIR

Wavs are moved into DIR/wav; wav.scp (absolute paths, sorted) and timing.jsonl are
written under temp names and renamed. Keys of KEY_FILE without a wav (the model stopped
before its first frame) are listed in DIR/missing_wavs, so scoring can count them as
failures. DIR/.done is written last: its presence marks a complete decode. If the jobs
wrote norm/feats.scp, it is merged into DIR/feats.scp too.
"""

import argparse
import os
import sys
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nj", type=int, required=True)
    parser.add_argument("--keys", type=Path, default=None, help="the keys that were decoded")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()

    wav_dir = args.out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    timing, feats = [], []
    for job in range(1, args.nj + 1):
        part = args.out_dir / "logdir" / f"output.{job}"
        if not part.is_dir():
            sys.exit(f"merge_decode: {part} is missing (see {args.out_dir}/logdir/inference.{job}.log)")
        for w in sorted((part / "wav").glob("*.wav")):
            os.replace(w, wav_dir / w.name)
        if (part / "timing.jsonl").exists():
            timing += [line for line in (part / "timing.jsonl").read_text().splitlines() if line.strip()]
        if (part / "norm" / "feats.scp").exists():
            feats += (part / "norm" / "feats.scp").read_text().splitlines()

    wavs = sorted(wav_dir.glob("*.wav"), key=lambda p: p.stem.encode())
    if not wavs:
        sys.exit(f"merge_decode: no wavs were produced under {args.out_dir}/logdir/output.*")

    def write(name, lines):
        tmp = args.out_dir / (name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, args.out_dir / name)

    if timing:
        write("timing.jsonl", timing)
    if feats:
        write("feats.scp", sorted(feats, key=lambda s: s.split()[0].encode()))
    write("wav.scp", [f"{w.stem} {w.resolve()}" for w in wavs])
    missing = []
    if args.keys is not None:
        have = {w.stem for w in wavs}
        missing = [line.split()[0] for line in args.keys.read_text().splitlines()
                   if line.strip() and line.split()[0] not in have]
    write("missing_wavs", missing)
    write(".done", [f"{len(wavs)} wavs, {len(missing)} missing"])
    print(f"merge_decode: {len(wavs)} wavs in {wav_dir}"
          + (f"; {len(missing)} utterances produced no audio (listed in {args.out_dir}/missing_wavs)"
             if missing else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
