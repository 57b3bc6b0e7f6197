"""sled_train (ESPnet's trainer, in a fresh process) for 2 epochs on generated latents, then
decoding via the CLI, a strict checkpoint round trip, and pack -> from_pretrained (ours, and
ESPnet's own Text2Speech in a fresh process)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from espnet2_sled.bin import sled_inference, sled_train
from espnet2_sled.bin.sled_inference import SLEDText2Speech
from espnet2_sled.tasks.sled import SLEDTask
from factory import REPO, load_yaml, train_args, write_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sled")
    data, exp = root / "data", root / "exp"
    write_dataset(data)
    # A fresh process, as the recipe runs it: tts: sled must be known without this test's imports.
    result = subprocess.run([sys.executable, "-m", "espnet2_sled.bin.sled_train", *train_args(data, exp)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return data, exp


def test_training_wrote_checkpoints_and_config(trained):
    data, exp = trained
    assert (exp / "2epoch.pth").is_file() and (exp / "valid.loss.best.pth").exists()
    conf = load_yaml(exp / "config.yaml")
    assert conf["tts"] == "sled" and conf["tts_conf"]["dim"] == 32 and conf["odim"] == 8


def test_checkpoint_round_trips_strictly_through_espnet_loading(trained):
    _, exp = trained
    model, _ = SLEDTask.build_model_from_file(exp / "config.yaml", exp / "2epoch.pth", "cpu")
    saved = torch.load(exp / "2epoch.pth", map_location="cpu", weights_only=True)
    loaded = model.state_dict()
    assert set(saved) == set(loaded), set(saved) ^ set(loaded)
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key
    model.load_state_dict(saved, strict=True)


def cli_decode(data, exp, out, batch_size):
    """Decode the data dir through the CLI; returns {key: npy path} of the generated latents."""
    sled_inference.main([
        "--output_dir", str(out), "--train_config", str(exp / "config.yaml"),
        "--model_file", str(exp / "2epoch.pth"), "--data_path_and_name_and_type", f"{data}/text,text,text",
        "--max_frames", "20", "--batch_size", str(batch_size), "--cfg_scale", "1.5", "--seed", "7",
    ])
    return dict(line.split() for line in (out / "norm/feats.scp").read_text().splitlines())


def test_cli_decoding_writes_espnet_outputs(trained, tmp_path):
    data, exp = trained
    out = tmp_path / "decode"
    scp = cli_decode(data, exp, out, batch_size=3)
    shapes = dict(line.split() for line in (out / "speech_shape/speech_shape").read_text().splitlines())
    assert len(shapes) == 8 and all(int(s.split(",")[1]) == 8 for s in shapes.values())
    timing = [json.loads(line) for line in (out / "timing.jsonl").read_text().splitlines()]
    assert [t["utt_id"] for t in timing] == sorted(shapes)
    feat = np.load(scp["utt003"])
    assert feat.shape[1] == 8 and np.isfinite(feat).all()

    # batch size must not change an utterance's frames (per-utterance noise streams)
    scp1 = cli_decode(data, exp, tmp_path / "decode1", batch_size=1)
    for key in ("utt000", "utt005"):
        a, b = np.load(scp[key]), np.load(scp1[key])
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4


def test_api_forwards_sled_options(trained):
    _, exp = trained
    t2s = SLEDText2Speech(exp / "config.yaml", exp / "2epoch.pth", cfg_scale=1.0, max_frames=6, stop_threshold=1.5)
    assert t2s.decode_conf["cfg_scale"] == 1.0 and t2s.decode_conf["max_frames"] == 6
    a = t2s("the cat sat.", seed=3)
    b = t2s("the cat sat.", seed=3)
    c = t2s("the cat sat.", seed=4)
    assert a["feat_gen"].shape == (6, 8)
    assert torch.equal(a["feat_gen"], b["feat_gen"]) and not torch.equal(a["feat_gen"], c["feat_gen"])
    with pytest.raises(TypeError, match="unknown SLED decoding option"):
        t2s("the cat sat.", maxlenratio=3.0)
    with pytest.raises(ValueError, match="text is empty"):
        t2s("   ")


def test_pack_and_from_pretrained(trained, tmp_path):
    _, exp = trained
    zip_path = tmp_path / "sled.zip"
    subprocess.run(
        [sys.executable, "-m", "espnet2.bin.pack", "tts", "--train_config", str(exp / "config.yaml"),
         "--model_file", str(exp / "2epoch.pth"), "--outpath", str(zip_path)],
        check=True, capture_output=True,
    )
    t2s = SLEDText2Speech.from_pretrained(str(zip_path), cachedir=str(tmp_path / "cache"), max_frames=5,
                                          stop_threshold=1.5)
    out = t2s("hello world.", seed=0)
    assert out["feat_gen"].shape == (5, 8)


def test_espnet_text2speech_loads_a_packed_sled_after_the_registry(trained, tmp_path):
    """ESPnet's own tools with a SLED model, in a fresh process: espnet2.bin.pack, then
    espnet2.bin.tts_inference.Text2Speech.from_pretrained once espnet2_sled.registry is imported
    (which also teaches ESPnet's preprocessor token type byte_bpe)."""
    _, exp = trained
    zip_path = tmp_path / "sled.zip"
    code = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-m', 'espnet2.bin.pack', 'tts', '--train_config', sys.argv[1],\n"
        "                '--model_file', sys.argv[2], '--outpath', sys.argv[3]], check=True)\n"
        "import espnet2_sled.registry\n"
        "from espnet2.bin.tts_inference import Text2Speech\n"
        "from espnet2.train.preprocessor import build_tokenizer\n"
        "assert build_tokenizer.knows_byte_bpe  # token_type byte_bpe, for imported upstream models\n"
        "from espnet_model_zoo.downloader import ModelDownloader\n"
        "files = ModelDownloader(sys.argv[4]).download_and_unpack(sys.argv[3])  # what a model tag resolves to\n"
        "t2s = Text2Speech.from_pretrained(**files)\n"
        "print(type(t2s.tts).__name__, tuple(t2s('hello world.', decode_conf=dict(max_frames=5))['feat_gen'].shape))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(exp / "config.yaml"), str(exp / "2epoch.pth"), str(zip_path),
         str(tmp_path / "cache")], capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "SLED (5, 8)"


def test_train_cli_help_and_missing_args():
    assert sled_train.get_parser().prog
    with pytest.raises(SystemExit):
        sled_train.main([])
