#!/usr/bin/env python3
"""Sanity check of issue #12, step 1: can the small SLED memorise N utterances, and does
FREE-RUNNING decoding then reproduce them? (A train/decode mismatch shows up here first.)

    OMP_NUM_THREADS=1 python bench/memorise_check.py --n 8 --updates 400 --out /tmp/memorise8

Reads the first N sentences of local/mini_sentences.txt with flite's slt voice (needs flite
and sox), 25-Hz log-mel (stack 3), character tokens, the small config (conf/small.yaml, or
--set key=value); trains on all N at once; then reports the ground truth's WER, the
teacher-forced one (every frame sampled from the ground-truth past) and the free-running one
(CFG 2 and 1), per-frame mean absolute error against the data, generated vs data statistics
and the stop head's peak, with the recipe's scorer (pocketsphinx). Numbers: recipe README,
"The long run".
"""
import argparse
import subprocess
import time
from pathlib import Path

import soundfile as sf
import torch
import yaml

from espnet2_sled.bin import score as scoring
from espnet2_sled.latent import build_latent_space
from espnet2_sled.tts.sled import SLED

REPO = Path(__file__).resolve().parents[1]

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=1)
p.add_argument("--updates", type=int, default=400)
p.add_argument("--set", nargs="*", default=[])
p.add_argument("--out", default="/tmp/memorise")
p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--load", action="store_true")
args = p.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
sents = [s.strip() for s in open(REPO / "egs2/libriheavy/sled/local/mini_sentences.txt") if s.strip()][: args.n]
lat = build_latent_space("mel", n_mels=80, stack=3)
feats, wavs = [], []
for i, s in enumerate(sents):
    raw, w = out / f"raw{i}.wav", out / f"gt{i}.wav"
    if not w.exists():
        subprocess.run(["flite", "-voice", "slt", "-t", s, "-o", str(raw)], check=True)
        subprocess.run(["sox", "-D", str(raw), "-r", "24000", "-c", "1", "-b", "16", str(w)], check=True)
    a, sr = sf.read(w, dtype="float32")
    feats.append(lat.encode(torch.tensor(a))[0])
    wavs.append(str(w))
chars = sorted({c for s in sents for c in s})
vocab = ["<blank>", "<unk>", *chars, "<sos/eos>"]
ids = [torch.tensor([vocab.index(c) for c in s]) for s in sents]
conf = yaml.safe_load(open(REPO / "conf/small.yaml"))["tts_conf"]
for kv in args.set:
    k, v = kv.split("=", 1)
    conf[k] = yaml.safe_load(v)
model = SLED(len(vocab), 240, latent="mel", latent_conf=dict(n_mels=80, stack=3), **conf)
text = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)
tl = torch.tensor([len(t) for t in ids])
fe = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
fl = torch.tensor([len(f) for f in feats])
print("frames", fl.tolist(), "data mean/std", float(fe[0].mean()), float(fe[0].std()))
ck = out / "model.pth"
if args.load and ck.exists():
    model.load_state_dict(torch.load(ck, weights_only=True))
else:
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    t0 = time.time()
    for u in range(args.updates):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (u + 1) / 50)
        model.train()
        loss, stats, _ = model(text, tl, fe, fl)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if u % 50 == 0 or u == args.updates - 1:
            print(u, {k: round(float(v), 3) for k, v in stats.items()}, f"{time.time()-t0:.0f}s", flush=True)
    torch.save(model.state_dict(), ck)
model.eval()
asr = scoring.PocketsphinxASR()
def wer(audio_paths):
    e = n = 0
    for pth, s in zip(audio_paths, sents):
        hyp = asr(scoring.load_audio((pth, 0.0, None)))
        a, b = scoring.word_errors(s, hyp)
        e += a
        n += b
    return e / n
print("GT WER", wer(wavs))
# teacher forced: sample each frame from gt context
with torch.no_grad():
    from espnet2_sled.modules.layout import build_layout
    wrapped, wl = model.wrap_text(text, tl)
    tf = model.lm.teacher_forced_samples(wrapped, wl, fe, fl, build_layout(wl, fl, "offline"), model.eos_id)
tfp = []
for i in range(len(sents)):
    f = tf[i, : fl[i]]
    print(f"utt{i} TF MAE {float((f - feats[i]).abs().mean()):.3f}")
    w = model.frames_to_wav(f)
    pth = out / f"tf{i}.wav"
    sf.write(pth, w.numpy(), 24000)
    tfp.append(str(pth))
print("TF WER", wer(tfp))
for cfg in (2.0, 1.0):
    fr = []
    for i in range(len(sents)):
        torch.manual_seed(i)
        r = model.inference(ids[i], cfg_scale=cfg, max_frames=int(fl[i]) * 2, seed=i)
        g = r["feat_gen"]
        T = min(len(g), len(feats[i]))
        err = (g[:T] - feats[i][:T]).abs().mean(-1)
        print(f"utt{i} cfg {cfg} len {len(g)} vs {len(feats[i])}; MAE per frame [0,3,10,20,40]:",
              [round(float(err[k]), 3) for k in (0, 3, 10, 20, 40) if k < T],
              f"gen mean/std {float(g.mean()):.3f}/{float(g.std()):.3f} "
              f"data {float(feats[i].mean()):.3f}/{float(feats[i].std()):.3f}",
              f"stop max {float(r['stop_probs'].max()):.2f}")
        pth = out / f"fr{i}_cfg{cfg}.wav"
        sf.write(pth, r["wav"].numpy(), 24000)
        fr.append(str(pth))
    print(f"FREE cfg {cfg} WER", wer(fr))
