#!/usr/bin/env python3
"""Train a sentencepiece model on Kaldi ``text`` files and write an ESPnet token list.

    train_bpe.py --vocab_size 256 --model_type unigram OUT_DIR data/train/text [...]

Writes OUT_DIR/bpe.model and OUT_DIR/tokens.txt (one token per line, the line number is
the id): ``<blank>``, ``<unk>``, the model's pieces without its control symbols,
``<sos/eos>`` last, which is what ESPnet's ``--token_type bpe`` expects. Text is cleaned
with ``--cleaner`` (the same ESPnet cleaner training and decoding use; default
``sled_english``: numbers, currency and % in words, control characters removed) and
otherwise kept cased and punctuated. Both files are written under temp names and renamed.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("texts", type=Path, nargs="+", help="Kaldi text files (utt-id text)")
    parser.add_argument("--vocab_size", type=int, default=256)
    parser.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char"])
    parser.add_argument("--character_coverage", type=float, default=1.0)
    parser.add_argument("--input_sentence_size", type=int, default=10_000_000)
    parser.add_argument("--cleaner", default="sled_english", help="ESPnet text cleaner (none: text as is)")
    args = parser.parse_args()
    from clean_text import load_text_frontend  # local/, next to this script

    clean = load_text_frontend().build_cleaner(args.cleaner)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out_dir) as work:
        corpus = Path(work) / "text"
        n = 0
        with open(corpus, "w", encoding="utf-8") as out:
            for path in args.texts:
                with open(path, encoding="utf-8") as f:
                    for lineno, line in enumerate(f, 1):
                        parts = line.rstrip("\n").split(maxsplit=1)
                        if len(parts) < 2 or not parts[1].strip():
                            sys.exit(f"train_bpe: {path}:{lineno}: text is empty for utterance "
                                     f"'{parts[0] if parts else ''}'")
                        out.write(clean(parts[1]) + "\n")
                        n += 1
        prefix = Path(work) / "bpe"
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(prefix), vocab_size=args.vocab_size,
            model_type=args.model_type, character_coverage=args.character_coverage,
            input_sentence_size=args.input_sentence_size, shuffle_input_sentence=True,
            hard_vocab_limit=False, minloglevel=2,
        )
        sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
        pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                  if not (sp.is_control(i) or sp.is_unknown(i))]
        tokens = ["<blank>", "<unk>", *pieces, "<sos/eos>"]
        tokens_tmp = Path(work) / "tokens.txt"
        tokens_tmp.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        os.replace(str(prefix) + ".model", args.out_dir / "bpe.model")
        os.replace(tokens_tmp, args.out_dir / "tokens.txt")
    print(f"train_bpe: {n} sentences -> {args.out_dir}/bpe.model, tokens.txt ({len(tokens)} tokens)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
