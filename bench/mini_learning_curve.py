#!/usr/bin/env python3
"""How many updates does the mini corpus need before SLED reads the text? A long-run probe.

The CPU mini recipe stops at ~2300 updates (its 20-minute budget). This script trains the
same model on the same data for as long as a GPU allows, outside ESPnet's trainer (plain
loop, same ``SLED`` module, loss, AdamW + piecewise-linear warm-up, grad clip, numel
batches) and prints a learning curve: teacher-forced energy distance on the dev set with
each utterance's own text, with another dev sentence's text, and without text. The gap
own-vs-other is the measure of reading: a model that ignores the text scores the same.
Checkpoints are written as ESPnet model files (``tts.*`` keys, fp16 to keep them small), so
the recipe's decoding and ``local/check_learning.py`` score them on the CPU afterwards.

    # 1. here, in the recipe dir after the mini recipe's stages 1-5 (needs ESPnet: tokenizes
    #    with the exp's config, whose paths are relative to the recipe dir)
    cd egs2/libriheavy/sled && python ../../../bench/mini_learning_curve.py export \
        --exp exp/sled_train_sled_small_mel_bpe --recipe . --out mini_data.pt
    # 2. anywhere with torch (a GPU): train; --set key=value overrides tts_conf / optimisation
    python bench/mini_learning_curve.py train --data mini_data.pt --minutes 6 --save 2300,10000 --out runs/a
    # 3. back here: an exp dir the recipe can decode (config.yaml of the source exp, tts_conf overrides applied)
    python bench/mini_learning_curve.py unpack --ckpt runs/a_final.pth \
        --exp egs2/.../exp/sled_train_sled_small_mel_bpe --out egs2/libriheavy/sled/exp/long_a
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sled_import import make_importable  # noqa: E402

make_importable()


# ---------------------------------------------------------------- export (needs ESPnet)
def export(args):
    import collections

    import kaldiio
    import yaml
    from espnet2.text.build_tokenizer import build_tokenizer
    from espnet2.text.token_id_converter import TokenIDConverter

    from espnet2_sled.modules.config import tts_conf_defaults

    config = yaml.safe_load((args.exp / "config.yaml").read_text())
    sets = {}
    for name, subset in (("train", "mini_train"), ("dev", "mini_dev"), ("test", "mini_test")):
        texts = dict(line.rstrip("\n").split(" ", 1) for line in open(args.recipe / "data" / subset / "text"))
        feats = kaldiio.load_scp(str(args.recipe / args.latents / subset / "feats.scp"))
        # keys dropped at extraction (bad_utts) are skipped
        sets[name] = [dict(key=k, text=texts[k], feats=torch.as_tensor(feats[k]).half())
                      for k in sorted(texts) if k in feats]
    for extra in args.extra:  # more training rows: [{key, text, feats}] made with the same latent space
        sets["train"] += torch.load(extra, weights_only=True)
    max_positions = config["tts_conf"].get("max_positions", tts_conf_defaults()["max_positions"])
    out = dict(odim=config["odim"], tts_conf=config["tts_conf"], tokens={},
               optim=dict(optim_conf=config["optim_conf"], scheduler_conf=config["scheduler_conf"],
                          batch_bins=config["batch_bins"], grad_clip=config["grad_clip"]))
    for spec in args.tokens:  # "exp" (the exp's own list), or TYPE[:G2P] for a list made from the training text
        token_type, _, g2p = spec.partition(":")
        if spec == "exp":
            token = dict(token_type=config["token_type"], bpemodel=config.get("bpemodel"), g2p=config.get("g2p"),
                         token_list=list(config["token_list"]))
        else:  # laid out as ESPnet's token lists
            tokenizer = build_tokenizer(token_type, g2p_type=g2p or None)
            counts = collections.Counter(t for row in sets["train"] for t in tokenizer.text2tokens(row["text"]))
            token = dict(token_type=token_type, bpemodel=None, g2p=g2p or None,
                         token_list=["<blank>", "<unk>", *sorted(counts, key=lambda t: (-counts[t], t)), "<sos/eos>"])
        tokenizer = build_tokenizer(token["token_type"], bpemodel=token["bpemodel"], g2p_type=token["g2p"])
        converter = TokenIDConverter(token["token_list"])
        ids = {name: [torch.tensor(converter.tokens2ids(tokenizer.text2tokens(r["text"])), dtype=torch.int16)
                      for r in rows] for name, rows in sets.items()}
        out["tokens"][spec] = dict(token=token, ids=ids)
        print(f"tokens {spec}: {len(token['token_list'])} types")
    # log-mel latents as 8 bits (step (hi - lo) / 255, ~0.06 in log units): small enough to carry
    lo = min(float(r["feats"].min()) for rows in sets.values() for r in rows)
    hi = max(float(r["feats"].max()) for rows in sets.values() for r in rows)
    out["feats_range"] = (lo, hi)
    for name, rows in sets.items():
        lengths = [max(len(t[i]) for t in (v["ids"][name] for v in out["tokens"].values())) for i in range(len(rows))]
        keep = [i for i, r in enumerate(rows) if lengths[i] + 2 + len(r["feats"]) <= max_positions]
        out[name] = [dict(key=rows[i]["key"], sentence=rows[i]["text"],
                          feats=((rows[i]["feats"].float() - lo) / (hi - lo) * 255).round().to(torch.uint8))
                     for i in keep]
        for v in out["tokens"].values():
            v["ids"][name] = [v["ids"][name][i] for i in keep]
        print(f"{name}: {len(keep)} utterances, {sum(len(rows[i]['feats']) for i in keep)} frames")
    torch.save(out, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")


# ---------------------------------------------------------------- training (torch only)
def load_rows(data, name, tokens="exp", skip_prefix=None):
    """Exported set ``name`` -> rows of {key, text: ids [N], feats: fp32 [T, D]} (8-bit latents
    expanded back), leaving out keys that start with ``skip_prefix``."""
    lo, hi = data["feats_range"]
    return [dict(key=r["key"], text=ids, feats=r["feats"].float() * ((hi - lo) / 255) + lo)
            for r, ids in zip(data[name], data["tokens"][tokens]["ids"][name])
            if skip_prefix is None or not r["key"].startswith(skip_prefix)]


def numel_batches(rows, odim, batch_bins, rng):
    """ESPnet's ``batch_type: numel`` in short: length-sorted, sum of (frames x odim + tokens) <= bins."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["feats"]))
    batches, cur, size = [], [], 0
    for i in order:
        n = len(rows[i]["feats"]) * odim + len(rows[i]["text"])
        if cur and size + n > batch_bins:
            batches.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += n
    batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(rows, idx, device, text_of=None):
    """-> text [B, N] long, text_lengths [B], feats [B, T, D] fp32, feats_lengths [B]."""
    texts = [rows[(text_of or {}).get(i, i)]["text"].long() for i in idx]
    feats = [rows[i]["feats"].float() for i in idx]
    text = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    tl = torch.tensor([len(t) for t in texts])
    fl = torch.tensor([len(f) for f in feats])
    return text.to(device), tl.to(device), padded.to(device), fl.to(device)


def heldout(model, rows, shift=0, drop_text=False, seed=0):
    """Held-out energy distance (``espnet2_sled.tts.heldout``); utterance i read with the text
    of utterance (i + shift) mod n, or with no text."""
    from espnet2_sled.tts.heldout import heldout_energy_distance

    n = len(rows)
    items = ((rows[(i + shift) % n]["text"], rows[i]["feats"]) for i in range(n))
    return heldout_energy_distance(model, items, seed, drop_text)


def lr_at(step, steps, lrs):
    """Piecewise-linear interpolation (ESPnet's PiecewiseLinearWarmupLR), constant past the last point."""
    if step >= steps[-1]:
        return lrs[-1]
    for (s0, l0), (s1, l1) in zip(zip(steps, lrs), zip(steps[1:], lrs[1:])):
        if s0 <= step < s1:
            return l0 + (l1 - l0) * (step - s0) / (s1 - s0)
    return lrs[0]


def update_once(model, optim, batch, lr, grad_clip, bf16=False):
    """One optimiser update at learning rate ``lr`` on ``batch`` = (text, text_lengths, feats,
    feats_lengths), gradients clipped to ``grad_clip`` (``bf16``: the forward under bf16
    autocast; the energy distance stays fp32 inside the model). Returns the loss (a tensor)."""
    for group in optim.param_groups:
        group["lr"] = lr
    with torch.autocast(batch[0].device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, _, _ = model(*batch)
    optim.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optim.step()
    return loss


def parse_value(text):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def save(model, path, overrides, update, token):
    state = {"tts." + k: (v.half() if v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    torch.save(dict(state=state, overrides=overrides, update=update, token=token), path)


def train(args):
    from espnet2_sled.tts.sled import SLED

    device = torch.device(args.device)
    data = torch.load(args.data, weights_only=True)
    tokens = data["tokens"][args.tokens]
    for name in ("train", "dev", "test"):
        data[name] = load_rows(data, name, args.tokens, None if args.extra else args.extra_prefix)
    data["idim"], data["token"] = len(tokens["token"]["token_list"]), tokens["token"]
    conf, opt = dict(data["tts_conf"]), dict(data["optim"])
    overrides = dict(kv.split("=", 1) for kv in args.set)
    for k, v in overrides.items():
        target = opt if k in ("batch_bins", "grad_clip", "lr", "schedule_stretch") else conf
        target[k] = parse_value(v)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model = SLED(data["idim"], data["odim"], **conf).to(device)
    lr = float(opt.get("lr", opt["optim_conf"]["lr"]))
    sched = opt["scheduler_conf"]
    stretch = float(opt.get("schedule_stretch", 1.0))
    steps = [int(s * stretch) for s in sched["warmup_steps_list"]]
    lrs = [float(x) * lr / float(opt["optim_conf"]["lr"]) for x in sched["warmup_lr_list"]]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and not (p.dim() >= 2 and "embed" not in n)]
    optim = torch.optim.AdamW([dict(params=decay, weight_decay=opt["optim_conf"].get("weight_decay", 0.0)),
                               dict(params=no_decay, weight_decay=0.0)], lr=lrs[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_at = {int(s) for s in args.save.split(",") if s}
    dev = data["dev"]
    params = sum(p.numel() for p in model.lm.parameters())
    print(f"[{args.out.name}] {params / 1e6:.1f} M params, {len(data['train'])} train / {len(dev)} dev utts, "
          f"tokens {args.tokens}, overrides {overrides}, device {device}", flush=True)
    start, update, epoch = time.time(), 0, 0
    deadline = start + 60 * args.minutes
    curve = []
    while update < args.max_updates and time.time() < deadline:
        epoch += 1
        for idx in numel_batches(data["train"], data["odim"], int(opt["batch_bins"]), rng):
            loss = update_once(model, optim, collate(data["train"], idx, device), lr_at(update, steps, lrs),
                               float(opt["grad_clip"]))
            update += 1
            if update in save_at:
                save(model, Path(f"{args.out}_upd{update}.pth"), overrides, update, data["token"])
            if update % args.eval_every == 0:
                own = heldout(model, dev)
                other = heldout(model, dev, shift=len(dev) // 2)
                none = heldout(model, dev, drop_text=True)
                row = dict(update=update, epoch=epoch, seconds=round(time.time() - start, 1),
                           train_loss=float(loss.detach()), dev_own=own, dev_other=other, dev_none=none,
                           gap=(other - own) / other)
                curve.append(row)
                print(f"[{args.out.name}] upd {update:6d} ep {epoch:4d} {row['seconds']:6.0f}s "
                      f"loss {row['train_loss']:7.3f} dev ED own {own:.3f} other {other:.3f} none {none:.3f} "
                      f"gap {100 * row['gap']:+.1f}%", flush=True)
            if update >= args.max_updates or time.time() >= deadline:
                break
    save(model, Path(f"{args.out}_final.pth"), overrides, update, data["token"])
    test = data["test"]
    final = dict(update=update, test_own=heldout(model, test),
                 test_other=heldout(model, test, shift=len(test) // 2),
                 test_none=heldout(model, test, drop_text=True))
    print(f"[{args.out.name}] final after {update} updates ({time.time() - start:.0f} s): {final}", flush=True)
    print(f"[{args.out.name}] CURVE " + json.dumps(dict(curve=curve, final=final, overrides=overrides)), flush=True)


# ---------------------------------------------------------------- unpack (back here)
def unpack(args):
    import yaml

    ckpt = torch.load(args.ckpt, weights_only=True)
    config = yaml.safe_load((args.exp / "config.yaml").read_text())
    for k, v in ckpt["overrides"].items():
        if k not in ("batch_bins", "grad_clip", "lr", "schedule_stretch"):
            config["tts_conf"][k] = parse_value(v)
    config.update(ckpt["token"])
    args.out.mkdir(parents=True, exist_ok=True)
    config["output_dir"] = str(args.out)
    (args.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state"].items()}
    torch.save(state, args.out / "valid.loss.best.pth")
    print(f"{args.out}: {ckpt['update']} updates, overrides {ckpt['overrides']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("export")
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--recipe", type=Path, required=True)
    p.add_argument("--latents", default="dump/latents")
    p.add_argument("--tokens", nargs="+", default=["exp"],
                   help="token sets to store: exp (the exp's list) or TYPE[:G2P], e.g. phn:espeak_ng_english_us_vits")
    p.add_argument("--extra", type=Path, nargs="*", default=[], help="extra training rows (torch file)")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("train")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="prefix: <out>_final.pth, <out>_upd<N>.pth")
    p.add_argument("--tokens", default="exp", help="which of the exported token sets")
    p.add_argument("--extra", action="store_true", help="train on the extra rows too")
    p.add_argument("--extra_prefix", default="gen-", help="keys of the extra rows start with this")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--max_updates", type=int, default=10**9)
    p.add_argument("--eval_every", type=int, default=1000)
    p.add_argument("--save", default="", help="comma-separated update counts to checkpoint at (final always)")
    p.add_argument("--set", nargs="*", default=[], help="key=value: tts_conf keys, or batch_bins, lr, "
                   "grad_clip, schedule_stretch (multiplies the warm-up/decay step counts)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("unpack")
    p.add_argument("--ckpt", type=Path, required=True)
    p.add_argument("--exp", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dict(export=export, train=train, unpack=unpack)[args.cmd](args)


if __name__ == "__main__":
    main()
