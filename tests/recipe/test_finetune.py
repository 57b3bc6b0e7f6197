"""run.sh --pretrained: fine-tune an upstream-format checkpoint on the mini corpus, end to end.

A tiny upstream-format folder (tests/upstream/synthetic.py: the released key names, a
byte-level BPE) is imported with bin/import_upstream, then ``run.sh --mini true --pretrained``
runs stages 1-7 on a small flite corpus (local/make_mini_corpus.py): data, mel latents 8
wide (the checkpoint's frame width), the pretrained model's own tokenizer (stage 3 trains
none), stats, a few updates from its weights, and decoding. Offline and streaming layouts:
the streaming checkpoint is fine-tuned in its own layout and decoded streaming.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from recipe_helpers import need

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "upstream"))
from synthetic import write_checkpoint  # noqa: E402

SENTENCES = [f"The {c} cat sat on mat number {w}." for w, c in
             zip("one two three four five six seven eight nine ten eleven twelve".split(),
                 "red blue green black white grey brown pink gold tan plum teal".split())]
FAST = ["--latent", "mel", "--latent_opts", "--latent_conf n_mels=4 --latent_conf stack=2",
        "--inference_args", "--max_frames 20", "--nj", "1", "--inference_nj", "1", "--optional_test_sets", "",
        "--streaming_config", "", "--decode_max_utts", "2", "--stop_stage", "7",
        "--train_args", "--max_epoch 1 --num_iters_per_epoch 2 --batch_bins 3000 --keep_nbest_models 1"]


@pytest.fixture(scope="module")
def recipe(recipe_dir, tmp_path_factory):
    """A recipe dir (real scripts, outputs in tmp) with a 12-sentence, one-voice mini corpus."""
    root = tmp_path_factory.mktemp("finetune")
    for name in ("sled.sh", "run.sh", "path.sh", "cmd.sh", "db.sh", "utils", "local", "conf"):
        (root / name).symlink_to(recipe_dir / name)
    (root / "sentences.txt").write_text("\n".join(SENTENCES) + "\n")
    r = subprocess.run([sys.executable, "local/make_mini_corpus.py", "corpus", "--sentences", "sentences.txt",
                        "--num_dev", "2", "--num_test", "2", "--voices", "flite_slt", "--librivox_dir", "none"],
                       cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return root


def imported(root: Path, name: str, streaming: bool) -> Path:
    from espnet2_sled.bin.import_upstream import import_checkpoint

    write_checkpoint(root / f"{name}_src", streaming=streaming, latent_dim=8, seed=1)
    cwd = os.getcwd()
    os.chdir(root)  # import_upstream names files relative to the cwd, as recipes do
    try:
        return root / import_checkpoint(f"{name}_src", f"{name}_exp", latent="none")
    finally:
        os.chdir(cwd)


def run_recipe(root: Path, *args):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    r = subprocess.run(["./run.sh", "--mini", "true", "--python", sys.executable,
                        "--local_data_opts", "--mini true --mini_dir corpus", *FAST, *args],
                       cwd=root, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-5000:]
    return r


def check_finetuned(exp: Path, pretrained: Path, mode: str):
    config = yaml.safe_load((exp / "config.yaml").read_text())
    source = yaml.safe_load((pretrained / "config.yaml").read_text())
    assert config["token_list"] == source["token_list"] and config["token_type"] == "byte_bpe"
    for key in ("dim", "layers", "heads", "layout"):
        assert config["tts_conf"][key] == source["tts_conf"][key]
    before = torch.load(pretrained / "model.pth", map_location="cpu")
    after = torch.load(exp / "valid.loss.best.pth", map_location="cpu")
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved, "training changed nothing"
    for key in moved:  # a few small updates from the pretrained values, not a fresh start
        a, b = before[key].flatten().double(), after[key].flatten().double()
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9 if a.numel() > 8 else torch.allclose(a, b, atol=0.1)
    wavs = sorted((exp / f"decode_{mode}_valid.loss.best").glob("*/wav/*.wav"))
    assert len(wavs) == 2, wavs
    for wav in wavs:
        audio, rate = sf.read(wav)
        assert rate == 24000 and len(audio) > 0 and np.isfinite(audio).all()


@need("flite", "sox")
def test_finetune_offline_then_streaming_pretrained(recipe):
    offline = imported(recipe, "offline", streaming=False)
    r = run_recipe(recipe, "--pretrained", str(offline), "--tag", "ft_offline", "--decode_modes", "offline")
    assert "dump/token_list" not in r.stderr  # stage 3 trained no tokenizer: the model's own is used
    check_finetuned(recipe / "exp/sled_ft_offline", offline, "offline")
    # stage 9 packs it with its byte-level BPE, and the zip is itself a --pretrained model,
    # whose latent space (mel, 4 x 2) the recipe then extracts with
    run_recipe(recipe, "--pretrained", str(offline), "--tag", "ft_offline", "--stage", "9", "--stop_stage", "9")
    (packed,) = (recipe / "exp/sled_ft_offline").glob("*.zip")
    r = subprocess.run([sys.executable, "local/pretrained_opts.py", "--pretrained", str(packed), "--out", "zipped",
                        "--train_config", "conf/tuning/train_sled_small.yaml"], cwd=recipe, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    shell = dict(line.split("=", 1) for line in r.stdout.splitlines())
    assert shell["token_type"] == "byte_bpe" and shell["bpemodel"].endswith("tokenizer.json")
    assert shell["latent"] == "mel" and "n_mels=4" in shell["latent_opts"] and "stack=2" in shell["latent_opts"]
    assert Path(shell["bpemodel"]).is_file() and Path(shell["pretrained_model"]).is_file()

    streaming = imported(recipe, "streaming", streaming=True)
    # data, latents and length stats from the first run (the two checkpoints share a tokenizer)
    run_recipe(recipe, "--pretrained", str(streaming), "--tag", "ft_streaming", "--decode_modes", "streaming",
                   "--stage", "5", "--stats_dir", "exp/sled_stats_mel_offline_exp")
    check_finetuned(recipe / "exp/sled_ft_streaming", streaming, "streaming")
