#!/usr/bin/env python3
"""What packing the corpus costs (issue #25): held-out set, packed latents against the originals.

    cd egs2/libriheavy/sled
    python ../../../bench/pack_cost.py --pack dump_long/gpu_pack/long.pack --ckpt <a campaign checkpoint>

* the largest and mean |packed - original| per value (the pack states at most step / 2);
* held-out energy distance of one model (``--ckpt``, a ``bench/campaign_train.py`` checkpoint,
  unpacked as ``bench/campaign_score.py`` does) on the original and on the packed latents,
  own text and another sentence's text, the same noise (``espnet2_sled.tts.heldout``);
* the ground truth's WER after resynthesis (latents -> audio with the latent space's decoder,
  scored with the recipe's scorer, pocketsphinx) from the original and from the packed latents,
  beside the WER of the recorded audio.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from campaign_score import unpack  # noqa: E402
from latent_pack import decode_latents, load_pack, read_set  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--set", default="test", choices=["dev", "test"])
    parser.add_argument("--data", type=Path, default=Path("data/long_test"))
    parser.add_argument("--latents", type=Path, default=Path("dump_long/latents/long_test"))
    parser.add_argument("--out", type=Path, default=Path("exp_long/pack_cost"))
    args = parser.parse_args()
    import soundfile as sf

    from espnet2_sled.bin import score as scoring
    from espnet2_sled.text2speech import SLEDText2Speech
    from espnet2_sled.tts.heldout import heldout_energy_distance

    t0 = time.time()
    pack = load_pack(args.pack)
    packed = pack["sets"][args.set]
    texts, feats = read_set(args.data, args.latents)
    keys = packed["keys"]
    original = [torch.tensor(feats[k]).float() for k in keys]
    restored = decode_latents(packed["latents"])
    diffs = torch.cat([(a - b).abs().flatten() for a, b in zip(restored, original)])
    steps = packed["latents"]["step"]
    print(f"{len(keys)} utterances: |packed - original| max {float(diffs.max()):.4f}, mean {float(diffs.mean()):.4f} "
          f"(step: {float(steps.min()):.4f}-{float(steps.max()):.4f}, bound step / 2)")

    updates = unpack(args.ckpt, args.out / "model")
    t2s = SLEDText2Speech(args.out / "model" / "config.yaml", args.out / "model" / "valid.loss.best.pth")
    ids = [t2s.tokenize(texts[k]) for k in keys]
    shift = len(keys) // 2
    for name, latents in (("original", original), ("packed", restored)):
        own = heldout_energy_distance(t2s.tts, zip(ids, latents))
        other = heldout_energy_distance(t2s.tts, ((ids[(i + shift) % len(ids)], x) for i, x in enumerate(latents)))
        print(f"held-out ED ({updates}-update model) on {name} latents: own {own:.4f} other {other:.4f} "
              f"gap {100 * (other - own) / other:+.2f}%", flush=True)

    wers = {}
    for name, latents in (("original", original), ("packed", restored)):
        folder = args.out / f"resynthesis_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        wavs = {}
        for key, x in zip(keys, latents):
            path = folder / f"{key}.wav"
            sf.write(path, t2s.tts.frames_to_wav(x).numpy(), t2s.fs)
            wavs[key] = (str(path), 0.0, None)
        summary, _ = scoring.score(wavs, {k: texts[k] for k in keys}, metrics=("wer",), progress=False)
        wers[name] = summary["wer"]["value"]
    segments = args.data / "segments"
    audio = scoring.read_audio_table(args.data / "wav.scp", segments=segments if segments.exists() else None)
    recorded = scoring.score({k: audio[k] for k in keys}, {k: texts[k] for k in keys}, metrics=("wer",),
                             progress=False)[0]["wer"]["value"]
    print(f"WER of {len(keys)} held-out sentences: recorded audio {recorded:.4f}, resynthesised from original latents "
          f"{wers['original']:.4f}, from packed latents {wers['packed']:.4f} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
