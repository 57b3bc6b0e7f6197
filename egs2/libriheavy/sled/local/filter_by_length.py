#!/usr/bin/env python3
"""Drop utterances whose text tokens + latent frames exceed the model's position limit.

    filter_by_length.py --max_positions 2048 --extra_positions 2 \
        [--append_vocab_size V] TEXT_SHAPE SPEECH_SHAPE OUT_TEXT_SHAPE OUT_SPEECH_SHAPE

Shape files are ESPnet ``key dim1,dim2,...`` lines (collect_stats writes them); the
first number is the length. An utterance is kept iff
``text_len + frames + extra_positions <= max_positions`` (extra covers special tokens
such as the boundary/stop positions the layout adds), neither length is 0, and it appears
in both files. Stage 4 runs it twice: before collecting stats, on token counts
(local/count_tokens.py) and the latents' speech_shape, so that collect_stats never meets
an utterance it would refuse; and after, on the collected shapes.
Outputs keep the input order and are written under temp names, then renamed.
"""

import argparse
import os
import sys


def read_shape(path, tool="filter_by_length"):
    """ESPnet shape file ``key dims`` -> {key: (first dim, the line)}; a bad line exits naming ``tool``."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2:
                sys.exit(f"{tool}: {path}:{lineno}: expected 'key dims', got {line.rstrip()!r}")
            table[parts[0]] = (int(parts[1].split(",")[0]), line)
    return table


def write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_positions", type=int, required=True)
    parser.add_argument("--extra_positions", type=int, default=2)
    parser.add_argument("--append_vocab_size", type=int, default=None,
                        help="append ',N' to each text shape (ESPnet's numel batching reads it)")
    parser.add_argument("text_shape")
    parser.add_argument("speech_shape")
    parser.add_argument("out_text_shape")
    parser.add_argument("out_speech_shape")
    args = parser.parse_args()

    text = read_shape(args.text_shape)
    speech = read_shape(args.speech_shape)
    kept, too_long, unpaired, empty = [], 0, 0, 0
    for key in text:
        if key not in speech:
            unpaired += 1
            continue
        if text[key][0] == 0 or speech[key][0] == 0:
            empty += 1
            continue
        if text[key][0] + speech[key][0] + args.extra_positions > args.max_positions:
            too_long += 1
            continue
        kept.append(key)
    unpaired += sum(1 for k in speech if k not in text)
    if not kept:
        sys.exit(f"filter_by_length: no utterance of {args.text_shape} fits in "
                 f"{args.max_positions} positions")
    text_lines = [text[k][1] for k in kept]
    if args.append_vocab_size is not None:
        text_lines = [f"{line.rstrip()},{args.append_vocab_size}\n" for line in text_lines]
    write(args.out_text_shape, text_lines)
    write(args.out_speech_shape, [speech[k][1] for k in kept])
    print(f"filter_by_length: kept {len(kept)} of {len(text)} utterances; dropped {too_long} "
          f"longer than {args.max_positions} positions (text tokens + frames + "
          f"{args.extra_positions}), {empty} with no text tokens or no frames and {unpaired} "
          "without both text and latents",
          file=sys.stderr)


if __name__ == "__main__":
    main()
