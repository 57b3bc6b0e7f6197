"""Things tests build for themselves: tiny models, synthetic latents, ESPnet data dirs."""

from pathlib import Path

import kaldiio
import numpy as np
import torch
import yaml

from espnet2_sled.tts.sled import SLED

REPO = Path(__file__).resolve().parents[1]
DEBUG_CONF = REPO / "conf" / "debug.yaml"

TINY = dict(
    dim=32, layers=2, heads=4, ffn_dim=64, generator_width=32, generator_depth=2, noise_dim=8,
    max_positions=256, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
)


def tiny_sled(idim=20, odim=8, seed=0, **overrides) -> SLED:
    torch.manual_seed(seed)
    conf = dict(TINY)
    conf.update(overrides)
    model = SLED(idim=idim, odim=odim, **conf)
    # Non-zero generator output layers, so decoding paths are actually exercised
    # (at upstream initialisation the generator returns exactly 0).
    with torch.no_grad():
        for p in model.lm.generator.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.1)
    return model


def random_batch(B=3, N=7, T=11, idim=20, odim=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, idim - 1, (B, N), generator=g)
    text_lengths = torch.tensor([N] + [max(1, N - 2 - i) for i in range(B - 1)])
    feats = torch.randn(B, T, odim, generator=g)
    feats_lengths = torch.tensor([T] + [max(1, T - 3 - 2 * i) for i in range(B - 1)])
    for b in range(B):
        text[b, text_lengths[b]:] = 0
        feats[b, feats_lengths[b]:] = 0
    return text, text_lengths, feats, feats_lengths


SENTENCES = [
    "the cat sat on the mat.",
    "a quick brown fox jumps.",
    "hello world, how are you?",
    "rain falls on the green hills.",
    "we like tea and toast.",
    "open the door, please.",
    "the sun is warm today.",
    "birds sing in the morning.",
]


def write_dataset(root: Path, odim=8, n=8, seed=0, frames_per_char=1.5):
    """A Kaldi-style dir: text + latents (kaldiio ark,scp) + shape files + a char token list.

    Latents are a deterministic function of the text (each character owns a random
    vector, smeared over ~frames_per_char frames) so that a model can learn them.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chars = sorted(set("".join(SENTENCES)))
    table = {c: rng.normal(size=odim).astype(np.float32) for c in chars}
    keys = [f"utt{i:03d}" for i in range(n)]
    feats = {}
    with open(root / "text", "w") as f:
        for i, key in enumerate(keys):
            sentence = SENTENCES[i % len(SENTENCES)]
            f.write(f"{key} {sentence}\n")
            rows = [table[c] for c in sentence for _ in range(int(frames_per_char) + (c in "aeiou"))]
            feats[key] = np.stack(rows) + 0.05 * rng.normal(size=(len(rows), odim)).astype(np.float32)
    with kaldiio.WriteHelper(f"ark,scp:{root}/feats.ark,{root}/feats.scp") as writer:
        for key in keys:
            writer[key] = feats[key]
    with open(root / "speech_shape", "w") as f:
        for key in keys:
            f.write(f"{key} {feats[key].shape[0]},{odim}\n")
    with open(root / "text_shape", "w") as f:
        for i, key in enumerate(keys):
            f.write(f"{key} {len(SENTENCES[i % len(SENTENCES)])}\n")
    tokens = ["<blank>", "<unk>"] + [c if c != " " else "<space>" for c in chars] + ["<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    return keys, feats


def train_args(data: Path, out: Path, odim=8, config=DEBUG_CONF, extra=()):
    d = str(data)
    return [
        "--config", str(config), "--output_dir", str(out), "--odim", str(odim),
        "--token_type", "char", "--token_list", f"{d}/tokens.txt", "--cleaner", "none", "--g2p", "none",
        "--train_data_path_and_name_and_type", f"{d}/text,text,text",
        "--train_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
        "--valid_data_path_and_name_and_type", f"{d}/text,text,text",
        "--valid_data_path_and_name_and_type", f"{d}/feats.scp,speech,kaldi_ark",
        "--train_shape_file", f"{d}/text_shape", "--train_shape_file", f"{d}/speech_shape",
        "--valid_shape_file", f"{d}/text_shape", "--valid_shape_file", f"{d}/speech_shape",
        "--ngpu", "0", "--seed", "0", *extra,
    ]


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)
