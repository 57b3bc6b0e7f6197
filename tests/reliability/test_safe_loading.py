"""Issue 11 item 1: model files are read as weights only (a pickle with code is refused, and
its code never runs) and strictly (missing / unexpected keys are named), through the
Python API (model file, packed zip), ``sled_inference --model_file``, ``sled_train
--init_param`` and resume."""

import shutil

import pytest
import torch

from espnet2_sled.bin import sled_inference, sled_train
from espnet2_sled.checkpoint import CheckpointError, read_resume_file
from espnet2_sled.tasks.sled import SLEDTask
from espnet2_sled.text2speech import SLEDText2Speech
from factory import train_args


class CreatesFile:
    """Unpickling this calls open(path, 'w'): the file appears iff the pickle's code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def crafted(exp, tmp_path, name="evil.pth"):
    """A real state dict of the model plus one object whose unpickling creates a marker file."""
    state = torch.load(exp / "1epoch.pth", map_location="cpu", weights_only=True)
    marker = tmp_path / f"{name}.ran"
    state["tts.lm.stop_head.weight"] = CreatesFile(marker)
    path = tmp_path / name
    torch.save(state, path)
    return path, marker


def test_api_refuses_a_pickle_with_code_and_never_runs_it(trained, tmp_path):
    _, exp = trained
    evil, marker = crafted(exp, tmp_path)
    for load in (lambda: SLEDText2Speech(exp / "config.yaml", evil),
                 lambda: SLEDTask.build_model_from_file(exp / "config.yaml", evil, "cpu")):
        with pytest.raises(CheckpointError) as err:
            load()
        assert f"model file '{evil}' holds more than tensors and was refused" in str(err.value)
        assert "asks for 'io.open'" in str(err.value)
        assert not marker.exists()

    # a packed zip (espnet2.bin.pack) goes through the same loader in from_pretrained
    from espnet2.bin.pack import main as pack

    pack(["tts", "--train_config", str(exp / "config.yaml"), "--model_file", str(evil),
          "--outpath", str(tmp_path / "evil.zip")])
    with pytest.raises(CheckpointError, match=r"evil.pth' holds more than tensors and was refused"):
        SLEDText2Speech.from_pretrained(str(tmp_path / "evil.zip"), cachedir=str(tmp_path / "cache"))
    assert not marker.exists()

def test_missing_unexpected_and_mismatched_keys_are_named(trained, tmp_path):
    _, exp = trained
    state = torch.load(exp / "1epoch.pth", map_location="cpu", weights_only=True)
    del state["tts.lm.stop_head.weight"]
    state["tts.lm.not_a_layer.weight"] = torch.zeros(3)
    state["tts.lm.frame_proj.bias"] = torch.zeros(5)
    bad = tmp_path / "bad_keys.pth"
    torch.save(state, bad)
    with pytest.raises(CheckpointError) as err:
        SLEDText2Speech(exp / "config.yaml", bad)
    message = str(err.value)
    assert str(bad) in message
    assert "missing keys: tts.lm.stop_head.weight" in message
    assert "unexpected keys: tts.lm.not_a_layer.weight" in message
    assert "tts.lm.frame_proj.bias (5,) vs (32,)" in message

    # the trainer's checkpoint.pth (numpy scalars in its reporter) is not a model file: say which to use
    with pytest.raises(CheckpointError, match="checkpoint.pth' holds more than tensors.*NNepoch.pth"):
        SLEDTask.build_model_from_file(exp / "config.yaml", exp / "checkpoint.pth")


def test_good_model_file_still_loads_exactly(trained):
    _, exp = trained
    t2s = SLEDText2Speech(exp / "config.yaml", exp / "1epoch.pth", max_frames=3)
    saved = torch.load(exp / "1epoch.pth", map_location="cpu", weights_only=True)
    for key, value in t2s.model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_sled_inference_cli_refuses_a_pickle_with_code(trained, tmp_path):
    # in-process main() (a fresh-process run of this CLI is test_no_downloads.py's)
    data, exp = trained
    evil, marker = crafted(exp, tmp_path)
    with pytest.raises(CheckpointError, match=f"model file '{evil}' holds more than tensors and was refused"):
        sled_inference.main(["--output_dir", str(tmp_path / "out"), "--train_config", str(exp / "config.yaml"),
                             "--model_file", str(evil), "--data_path_and_name_and_type", f"{data}/text,text,text",
                             "--max_frames", "3"])
    assert not marker.exists()
    assert not (tmp_path / "out" / "wav" / "wav.scp").exists()  # nothing decoded with random weights


def test_sled_train_init_param_refuses_a_pickle_with_code_and_checks_keys(trained, tmp_path, run_cli):
    data, exp = trained
    evil, marker = crafted(exp, tmp_path)
    one_iter = ["--max_epoch", "1", "--num_iters_per_epoch", "1"]
    r = run_cli("espnet2_sled.bin.sled_train",
                *train_args(data, tmp_path / "ft", extra=[*one_iter, "--init_param", evil]))
    assert r.returncode != 0
    assert f"model file '{evil}' holds more than tensors and was refused" in r.stderr
    assert not marker.exists() and not (tmp_path / "ft" / "1epoch.pth").exists()

    # in-process: a file with a stray key is named; a good one initialises the model exactly
    state = torch.load(exp / "1epoch.pth", map_location="cpu", weights_only=True)
    state["tts.lm.extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected keys: tts.lm.extra.weight"):
        sled_train.main(train_args(data, tmp_path / "ft2",
                                   extra=[*one_iter, "--init_param", str(tmp_path / "extra.pth")]))
    lr0 = ["--optim_conf", "lr=0.0"]  # the fine-tuned weights stay the initial ones
    sled_train.main(train_args(data, tmp_path / "ft3",
                               extra=[*one_iter, *lr0, "--init_param", str(exp / "1epoch.pth")]))
    out = torch.load(tmp_path / "ft3" / "1epoch.pth", map_location="cpu", weights_only=True)
    del state["tts.lm.extra.weight"]
    assert all(torch.equal(out[k], state[k]) for k in state)


def test_resume_reads_the_trainer_checkpoint_weights_only(trained, tmp_path):
    data, exp = trained
    resumed = tmp_path / "resumed"
    shutil.copytree(exp, resumed, symlinks=True)
    sled_train.main(train_args(data, resumed,
                               extra=["--max_epoch", "2", "--num_iters_per_epoch", "1", "--resume", "true"]))
    assert (resumed / "2epoch.pth").is_file()

    marker = tmp_path / "resume.ran"
    states = read_resume_file(exp / "checkpoint.pth")  # the reader resume uses
    states["reporter"]["extra"] = CreatesFile(marker)
    torch.save(states, resumed / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="checkpoint.pth' holds more than tensors"):
        sled_train.main(train_args(data, resumed,
                                   extra=["--max_epoch", "3", "--num_iters_per_epoch", "1", "--resume", "true"]))
    assert not marker.exists()
