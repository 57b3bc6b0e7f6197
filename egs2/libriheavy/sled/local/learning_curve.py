#!/usr/bin/env python3
"""One learning-curve row of a model in training: does it read sentences it has not seen?

    local/learning_curve.py --exp exp_long/sled_x --epoch 4 --data data/long_test \
        --latents dump_long/latents/long_test/feats.scp [--max_utts 40] [--max_frames 200]
    local/learning_curve.py --exp exp_long/sled_x --has_row 4     # exit 0 iff epoch 4 has a row

Scores ``<exp>/latest.pth`` (ESPnet's trainer points it at the last finished epoch) on the
test set, as stage 8 does for a finished model:

* held-out energy distance (teacher-forced, fixed noise) with each utterance's own text,
  another test sentence's text and no text (``espnet2_sled.tts.heldout``, as
  ``local/check_learning.py``): own < other means the model reads;
* teacher-forced WER of the decoded utterances (every frame sampled from the ground-truth
  past) with their own text and with another test sentence's text (``tf_wer_own`` /
  ``tf_wer_other``): equal WERs mean the model continues the audio and ignores the text;
* free-running decoding of ``--max_utts`` utterances (spread over the sorted keys, as stage 7's
  ``--decode_max_utts``) in one batch, CFG and stop as the model's config, a fixed seed,
  scored with the recipe's scorer (``espnet2_sled.bin.score``: pocketsphinx WER). The ground
  truth audio of the same utterances is scored once, the same way (``groundtruth.json``).

Diagnostic, ``--decode_frame_drop P``: each fed-back frame's embedding is also hidden whole with
probability P at decoding (the training-time ``tts_conf.frame_drop`` kept at decoding, as
Tacotron keeps its pre-net dropout on), in every measure above; rows then go to
``<exp>/learning_curve_decode_drop<P>.tsv`` and outputs under ``learning_curve/decode_drop<P>/``.

Appends a row to ``<exp>/learning_curve.tsv`` (``updates``: the trainer's own count at the end of
that epoch, from ``checkpoint.pth``)
and keeps the wavs and what pocketsphinx heard (``hyps.tsv``) under ``<exp>/learning_curve/epoch<N>/``.
``local/report_learning_curve.py`` turns the file into a table and a plot.
"""

import argparse
import json
import sys
import time
from pathlib import Path

COLUMNS = ["epoch", "updates", "ed_own", "ed_other", "ed_none", "wer", "wer_groundtruth",
           "frames_ratio", "tf_wer_own", "tf_wer_other", "eval_seconds", "time"]
MISSING = "-"  # a column an older version of this script did not write


def read_rows(path: Path):
    """[{column: str}] of a learning_curve.tsv (empty when it does not exist); every column of
    COLUMNS is there (MISSING where the file was written without it)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]
    return [{**{c: MISSING for c in COLUMNS}, **row} for row in rows]


def append_row(path: Path, row):
    """Append ``row`` to ``path``; a file written with other columns is rewritten first with
    COLUMNS (its rows keep their values, MISSING in the new columns)."""
    if path.exists() and path.read_text(encoding="utf-8").split("\n", 1)[0].split("\t") != COLUMNS:
        tmp = path.with_suffix(".tmp")
        lines = ["\t".join(COLUMNS)] + ["\t".join(str(r[c]) for c in COLUMNS) for r in read_rows(path)]
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(path)  # atomic: the old rows are never half-written
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as f:
        if new:
            f.write("\t".join(COLUMNS) + "\n")
        f.write("\t".join(str(row[c]) for c in COLUMNS) + "\n")


def hide_frames_at_decoding(lm, p: float, seed: int) -> None:
    """Wrap ``lm.frame_proj`` so that each fed-back frame's embedding is hidden whole with
    probability ``p`` in every pass, training mode or not (``--decode_frame_drop``; the same
    ``hide_whole_frames`` as ``tts_conf.frame_drop`` in training)."""
    import torch

    from espnet2_sled.modules.sled_lm import hide_whole_frames

    class HiddenFrames(torch.nn.Module):
        def __init__(self, proj):
            super().__init__()
            self.proj, self.gen = proj, torch.Generator().manual_seed(seed)

        @property
        def weight(self):  # callers read frame_proj.weight.dtype
            return self.proj.weight

        def forward(self, x):
            return hide_whole_frames(self.proj(x), p, self.gen)

    lm.frame_proj = HiddenFrames(lm.frame_proj)


def spread(keys, m):
    """m of the sorted keys, evenly spread (stage 7's --decode_max_utts subset); all if m <= 0."""
    n = len(keys)
    if m <= 0 or m >= n:
        return list(keys)
    return [k for i, k in enumerate(keys, 1) if (i - 1) * m // n != i * m // n]


def trained_updates(exp: Path, epoch: int) -> int:
    """Updates done by the end of ``epoch``, as ESPnet's trainer counted them (its reporter in
    ``checkpoint.pth``), so a change of num_iters_per_epoch between restarts is counted right."""
    from espnet2_sled.checkpoint import read_resume_file

    reporter = read_resume_file(exp / "checkpoint.pth")["reporter"]
    if epoch not in reporter["stats"]:
        sys.exit(f"{exp}/checkpoint.pth has no epoch {epoch} (it is at epoch {reporter['epoch']})")
    return int(reporter["stats"][epoch]["train"]["total_count"])


def wer_of(wavs, texts, hyps_file=None):
    """Corpus WER of ``wavs`` against ``texts`` (the recipe's scorer); what was heard is
    written to ``hyps_file`` (key, WER, hypothesis, reference) when given."""
    from espnet2_sled.bin import score as scoring

    summary, per_utt = scoring.score(wavs, texts, metrics=("wer",), progress=False,
                                     missing=[k for k in texts if k not in wavs])
    if hyps_file is not None:
        with open(hyps_file, "w", encoding="utf-8") as f:
            for key in sorted(per_utt):
                row = per_utt[key]
                f.write(f"{key}\t{row['wer']:.3f}\t{row['hyp']}\t{scoring.normalize_text(texts[key])}\n")
    return summary["wer"]["value"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--has_row", type=int, default=None, help="only check: exit 0 iff this epoch has a row")
    parser.add_argument("--epoch", type=int, help="the epoch latest.pth holds")
    parser.add_argument("--model", default="latest.pth")
    parser.add_argument("--updates", type=int, default=None,
                        help="the model's update count (default: the trainer's, from <exp>/checkpoint.pth)")
    parser.add_argument("--data", type=Path, help="test data dir (text, wav.scp, segments)")
    parser.add_argument("--latents", type=Path, help="test latents feats.scp")
    parser.add_argument("--max_utts", type=int, default=0, help="decode this many utterances (0: all)")
    parser.add_argument("--max_frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decode_frame_drop", type=float, default=0.0,
                        help="diagnostic: hide each fed-back frame with this probability at decoding too")
    args = parser.parse_args()
    if not 0.0 <= args.decode_frame_drop < 1.0:
        parser.error(f"--decode_frame_drop must lie in [0, 1) (got {args.decode_frame_drop})")
    tag = f"decode_drop{args.decode_frame_drop:g}" if args.decode_frame_drop > 0 else ""
    table = args.exp / (f"learning_curve_{tag}.tsv" if tag else "learning_curve.tsv")
    if args.has_row is not None:
        sys.exit(0 if any(int(r["epoch"]) == args.has_row for r in read_rows(table)) else 1)
    for name in ("epoch", "data", "latents"):
        if getattr(args, name) is None:
            parser.error(f"--{name} is required (unless --has_row)")

    # heavy imports only past the --has_row check (sled.sh asks before every chunk)
    import kaldiio
    import soundfile as sf
    import torch

    from espnet2_sled.bin import score as scoring
    from espnet2_sled.text2speech import SLEDText2Speech
    from espnet2_sled.tts.heldout import heldout_energy_distance, teacher_forced_frames

    t0 = time.time()
    texts = scoring.read_table(args.data / "text")
    latents = kaldiio.load_scp(str(args.latents))
    keys = sorted(k for k in texts if k in latents)
    t2s = SLEDText2Speech(args.exp / "config.yaml", args.exp / args.model, max_frames=args.max_frames)
    if tag:
        hide_frames_at_decoding(t2s.tts.lm, args.decode_frame_drop, args.seed)

    ordered = keys
    shift = max(1, len(ordered) // 2)

    def items(text_of):  # (ids of the text of utterance text_of(i), latents of utterance i)
        return ((t2s.tokenize(texts[text_of(i)]), torch.tensor(latents[k])) for i, k in enumerate(ordered))

    ed_own = heldout_energy_distance(t2s.tts, items(lambda i: ordered[i]))
    ed_other = heldout_energy_distance(t2s.tts, items(lambda i: ordered[(i + shift) % len(ordered)]))
    ed_none = heldout_energy_distance(t2s.tts, items(lambda i: ordered[i]), drop_text=True)

    decode = spread(keys, args.max_utts)
    out = args.exp / "learning_curve" / tag / f"epoch{args.epoch}"
    out.mkdir(parents=True, exist_ok=True)
    # one padded batch (the decoding path every mode shares; rows do not interact)
    ids = [t2s.tokenize(texts[k]) for k in decode]
    batch = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
    gen = t2s.tts.generate_batch(batch, torch.tensor([len(t) for t in ids]), max_frames=args.max_frames,
                                 seed=args.seed)
    wavs, generated, reference = {}, 0, 0
    for i, key in enumerate(decode):
        frames = gen.frames[i, : int(gen.lengths[i])]
        generated += int(frames.shape[0])
        reference += int(latents[key].shape[0])
        if frames.shape[0] > 0:
            path = out / f"{key.replace('/', '_')}.wav"
            sf.write(path, t2s.tts.frames_to_wav(frames).numpy(), t2s.fs)
            wavs[key] = (str(path), 0.0, None)
    decode_texts = {k: texts[k] for k in decode}
    wer = wer_of(wavs, decode_texts, out / "hyps.tsv")

    # teacher-forced: does the model read, or only continue the ground-truth audio?
    tf_wer = {}
    for name, shift_by in (("own", 0), ("other", max(1, len(decode) // 2))):
        tf_dir = out / f"teacher_forced_{name}"
        tf_dir.mkdir(exist_ok=True)
        tf_wavs = {}
        for i, key in enumerate(decode):
            text = t2s.tokenize(texts[decode[(i + shift_by) % len(decode)]])
            frames = teacher_forced_frames(t2s.tts, text, torch.tensor(latents[key]), seed=args.seed + i)
            path = tf_dir / f"{key.replace('/', '_')}.wav"
            sf.write(path, t2s.tts.frames_to_wav(frames).numpy(), t2s.fs)
            tf_wavs[key] = (str(path), 0.0, None)
        tf_wer[name] = wer_of(tf_wavs, decode_texts, tf_dir / "hyps.tsv")

    gt_file = args.exp / "learning_curve" / "groundtruth.json"
    gt = json.loads(gt_file.read_text()) if gt_file.exists() else {}
    if gt.get("keys") != decode:
        segments = args.data / "segments"
        audio = scoring.read_audio_table(args.data / "wav.scp", segments=segments if segments.exists() else None)
        gt = dict(keys=decode, wer=wer_of({k: audio[k] for k in decode}, decode_texts))
        gt_file.write_text(json.dumps(gt))

    updates = trained_updates(args.exp, args.epoch) if args.updates is None else args.updates
    row = dict(epoch=args.epoch, updates=updates, ed_own=f"{ed_own:.4f}",
               ed_other=f"{ed_other:.4f}", ed_none=f"{ed_none:.4f}", wer=f"{wer:.4f}",
               wer_groundtruth=f"{gt['wer']:.4f}", frames_ratio=f"{generated / max(reference, 1):.3f}",
               tf_wer_own=f"{tf_wer['own']:.4f}", tf_wer_other=f"{tf_wer['other']:.4f}",
               eval_seconds=f"{time.time() - t0:.0f}", time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    append_row(table, row)
    print("learning curve: " + "  ".join(f"{c}={row[c]}" for c in COLUMNS), file=sys.stderr)


if __name__ == "__main__":
    main()
