#!/usr/bin/env python3
"""Did training teach the model anything? Trained vs untrained (same config, random init).

* held-out energy distance: the teacher-forced loss on a test set (fixed noise, no CFG
  dropout), per frame; lower is better;
* whether the text's content is used: the same loss when every utterance is given another
  test utterance's text (and with the text dropped, as for CFG). A model that has learned
  to read beats its own score with the wrong text; one that only learned what speech
  sounds like scores the same with any text;
* WER: the untrained model decodes the same utterances as stage 7's offline decoding, and
  both are scored with the same pocketsphinx setup.

Writes ``<out>/learning.md`` and ``learning.json``; exits 1 when the trained model does not
beat the untrained one on held-out energy distance (``--require_wer true`` adds WER).

    local/check_learning.py --exp exp/sled_x --model valid.loss.best.pth --data data/mini_test \
        --latents dump/latents/mini_test/feats.scp --decode_dir exp/sled_x/decode_offline_.../mini_test
"""

import argparse
import json
import sys
from pathlib import Path

import kaldiio
import torch

from espnet2_sled.bin import score as scoring
from espnet2_sled.fileio import write_wav
from espnet2_sled.text2speech import SLEDText2Speech
from espnet2_sled.tts.heldout import heldout_energy_distance as tts_heldout


def heldout_energy_distance(t2s: SLEDText2Speech, texts, latents, keys, seed: int = 0, text_of=None,
                            drop_text: bool = False) -> float:
    """Per-frame teacher-forced energy distance over ``keys``; utterance k is read with the
    text of ``text_of[k]`` (default: its own) or with no text (``drop_text``)."""
    items = ((t2s.tokenize(texts[(text_of or {}).get(key, key)]), torch.tensor(latents[key])) for key in keys)
    return tts_heldout(t2s.tts, items, seed, drop_text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--model", default="valid.loss.best.pth")
    parser.add_argument("--data", type=Path, required=True, help="test data dir (text)")
    parser.add_argument("--latents", type=Path, required=True, help="test latents feats.scp")
    parser.add_argument("--decode_dir", type=Path, required=True, help="stage 7 offline decode dir of this set")
    parser.add_argument("--out", type=Path, default=None, help="default: <exp>/learning")
    parser.add_argument("--max_frames", type=int, default=300)
    parser.add_argument("--require_wer", default="false", choices=["true", "false"])
    args = parser.parse_args()
    out = args.out or args.exp / "learning"
    (out / "untrained_wav").mkdir(parents=True, exist_ok=True)

    texts = scoring.read_table(args.data / "text")
    latents = kaldiio.load_scp(str(args.latents))
    decoded = scoring.read_table(args.decode_dir / "wav.scp")
    keys = sorted(decoded)
    trained = SLEDText2Speech(args.exp / "config.yaml", args.exp / args.model, max_frames=args.max_frames)
    torch.manual_seed(0)
    untrained = SLEDText2Speech(args.exp / "config.yaml", None, max_frames=args.max_frames)

    ed = {name: heldout_energy_distance(t2s, texts, latents, sorted(texts))
          for name, t2s in (("trained", trained), ("untrained", untrained))}
    ordered = sorted(texts)
    shift = max(1, len(ordered) // 2)  # another sentence (the test set is split by sentence)
    other = {k: ordered[(i + shift) % len(ordered)] for i, k in enumerate(ordered)}
    ed_other = heldout_energy_distance(trained, texts, latents, ordered, text_of=other)
    ed_none = heldout_energy_distance(trained, texts, latents, ordered, drop_text=True)

    untrained_wavs = {}
    for i, key in enumerate(keys):
        result = untrained(texts[key], seed=i)
        path = out / "untrained_wav" / f"{key}.wav"
        write_wav(path, result["wav"].numpy(), untrained.fs)  # peak-limited, as the decoding CLI writes
        untrained_wavs[key] = (str(path), 0.0, None)
    trained_wavs = {k: (decoded[k], 0.0, None) for k in keys}
    wer = {}
    for name, wavs in (("trained", trained_wavs), ("untrained", untrained_wavs)):
        summary, _ = scoring.score(wavs, texts, metrics=("wer",), progress=False)
        wer[name] = summary["wer"]["value"]

    report = dict(heldout_energy_distance=ed, wer=wer, utterances_ed=len(texts), utterances_wer=len(keys),
                  trained_energy_distance_other_text=ed_other, trained_energy_distance_no_text=ed_none)
    (out / "learning.json").write_text(json.dumps(report, indent=1))
    beats_ed, beats_wer = ed["trained"] < ed["untrained"], wer["trained"] < wer["untrained"]
    lines = [
        f"# trained vs untrained ({args.exp}, {args.model})", "",
        "| metric | trained | untrained | trained better |", "|---|---|---|---|",
        f"| held-out energy distance per frame ({len(texts)} utts) "
        f"| {ed['trained']:.4f} | {ed['untrained']:.4f} | {beats_ed} |",
        f"| WER, pocketsphinx ({len(keys)} utts) | {wer['trained']:.4f} | {wer['untrained']:.4f} | {beats_wer} |",
        "",
        "Does the trained model read the text? Its held-out energy distance per frame with each",
        "utterance's own text, another test sentence's text, and no text (lower is better):",
        "",
        "| own text | other text | no text | own text better than other text |", "|---|---|---|---|",
        f"| {ed['trained']:.4f} | {ed_other:.4f} | {ed_none:.4f} | {ed['trained'] < ed_other} |",
    ]
    (out / "learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not beats_ed or (args.require_wer == "true" and not beats_wer):
        print("check_learning: the trained model does not beat the untrained one", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
