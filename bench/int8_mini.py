#!/usr/bin/env python3
"""int8 decoding on the trained mini model (issue #14, item 4): what it costs in quality.

fp32 and ``quantize="int8"`` (``modules/precision.py``: dynamic int8 linears of the decoder
and the generator trunk) of the same checkpoint, side by side on the mini test set:

* held-out energy distance per frame (teacher-forced, fixed noise; ``tts/heldout.py``);
* free-running decoding of the same utterances with the same seeds: frame drift from fp32
  (mean |difference| / std of the fp32 frames, over the frames both produced), stop steps,
  decode seconds, and WER of both with the recipe's scorer (pocketsphinx).

    .venv/bin/python bench/int8_mini.py --exp egs2/libriheavy/sled/exp/sled_train_..._mel_bpe \
        --data egs2/libriheavy/sled/data/mini_test --latents egs2/libriheavy/sled/dump/latents/mini_test/feats.scp
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import kaldiio
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "egs2/libriheavy/sled/local"))
from check_learning import heldout_energy_distance  # noqa: E402

from espnet2_sled.bin import score as scoring  # noqa: E402
from espnet2_sled.fileio import write_wav  # noqa: E402
from espnet2_sled.text2speech import SLEDText2Speech  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--model", default="valid.loss.best.pth")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--latents", type=Path, required=True)
    parser.add_argument("--utts", type=int, default=12, help="utterances decoded and scored")
    parser.add_argument("--max_frames", type=int, default=100)
    args = parser.parse_args()
    print("command: " + " ".join([Path(sys.executable).name] + sys.argv))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    texts = scoring.read_table(args.data / "text")
    latents = kaldiio.load_scp(str(args.latents))
    keys = sorted(texts)[: args.utts]
    models = {name: SLEDText2Speech(args.exp / "config.yaml", args.exp / args.model, max_frames=args.max_frames,
                                    quantize=quantize)
              for name, quantize in (("fp32", None), ("int8", "int8"))}
    ed = {name: heldout_energy_distance(t2s, texts, latents, sorted(texts)) for name, t2s in models.items()}
    frames, seconds, wer = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, t2s in models.items():
            wavs, frames[name], start = {}, [], time.perf_counter()
            for i, key in enumerate(keys):
                out = t2s(texts[key], seed=i)
                frames[name].append(out["feat_gen"])
                path = Path(tmp) / f"{name}_{key}.wav"
                write_wav(path, out["wav"].numpy(), t2s.fs)
                wavs[key] = (str(path), 0.0, None)
            seconds[name] = time.perf_counter() - start
            summary, _ = scoring.score(wavs, texts, metrics=("wer",), progress=False)
            wer[name] = summary["wer"]["value"]
    drift, same_stop = [], 0
    for a, b in zip(frames["fp32"], frames["int8"]):
        n = min(a.shape[0], b.shape[0])
        drift.append(float((a[:n] - b[:n]).abs().mean() / a[:n].std()))
        same_stop += int(a.shape[0] == b.shape[0])
    lines = [
        f"# int8 vs fp32 decoding, trained mini model ({args.exp.name}, {args.model})", "",
        "| | fp32 | int8 |", "|---|---|---|",
        f"| held-out energy distance per frame ({len(texts)} utts) | {ed['fp32']:.4f} | {ed['int8']:.4f} |",
        f"| WER, pocketsphinx ({len(keys)} utts, same seeds) | {wer['fp32']:.4f} | {wer['int8']:.4f} |",
        f"| decode seconds, {len(keys)} utts (batch 1) | {seconds['fp32']:.1f} | {seconds['int8']:.1f} |",
        "",
        f"frame drift int8 vs fp32 (mean |diff| / std of fp32 frames, per utterance, mean): "
        f"{sum(drift) / len(drift):.3f} (min {min(drift):.3f}, max {max(drift):.3f}); "
        f"same stop step in {same_stop} of {len(keys)} utterances",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
