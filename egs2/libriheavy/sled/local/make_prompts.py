#!/usr/bin/env python3
"""Voice prompts for decoding a test set in clone or continuation mode.

    make_prompts.py --mode clone|continuation [--seconds 3] DATA_DIR OUT_DIR

clone: the prompt of utterance u is another utterance of the same speaker (the next one
  in sorted order, cyclically), so the prompt never contains the target text. Its leading
  and trailing silence is trimmed (--trim_db below the peak, --trim_margin kept): a model
  only ever saw a long silence right before an utterance ends, so a prompt ending in one
  invites it to stop at once. Speakers with a single utterance have no prompt and are
  left out (counted).
continuation: the prompt is the first SECONDS of u itself; the model continues it with
  the rest of u's transcript. Utterances shorter than SECONDS + 0.5 s are left out.

Writes OUT_DIR/wav/<utt>.wav (the prompt audio, mono, the data's sample rate),
OUT_DIR/prompt_wav.scp (utt -> that wav), OUT_DIR/prompt_text (utt -> the prompt's
transcript; for continuation the whole transcript of u) and OUT_DIR/prompt_utt
(utt -> the utterance the prompt was cut from). Files are written to temp names first.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from espnet2_sled.fileio import read_audio_table, read_table


def cut(path, start, end, max_seconds=None):
    info = sf.info(path)
    first = int(round(start * info.samplerate))
    last = info.frames if end is None else int(round(end * info.samplerate))
    if max_seconds is not None:
        last = min(last, first + int(round(max_seconds * info.samplerate)))
    audio, rate = sf.read(path, start=first, stop=last, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def trim_silence(audio, rate, below_db=40.0, margin=0.05):
    """Cut leading/trailing 10-ms frames quieter than ``below_db`` under the loudest one,
    keeping ``margin`` seconds; audio that is all quiet is returned as is."""
    hop = max(1, int(rate * 0.01))
    frames = len(audio) // hop
    if frames == 0:
        return audio
    power = (audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    loud = np.nonzero(power > power.max() * 10 ** (-below_db / 10))[0]
    if power.max() <= 0 or len(loud) == 0:
        return audio
    keep = int(round(margin * rate))
    return audio[max(0, loud[0] * hop - keep): min(len(audio), (loud[-1] + 1) * hop + keep)]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["clone", "continuation"], required=True)
    parser.add_argument("--seconds", type=float, default=3.0, help="continuation: prompt length")
    parser.add_argument("--trim_db", type=float, default=40.0,
                        help="clone: trim edge silence this many dB below the peak (0: no trimming)")
    parser.add_argument("--trim_margin", type=float, default=0.05, help="clone: seconds kept around the speech")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()

    text = read_table(args.data_dir / "text")
    utt2spk = read_table(args.data_dir / "utt2spk")
    has_segments = (args.data_dir / "segments").exists()
    segments = read_audio_table(args.data_dir / "wav.scp", args.data_dir / "segments" if has_segments else None)

    by_speaker = {}
    for utt in sorted(utt2spk):
        by_speaker.setdefault(utt2spk[utt], []).append(utt)

    (args.out_dir / "wav").mkdir(parents=True, exist_ok=True)
    rows, skipped = [], 0
    for utt in sorted(text):
        if args.mode == "clone":
            same = by_speaker[utt2spk[utt]]
            if len(same) < 2:
                skipped += 1
                continue
            source = same[(same.index(utt) + 1) % len(same)]
            audio, rate = cut(*segments[source])
            if args.trim_db > 0:
                audio = trim_silence(audio, rate, args.trim_db, args.trim_margin)
        else:
            source = utt
            path, start, end = segments[utt]
            duration = (sf.info(path).duration if end is None else end) - start
            if duration < args.seconds + 0.5:
                skipped += 1
                continue
            audio, rate = cut(path, start, end, max_seconds=args.seconds)
        dest = (args.out_dir / "wav" / f"{utt}.wav").resolve()
        sf.write(dest, audio, rate, subtype="PCM_16")
        rows.append((utt, str(dest), text[source], source))
    if not rows:
        sys.exit(f"make_prompts: no utterance of {args.data_dir} can get a {args.mode} prompt"
                 + (f" (all are shorter than {args.seconds} + 0.5 s; use a shorter --seconds)"
                    if args.mode == "continuation" else " (no speaker has two utterances)"))

    for name, column in (("prompt_wav.scp", 1), ("prompt_text", 2), ("prompt_utt", 3)):
        tmp = args.out_dir / (name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(f"{row[0]} {row[column]}\n")
        os.replace(tmp, args.out_dir / name)
    print(f"make_prompts: {args.mode}: {len(rows)} prompts in {args.out_dir}"
          + (f"; {skipped} utterances left out" if skipped else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
