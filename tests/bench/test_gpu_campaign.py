"""The GPU campaign, checked on the CPU before GPU time is spent on it (issue #25): the corpus
pack round-trips within its stated error; the campaign script itself (DRY_RUN=1, ESPnet made
unimportable as on the GPU machine) trains its three configurations a few updates on a tiny
pack made here, and one of its checkpoints goes through the CPU side: unpack into an exp dir,
decode, score with the recipe's scorer, report rows and audio."""

import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from espnet2_sled.bin import sled_train
from factory import DEBUG_CONF, REPO, train_args, write_dataset

BENCH = REPO / "bench"
RECIPE = REPO / "egs2" / "libriheavy" / "sled"
sys.path.insert(0, str(BENCH))
from latent_pack import MAX_ERROR_OF_STEP, decode_latents, encode_latents  # noqa: E402

NO_ESPNET = """import sys
class NoESPnet:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("espnet", "espnet2"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: the GPU machine has no ESPnet)")
sys.meta_path.insert(0, NoESPnet())
"""


def test_pack_round_trips_within_half_a_step():
    g = torch.Generator().manual_seed(0)
    # log-mel-like: a floor, smooth in time, plus one constant utterance and one frame long
    smooth = torch.cumsum(torch.randn(50, 12, generator=g) * 0.3, 0) - 4.0
    latents = [smooth.clamp(min=-6.0), torch.full((7, 12), -11.5), torch.randn(1, 12, generator=g) * 5,
               torch.randn(300, 12, generator=g).double()]
    for split, levels in ((1, 255), (3, 63), (3, 15)):
        packed = encode_latents(latents, split=split, levels=levels)
        back = decode_latents(packed)
        for x, y, step in zip(latents, back, packed["step"].tolist()):
            assert y.shape == x.shape and y.dtype == torch.float32
            assert float((y.double() - x.double()).abs().max()) <= step * MAX_ERROR_OF_STEP + 1e-5
            assert step <= (float(x.max()) - float(x.min())) / levels + 1e-6  # levels over the utterance's range


def make_tiny_corpus(root: Path):
    """The factory corpus (8 utterances, odim 8 = 4 mels x 2 stacked) with flite ground truth,
    and a template exp trained on it (its config.yaml goes into the pack)."""
    data = root / "data"
    keys, _ = write_dataset(data, odim=8)
    texts = dict(line.split(" ", 1) for line in (data / "text").read_text().splitlines())
    with open(data / "wav.scp", "w") as f:
        for key in keys:
            wav = root / f"{key}.wav"
            subprocess.run(["flite", "-voice", "slt", "-t", texts[key], "-o", str(wav)], check=True)
            f.write(f"{key} {wav}\n")
    conf = yaml.safe_load(DEBUG_CONF.read_text())
    conf["tts_conf"].update(latent="mel", latent_conf=dict(n_mels=4, stack=2, griffin_lim_iters=2))
    conf.update(max_epoch=1, num_iters_per_epoch=1)
    (root / "conf.yaml").write_text(yaml.safe_dump(conf))
    sled_train.main(train_args(data, root / "template", config=root / "conf.yaml"))
    return data, root / "template"


def run(*args, cwd=REPO, env=None):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return r


def test_campaign_dry_run_then_score_on_the_cpu(tmp_path):
    if subprocess.run(["which", "flite"], capture_output=True).returncode != 0:
        import pytest

        pytest.skip("needs flite")
    data, template = make_tiny_corpus(tmp_path)
    pack = tmp_path / "pack" / "tiny.pack"
    sets = [data] * 3  # train, dev, test: the same 8 utterances (a dry run, not a measurement)
    r = run(sys.executable, BENCH / "latent_pack.py", "make", "--exp", template, "--model", "1epoch.pth",
            "--data_dirs", *sets, "--latent_dirs", *sets, "--out", pack)
    assert "train (" in r.stdout and "8 utterances" in r.stdout
    r = run(sys.executable, BENCH / "latent_pack.py", "check", "--pack", pack, "--data_dirs", *sets,
            "--latent_dirs", *sets)
    assert f"(bound {MAX_ERROR_OF_STEP})" in r.stdout

    # the campaign, as the GPU machine runs it: no ESPnet importable
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(NO_ESPNET)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(block), str(REPO)]), PYTHON=sys.executable,
               OUT=str(tmp_path / "OUT"), PACK=str(pack), DRY_RUN="1", CAMPAIGN_SECONDS="400")
    run("bash", BENCH / "gpu_campaign.sh", env=env)
    out = tmp_path / "OUT"
    log = (out / "campaign.log").read_text()
    assert "stand-ins for AbsTTS" in log and log.count("bf16 True") == 3  # no ESPnet; autocast as on the GPU
    assert sorted(p.name for p in out.iterdir()) == ["campaign.log", "curve.tsv", "small.pth",
                                                     "small_framedrop.pth", "wide.pth"]
    header, *lines = (out / "curve.tsv").read_text().splitlines()
    rows = [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]
    for name in ("small", "small_framedrop", "wide"):
        mine = [r for r in rows if r["name"] == name]
        assert [r["update"] for r in mine] == ["1", "2", "3", "3"]  # every update, then the last row
        assert all(float(r["ed_own"]) > 0 for r in mine)
    wide = torch.load(out / "wide.pth", weights_only=True)
    assert wide["update"] == 3 and wide["config"]["tts_conf"]["dim"] == 320
    assert wide["config"]["tts_conf"]["frame_drop"] == 0.5 and wide["config"]["batch_bins"] == 1600000
    assert all(v.dtype == torch.float16 for v in wide["state"].values() if v.is_floating_point())

    # back on the CPU: one command per checkpoint
    results = tmp_path / "results"
    run(sys.executable, BENCH / "campaign_score.py", "--ckpt", out / "small_framedrop.pth", "--name", "gpu_fd",
        "--exp_root", tmp_path / "exp", "--results", results, "--data", data, "--latents", data / "feats.scp",
        "--max_utts", 3, "--max_frames", 12, "--listen", 2, cwd=RECIPE)
    header, line = (results / "gpu_fd_learning_curve.tsv").read_text().splitlines()
    row = dict(zip(header.split("\t"), line.split("\t")))
    assert row["epoch"] == "1" and row["updates"] == "3"
    assert float(row["wer_groundtruth"]) < 0.5 and float(row["wer"]) >= 0 and float(row["tf_wer_other"]) >= 0
    # the unpacked model is the trained one: its held-out ED on the original latents is the
    # campaign's last row, up to fp16 weights and 6-bit latents
    last = [r for r in rows if r["name"] == "small_framedrop"][-1]
    assert abs(float(row["ed_own"]) - float(last["ed_own"])) < 0.02 * float(last["ed_own"])
    assert "best held-out WER" in (results / "gpu_fd_learning_curve.md").read_text()
    assert (results / "gpu_fd_learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((results / "gpu_fd_audio").glob("*.flac"))) == 2
    config = yaml.safe_load((tmp_path / "exp" / "gpu_fd" / "config.yaml").read_text())
    assert config["tts_conf"]["frame_drop"] == 0.5 and config["token_list"][0] == "<blank>"


def test_bad_inputs_are_named_with_the_fix(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "OUT"), PACK=str(tmp_path / "none.pack"), DRY_RUN="1")
    r = subprocess.run(["bash", str(BENCH / "gpu_campaign.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and f"no pack at {tmp_path / 'none.pack'}: make it with bench/gpu_pack.sh" in r.stdout
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "text").write_text("u1 hello\n")
    (tmp_path / "feats.scp").write_text("")
    torch.save({"tts.x": torch.zeros(1)}, tmp_path / "model.pth")  # an ESPnet model file, not a campaign checkpoint
    r = subprocess.run([sys.executable, str(BENCH / "campaign_score.py"), "--ckpt", str(tmp_path / "model.pth"),
                        "--name", "x", "--exp_root", str(tmp_path / "exp"), "--data", str(tmp_path / "data"),
                        "--latents", str(tmp_path / "feats.scp")], capture_output=True, text=True, cwd=RECIPE)
    assert r.returncode == 1 and "is not a campaign checkpoint" in r.stderr and "campaign_train.py" in r.stderr
    assert not (tmp_path / "exp").exists()  # nothing half-written
