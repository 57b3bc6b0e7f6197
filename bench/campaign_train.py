#!/usr/bin/env python3
"""Train the one-voice SLED from scratch on a corpus pack for a fixed number of minutes (torch only).

The GPU campaign's training part (``bench/gpu_campaign.sh`` runs two or three of these side by
side on one GPU). The loop is ``bench/mini_learning_curve.py``'s (the same ``SLED`` module and
loss, AdamW with ESPnet's piecewise-linear warm-up, grad clip, numel batches), with the whole
corpus held on the device, bf16 autocast (``--bf16``; the energy distance stays fp32 inside
``energy_score_loss``) and a clock instead of an update count:

* every ``--eval_every_s`` seconds, a learning-curve row: teacher-forced energy distance on the
  held-out test set with each utterance's own text, another's (half the list away) and none,
  appended to ``--curve`` (TSV, one line written at once, so several runs can share the file);
* with each row, the model as an fp16 checkpoint ``<out>.pth`` (written to a temp name, then
  renamed): ``state`` (``tts.*`` keys, ESPnet's model file layout), ``config`` (the pack's ESPnet
  config.yaml with the overrides applied), ``update``; ``bench/campaign_score.py`` unpacks it;
* it stops by itself at ``--minutes`` (or on SIGTERM), after a last row and checkpoint.

    python bench/campaign_train.py --pack long.pack --name small --out $OUT/small --minutes 5 \
        --curve $OUT/curve.tsv --bf16 --set batch_bins=1600000 frame_drop=0.5
"""

import argparse
import copy
import random
import signal
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latent_pack import decode_latents, load_pack  # noqa: E402
from mini_learning_curve import heldout, lr_at, numel_batches, parse_value, update_once  # noqa: E402

OPTIM_KEYS = ("batch_bins", "grad_clip", "lr", "warmup_steps_list", "warmup_lr_list")
CURVE_COLUMNS = ["name", "update", "seconds", "hours_seen", "train_loss", "ed_own", "ed_other", "ed_none",
                 "gap", "updates_per_s"]


def load_set(pack, name, device):
    """Pack set -> rows {key, text: ids [N] long, feats: fp32 [T, D]} on ``device``."""
    packed = pack["sets"][name]
    feats = decode_latents(packed["latents"], device)
    return [dict(key=k, text=ids.long().to(device), feats=x) for k, ids, x in zip(packed["keys"], packed["ids"], feats)]


def apply_overrides(config, overrides):
    """The pack's ESPnet config with ``key=value`` overrides: optimisation keys (OPTIM_KEYS) or tts_conf keys."""
    config = copy.deepcopy(config)
    for key, text in overrides.items():
        value = parse_value(text)
        if key in ("batch_bins", "grad_clip"):
            config[key] = value
        elif key == "lr":
            scale = float(value) / float(config["optim_conf"]["lr"])
            config["optim_conf"]["lr"] = float(value)
            config["scheduler_conf"]["warmup_lr_list"] = [x * scale for x in config["scheduler_conf"]["warmup_lr_list"]]
        elif key in ("warmup_steps_list", "warmup_lr_list"):
            config["scheduler_conf"][key] = value
        else:
            config["tts_conf"][key] = value
    return config


def batch(rows, idx, device):
    """-> text [B, N] long, text_lengths [B], feats [B, T, D] fp32, feats_lengths [B]."""
    pad = torch.nn.utils.rnn.pad_sequence
    return (pad([rows[i]["text"] for i in idx], batch_first=True),
            torch.tensor([len(rows[i]["text"]) for i in idx], device=device),
            pad([rows[i]["feats"] for i in idx], batch_first=True),
            torch.tensor([len(rows[i]["feats"]) for i in idx], device=device))


def save_checkpoint(model, path: Path, config, update):
    state = {"tts." + k: (v.half() if v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(state=state, config=config, update=update), tmp)
    tmp.replace(path)


def append_row(path: Path, row):
    new = not path.exists()
    line = ("\t".join(CURVE_COLUMNS) + "\n" if new else "") + "\t".join(str(row[c]) for c in CURVE_COLUMNS) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=Path, required=True)
    parser.add_argument("--name", required=True, help="this configuration's name (curve rows, log lines)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint <out>.pth")
    parser.add_argument("--curve", type=Path, required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--eval_every_s", type=float, default=60.0)
    parser.add_argument("--max_updates", type=int, default=10**9)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the loss stays fp32)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max_train_utts", type=int, default=0, help="> 0: train on this many (the dry run)")
    parser.add_argument("--set", nargs="*", default=[], help="key=value: tts_conf keys or " + ", ".join(OPTIM_KEYS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    start = time.time()
    deadline = start + 60 * args.minutes
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append("SIGTERM"))

    from espnet2_sled.tts.sled import SLED

    device = torch.device(args.device)
    for folder in (args.out.parent, args.curve.parent):
        folder.mkdir(parents=True, exist_ok=True)
    pack = load_pack(args.pack)
    config = apply_overrides(pack["config"], overrides)
    train, test = load_set(pack, "train", device), load_set(pack, "test", device)
    if args.max_train_utts > 0:
        train = train[: args.max_train_utts]
    odim, frame_rate = int(config["odim"]), float(pack["frame_rate"])
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = SLED(len(config["token_list"]), odim, **config["tts_conf"]).to(device)
    sched = config["scheduler_conf"]
    if not {"warmup_steps_list", "warmup_lr_list"} <= set(sched):
        sys.exit(f"scheduler_conf {sched} has no piecewise-linear schedule: give --set "
                 "warmup_steps_list=[0,200,5000] warmup_lr_list=[0.0,0.002,0.0002]")
    steps, lrs = [int(s) for s in sched["warmup_steps_list"]], [float(x) for x in sched["warmup_lr_list"]]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in named if not (p.dim() >= 2 and "embed" not in n)]
    optim = torch.optim.AdamW([dict(params=decay, weight_decay=config["optim_conf"].get("weight_decay", 0.0)),
                               dict(params=no_decay, weight_decay=0.0)], lr=lrs[0])
    tag = f"[{args.name}]"
    print(f"{tag} {sum(p.numel() for p in model.lm.parameters()) / 1e6:.1f} M params, {len(train)} train "
          f"({sum(len(r['feats']) for r in train) / frame_rate / 3600:.2f} h) / {len(test)} held-out utts, "
          f"overrides {overrides}, device {device}, bf16 {args.bf16}, setup {time.time() - start:.0f} s", flush=True)
    update, frames_seen, loss_value, next_eval = 0, 0, float("nan"), time.time() + args.eval_every_s

    def evaluate():
        own = heldout(model, test)
        other = heldout(model, test, shift=len(test) // 2)
        none = heldout(model, test, drop_text=True)
        seconds = time.time() - start
        hours = frames_seen / frame_rate / 3600
        row = dict(name=args.name, update=update, seconds=f"{seconds:.0f}", hours_seen=f"{hours:.2f}",
                   train_loss=f"{loss_value:.4f}", ed_own=f"{own:.4f}", ed_other=f"{other:.4f}", ed_none=f"{none:.4f}",
                   gap=f"{(other - own) / other:.4f}", updates_per_s=f"{update / seconds:.2f}")
        append_row(args.curve, row)
        save_checkpoint(model, args.out.with_suffix(".pth"), config, update)
        print(f"{tag} " + "  ".join(f"{c}={row[c]}" for c in CURVE_COLUMNS[1:]), flush=True)

    def over():
        return stop or update >= args.max_updates or time.time() >= deadline

    while not over():
        for idx in numel_batches(train, odim, int(config["batch_bins"]), rng):
            loss = update_once(model, optim, batch(train, idx, device), lr_at(update, steps, lrs),
                               float(config["grad_clip"]), args.bf16)
            update += 1
            frames_seen += sum(len(train[i]["feats"]) for i in idx)  # no device sync
            if time.time() >= next_eval:
                loss_value = float(loss.detach())
                evaluate()
                next_eval = time.time() + args.eval_every_s
            if over():
                break
    loss_value = float(loss.detach()) if update else loss_value
    evaluate()
    print(f"{tag} stopped ({stop[0] if stop else 'time' if time.time() >= deadline else 'max_updates'}) "
          f"after {update} updates, {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
