"""bench/mini_learning_curve.py: the long-run probe trains, writes ESPnet-loadable model files,
and its held-out score sees whether a model reads its text."""

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from espnet2_sled.tts.sled import SLED

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "mini_learning_curve.py"


def fake_export(path: Path, odim=6, vocab=12):
    """What ``export`` writes, on latents that depend on the text (frame = one-hot of a token)."""
    g = torch.Generator().manual_seed(0)
    conf = yaml.safe_load((REPO / "conf" / "debug.yaml").read_text())

    def rows(n, prefix):
        out, ids = [], []
        for i in range(n):
            tok = torch.randint(1, vocab - 1, (int(torch.randint(3, 6, (1,), generator=g)),), generator=g)
            frames = torch.zeros(len(tok) * 2, odim)
            frames[torch.arange(len(tok) * 2), tok.repeat_interleave(2) % odim] = 2.0
            q = ((frames + 2.5) / 4.5 * 255).round().to(torch.uint8)  # feats_range (-2.5, 2.0)
            out.append(dict(key=f"{prefix}{i}", sentence="x", feats=q))
            ids.append(tok.to(torch.int16))
        return out, ids

    data = dict(odim=odim, tts_conf=conf["tts_conf"], feats_range=(-2.5, 2.0), tokens={},
                optim=dict(optim_conf=dict(lr=3e-3, weight_decay=0.0), batch_bins=400, grad_clip=1.0,
                           scheduler_conf=dict(warmup_steps_list=[0, 5, 1000], warmup_lr_list=[0.0, 3e-3, 3e-4])))
    token = dict(token_type="word", bpemodel=None, g2p=None, token_list=[f"t{i}" for i in range(vocab)])
    ids = {}
    for name, n in (("train", 24), ("dev", 6), ("test", 6)):
        data[name], ids[name] = rows(n, name)
    extra, extra_ids = rows(4, "gen-")
    data["train"] += extra
    ids["train"] += extra_ids
    data["tokens"]["exp"] = dict(token=token, ids=ids)
    torch.save(data, path)
    return conf, token


def test_train_then_unpack_gives_a_model_espnet_loads(tmp_path):
    conf, token = fake_export(tmp_path / "data.pt")
    r = subprocess.run([sys.executable, str(SCRIPT), "train", "--data", str(tmp_path / "data.pt"),
                        "--out", str(tmp_path / "run" / "a"), "--device", "cpu", "--max_updates", "300",
                        "--eval_every", "150", "--save", "150", "--set", "frame_noise=0.1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    curve = json.loads(r.stdout.split(" CURVE ", 1)[1])
    assert [row["update"] for row in curve["curve"]] == [150, 300]
    assert curve["overrides"] == {"frame_noise": "0.1"}
    assert "24 train" in r.stdout  # the 4 extra rows stay out without --extra
    assert (tmp_path / "run" / "a_upd150.pth").exists()

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(yaml.safe_dump(dict(tts="sled", tts_conf=conf["tts_conf"], odim=6,
                                                         token_type="bpe", token_list=["a"], g2p=None)))
    r = subprocess.run([sys.executable, str(SCRIPT), "unpack", "--ckpt", str(tmp_path / "run" / "a_final.pth"),
                        "--exp", str(exp), "--out", str(tmp_path / "long")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    config = yaml.safe_load((tmp_path / "long" / "config.yaml").read_text())
    assert config["token_list"] == token["token_list"] and config["token_type"] == "word"
    assert config["tts_conf"]["frame_noise"] == 0.1
    state = torch.load(tmp_path / "long" / "valid.loss.best.pth", weights_only=True)
    assert all(k.startswith("tts.") and v.dtype != torch.float16 for k, v in state.items())
    model = SLED(len(config["token_list"]), config["odim"], **config["tts_conf"])
    untrained = heldout_test_score(model, tmp_path / "data.pt")
    model.load_state_dict({k[4:]: v for k, v in state.items()}, strict=True)
    trained = heldout_test_score(model, tmp_path / "data.pt")
    # the probe's own final score is this one, and training lowered it
    assert abs(trained - curve["final"]["test_own"]) < 0.05 and trained < 0.8 * untrained


def heldout_test_score(model, data_path):
    sys.path.insert(0, str(REPO / "bench"))
    import mini_learning_curve as probe

    rows = probe.load_rows(torch.load(data_path, weights_only=True), "test")
    return probe.heldout(model, rows)


def test_extra_rows_join_training_only_when_asked(tmp_path):
    fake_export(tmp_path / "data.pt")
    r = subprocess.run([sys.executable, str(SCRIPT), "train", "--data", str(tmp_path / "data.pt"),
                        "--out", str(tmp_path / "b"), "--device", "cpu", "--max_updates", "1", "--extra"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "28 train / 6 dev" in r.stdout
