#!/usr/bin/env python3
"""The one-voice corpus packed small enough to travel to a GPU machine (torch only to read).

A pack holds, per set (train / dev / test), the keys, sentences, token ids (made here with
the exp's own tokenizer: the GPU machine has no ESPnet and no espeak-ng) and the latents,
plus the ESPnet ``config.yaml`` of a template exp trained on the same data (token list,
latent space, tts_conf), so a model trained from the pack unpacks into an exp dir the recipe
decodes. Latents (log-mel, ``[T, D]``) are stored as one code per value with a scale per
utterance: ``q = round((x - lo) / step)``, ``step = (max - min) / levels`` (``LEVELS``, 63 by
default: 6 bits; ``--levels`` up to 255), so every value comes back within ``step / 2`` of the
original (``MAX_ERROR_OF_STEP``; the tests hold this). The
codes are delta-coded along time (stacked mel frames first split back into their
``split`` sub-frames, so neighbours are 13 ms apart) and compressed with lzma.

    # in the recipe dir, after the long run's stages 1-4 and a one-update template exp
    # (bench/gpu_pack.sh does all three); defaults: the long run's sets
    python ../../../bench/latent_pack.py make --exp exp_long/gpu_template --out dump_long/gpu_pack/long.pack
    python ../../../bench/latent_pack.py check --pack dump_long/gpu_pack/long.pack
"""

import argparse
import io
import lzma
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

VERSION = 2
LEVELS = 63  # codes 0..63 (6 bits): ~37 MiB for the long corpus; 255 levels would take ~56 MiB
MAX_ERROR_OF_STEP = 0.5  # |unpacked - original| <= step / 2 (+ float32 rounding)
SETS = ("train", "dev", "test")


# ---------------------------------------------------------------- the format (torch + lzma)
def quantize(feats: torch.Tensor, levels: int = LEVELS):
    """feats ``[T, D]`` -> (codes uint8 ``[T, D]`` in 0..levels, lo, step): ``levels`` steps over
    the utterance's own range."""
    if not 1 <= levels <= 255:
        raise ValueError(f"levels must lie in 1..255 (codes are one byte), got {levels}")
    feats = feats.double()
    lo, hi = float(feats.min()), float(feats.max())
    step = max(hi - lo, 1e-6) / levels
    codes = ((feats - lo) / step).round().clamp(0, levels).to(torch.uint8)
    return codes, lo, step


def encode_latents(latents: List[torch.Tensor], split: int = 1, levels: int = LEVELS) -> Dict:
    """Latents ``[[T_i, D]]`` -> {lengths, dim, split, levels, lo, step, blob (lzma bytes as uint8 [n])}."""
    dim = int(latents[0].shape[1])
    if dim % split:
        raise ValueError(f"latent dim {dim} is not a multiple of split {split}")
    codes, lo, step = [], [], []
    for x in latents:
        if x.dim() != 2 or x.shape[1] != dim:
            raise ValueError(f"latents must all be [T, {dim}], got {tuple(x.shape)}")
        c, low, s = quantize(x, levels)
        fine = c.reshape(-1, dim // split).to(torch.int16)  # [T * split, D / split]
        delta = torch.diff(fine, dim=0, prepend=torch.zeros_like(fine[:1])) % 256
        codes.append(delta.to(torch.uint8).T.contiguous().flatten())  # band-major: a band's series together
        lo.append(low)
        step.append(s)
    blob = lzma.compress(torch.cat(codes).numpy().tobytes(), preset=6)
    # a tensor, not bytes: torch.save pickles bytes as text (1.5x larger)
    return dict(lengths=torch.tensor([len(x) for x in latents]), dim=dim, split=split, levels=levels,
                lo=torch.tensor(lo, dtype=torch.float64), step=torch.tensor(step, dtype=torch.float64),
                blob=torch.frombuffer(bytearray(blob), dtype=torch.uint8))


def tensor_bytes(t: torch.Tensor) -> bytes:
    try:
        return t.numpy().tobytes()
    except RuntimeError:  # torch without numpy (a bare GPU image)
        return bytes(t.tolist())


def decode_latents(packed: Dict, device="cpu") -> List[torch.Tensor]:
    """The inverse of ``encode_latents``: fp32 latents ``[[T_i, D]]`` on ``device``."""
    dim, split = packed["dim"], packed["split"]
    flat = torch.frombuffer(bytearray(lzma.decompress(tensor_bytes(packed["blob"]))), dtype=torch.uint8).to(device)
    out, offset = [], 0
    for n, lo, step in zip(packed["lengths"].tolist(), packed["lo"].tolist(), packed["step"].tolist()):
        size = n * dim
        delta = flat[offset: offset + size].reshape(dim // split, n * split).long()
        offset += size
        codes = (delta.cumsum(1) % 256).T.reshape(n, dim)
        out.append((codes.double() * step + lo).float())
    if offset != flat.numel():
        raise ValueError(f"pack holds {flat.numel()} codes, its lengths account for {offset}")
    return out


def save_pack(path: Path, pack: Dict) -> None:
    """Write atomically (temp name, then rename): a killed run never leaves a pack that looks whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(pack, buffer)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def load_pack(path: Path) -> Dict:
    if not Path(path).exists():
        sys.exit(f"pack '{path}' does not exist; make it with bench/gpu_pack.sh (README, 'The GPU campaign')")
    pack = torch.load(path, weights_only=True)
    if pack.get("version") != VERSION:
        sys.exit(f"pack '{path}' has version {pack.get('version')}, this reader expects {VERSION}; remake it")
    return pack


def make_pack(config: Dict, sets: Dict[str, List[Dict]], frame_rate: float, split: int = 1,
              levels: int = LEVELS) -> Dict:
    """sets {name: [{key, sentence, ids [N] int, feats [T, D]}]} -> the pack dict; ``frame_rate``:
    latent frames per second."""
    out = dict(version=VERSION, config=config, frame_rate=float(frame_rate), sets={})
    for name, rows in sets.items():
        out["sets"][name] = dict(keys=[r["key"] for r in rows], sentences=[r["sentence"] for r in rows],
                                 ids=[torch.as_tensor(r["ids"]).to(torch.int16) for r in rows],
                                 latents=encode_latents([torch.as_tensor(r["feats"]) for r in rows], split, levels))
    return out


# ---------------------------------------------------------------- make / check (need ESPnet)
def read_set(data_dir: Path, latent_dir: Path):
    """A Kaldi data dir's text and its latents: ({key: sentence}, {key: [T, D] array})."""
    import kaldiio

    texts = dict(line.rstrip("\n").split(" ", 1) for line in open(data_dir / "text", encoding="utf-8"))
    return texts, kaldiio.load_scp(str(latent_dir / "feats.scp"))


def make(args):
    import yaml

    from espnet2_sled.text2speech import SLEDText2Speech

    t0 = time.time()
    exp = args.exp
    config = yaml.safe_load((exp / "config.yaml").read_text())
    t2s = SLEDText2Speech(exp / "config.yaml", exp / args.model)
    max_positions = t2s.tts.max_positions
    sets = {}
    for name, data_dir, latent_dir in zip(SETS, args.data_dirs, args.latent_dirs):
        texts, feats = read_set(data_dir, latent_dir)
        rows, dropped = [], 0
        for key in sorted(k for k in texts if k in feats):
            ids = t2s.tokenize(texts[key], name=key, warn=False)
            x = torch.tensor(feats[key])
            if len(ids) + 2 + len(x) > max_positions:  # what training would refuse (stage 4's filter)
                dropped += 1
                continue
            rows.append(dict(key=key, sentence=texts[key], ids=ids, feats=x))
        sets[name] = rows
        print(f"{name} ({data_dir}): {len(rows)} utterances, {sum(len(r['feats']) for r in rows)} frames, "
              f"{dropped} over {max_positions} positions left out", flush=True)
    split = int((config["tts_conf"].get("latent_conf") or {}).get("stack", 1))
    pack = make_pack(config, sets, t2s.fs / t2s.tts.latent_space.hop_length, split, args.levels)
    save_pack(args.out, pack)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB) in {time.time() - t0:.0f} s")


def check(args):
    """Round trip against the recipe's latents: largest error, and its bound step / 2."""
    pack = load_pack(args.pack)
    worst, frames = 0.0, 0
    for name, data_dir, latent_dir in zip(SETS, args.data_dirs, args.latent_dirs):
        packed = pack["sets"][name]
        _, feats = read_set(data_dir, latent_dir)
        for key, x, step in zip(packed["keys"], decode_latents(packed["latents"]), packed["latents"]["step"]):
            err = float((x - torch.as_tensor(feats[key])).abs().max())
            worst = max(worst, err / float(step))
            frames += len(x)
    print(f"{args.pack}: {frames} frames; largest |unpacked - original| = {worst:.4f} x step "
          f"(bound {MAX_ERROR_OF_STEP})")
    if worst > MAX_ERROR_OF_STEP + 1e-4:
        sys.exit("round trip error above the bound")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("make", "check"):
        p = sub.add_parser(name)
        p.add_argument("--data_dirs", type=Path, nargs=3, metavar=("TRAIN", "DEV", "TEST"),
                       default=[Path(f"data/long_{s}") for s in ("train", "dev", "test")], help="text of each set")
        p.add_argument("--latent_dirs", type=Path, nargs=3, metavar=("TRAIN", "DEV", "TEST"),
                       default=[Path(f"dump_long/latents/long_{s}") for s in ("train", "dev", "test")],
                       help="feats.scp of each set")
        if name == "make":
            p.add_argument("--exp", type=Path, default=Path("exp_long/gpu_template"),
                           help="an exp trained on these sets: its config.yaml and tokenizer")
            p.add_argument("--model", default="valid.loss.best.pth")
            p.add_argument("--out", type=Path, required=True)
            p.add_argument("--levels", type=int, default=LEVELS, help="quantization steps per utterance's range")
        else:
            p.add_argument("--pack", type=Path, required=True)
    args = parser.parse_args()
    dict(make=make, check=check)[args.cmd](args)


if __name__ == "__main__":
    main()
