#!/usr/bin/env python3
"""Count each utterance's text tokens with the tokenizer training uses (ESPnet's preprocessor).

    count_tokens.py --token_type bpe --token_list tokens.txt --bpemodel bpe.model \
        [--g2p none] [--cleaner none] TEXT OUT [TEXT OUT ...]

Each TEXT is a Kaldi ``text`` file (``utt words...``; a line with only a key is an empty
text); its OUT gets ``utt N`` lines (ESPnet shape-file format, N tokens without the sentence markers),
written under a temp name and renamed. Stage 4 uses it to drop utterances over the position
limit *before* collecting stats (local/filter_by_length.py), because collect_stats, like
training, refuses them.
"""

import argparse
import os
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token_type", required=True)
    parser.add_argument("--token_list", required=True)
    parser.add_argument("--bpemodel", default=None)
    parser.add_argument("--g2p", default=None)
    parser.add_argument("--cleaner", default=None)
    parser.add_argument("text_and_out", nargs="+", metavar="TEXT OUT")
    args = parser.parse_args()
    if len(args.text_and_out) % 2:
        parser.error("give TEXT OUT pairs")
    none = {"none", "None", ""}

    # espnet2_sled first: it defers g2p_en, whose import calls nltk.download (no_downloads.py)
    import espnet2_sled.registry  # noqa: F401, I001  (token_type byte_bpe, cleaner sled_english)
    from espnet2.train.preprocessor import CommonPreprocessor

    preprocess = CommonPreprocessor(
        train=False, token_type=args.token_type, token_list=args.token_list,
        bpemodel=None if args.bpemodel in none else args.bpemodel,
        text_cleaner=None if args.cleaner in none else args.cleaner,
        g2p_type=None if args.g2p in none else args.g2p,
    )
    pairs = args.text_and_out
    for text_file, out_file in zip(pairs[::2], pairs[1::2]):
        count = 0
        with open(text_file, encoding="utf-8") as f, open(out_file + ".tmp", "w", encoding="utf-8") as out:
            for line in f:
                parts = line.rstrip("\n").split(maxsplit=1)
                if not parts:
                    continue
                key, text = parts[0], (parts[1] if len(parts) > 1 else "")
                tokens = preprocess(key, {"text": text})["text"] if text.strip() else []
                out.write(f"{key} {len(tokens)}\n")
                count += 1
        os.replace(out_file + ".tmp", out_file)
        print(f"count_tokens: {count} utterances of {text_file} -> {out_file}", file=sys.stderr)


if __name__ == "__main__":
    main()
