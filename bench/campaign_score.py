#!/usr/bin/env python3
"""Back on the CPU: one GPU-campaign checkpoint -> an exp dir, a learning-curve row, audio to hear.

    cd egs2/libriheavy/sled
    python ../../../bench/campaign_score.py --ckpt /path/to/OUT/small.pth --name gpu_small

1. unpacks ``--ckpt`` (``bench/campaign_train.py``'s fp16 checkpoint) into ``<exp_root>/<name>/``:
   ``config.yaml`` (the pack's ESPnet config with the run's overrides) and ``valid.loss.best.pth``
   (fp32), an exp dir the recipe's decoding reads;
2. runs ``local/learning_curve.py`` on it (held-out energy distance with own / other / no text,
   free-running decoding of ``--max_utts`` held-out sentences scored with the recipe's scorer,
   teacher-forced WER with own / other text, the ground truth's WER), appending a row to
   ``<exp>/learning_curve.tsv`` (one row per scored checkpoint of this name);
3. copies that file to ``<results>/<name>_learning_curve.tsv``, writes its table and plot
   (``local/report_learning_curve.py``) beside it, and the free-running audio of ``--listen``
   sentences (spread over the decoded ones) as FLAC files under ``<results>/<name>_audio/``.

Run it in the recipe dir (paths below are relative to it), after ``bench/gpu_pack.sh`` made the
long corpus there.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent


def unpack(ckpt_path: Path, exp: Path) -> int:
    """Write ``exp/config.yaml`` and ``exp/valid.loss.best.pth``; return the checkpoint's update count."""
    ckpt = torch.load(ckpt_path, weights_only=True)
    missing = {"state", "config", "update"} - set(ckpt)
    if missing:
        sys.exit(f"{ckpt_path} is not a campaign checkpoint (no {sorted(missing)}); "
                 "expected bench/campaign_train.py's <out>.pth")
    exp.mkdir(parents=True, exist_ok=True)
    config = dict(ckpt["config"], output_dir=str(exp))
    (exp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state"].items()}
    tmp = exp / "valid.loss.best.pth.tmp"
    torch.save(state, tmp)
    tmp.replace(exp / "valid.loss.best.pth")
    return int(ckpt["update"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True, help="a campaign checkpoint (<OUT>/<name>.pth)")
    parser.add_argument("--name", required=True, help="exp dir and result file names, e.g. gpu_small")
    parser.add_argument("--exp_root", type=Path, default=Path("exp_long"))
    parser.add_argument("--results", type=Path, default=Path("results/long_run"))
    parser.add_argument("--data", type=Path, default=Path("data/long_test"), help="held-out data dir")
    parser.add_argument("--latents", type=Path, default=Path("dump_long/latents/long_test/feats.scp"))
    parser.add_argument("--max_utts", type=int, default=40, help="held-out sentences decoded (0: all)")
    parser.add_argument("--max_frames", type=int, default=150)
    parser.add_argument("--listen", type=int, default=4, help="sentences whose audio is kept in --results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.ckpt.exists():
        sys.exit(f"checkpoint '{args.ckpt}' does not exist")
    for path, what in ((args.data / "text", "held-out text"), (args.latents, "held-out latents")):
        if not path.exists():
            sys.exit(f"{what} '{path}' is missing: make the long corpus first (bench/gpu_pack.sh), "
                     "and run this in the recipe dir")

    sys.path.insert(0, str(Path("local").resolve()))
    from learning_curve import read_rows

    exp = args.exp_root / args.name
    updates = unpack(args.ckpt, exp)
    table = exp / "learning_curve.tsv"
    epoch = len(read_rows(table)) + 1  # one row per scored checkpoint
    print(f"{exp}: {updates} updates; scoring as row {epoch}", flush=True)
    subprocess.run([sys.executable, "local/learning_curve.py", "--exp", str(exp), "--epoch", str(epoch),
                    "--updates", str(updates), "--model", "valid.loss.best.pth", "--data", str(args.data),
                    "--latents", str(args.latents), "--max_utts", str(args.max_utts),
                    "--max_frames", str(args.max_frames), "--seed", str(args.seed)], check=True)

    args.results.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(table, args.results / f"{args.name}_learning_curve.tsv")
    subprocess.run([sys.executable, "local/report_learning_curve.py", str(table),
                    "--md", str(args.results / f"{args.name}_learning_curve.md"),
                    "--png", str(args.results / f"{args.name}_learning_curve.png")], check=True)

    import soundfile as sf

    decoded = sorted((exp / "learning_curve" / f"epoch{epoch}").glob("*.wav"))
    keep = [decoded[i * len(decoded) // args.listen] for i in range(min(args.listen, len(decoded)))]
    audio = args.results / f"{args.name}_audio"
    if audio.exists():
        shutil.rmtree(audio)  # the latest checkpoint's sentences only
    audio.mkdir()
    for wav in keep:
        samples, rate = sf.read(wav)
        sf.write(audio / (wav.stem + ".flac"), samples, rate)
    print(f"audio of {len(keep)} sentences in {audio}; what was heard: {exp}/learning_curve/epoch{epoch}/hyps.tsv")


if __name__ == "__main__":
    main()
