"""What ``--model_file`` accepts: a packed zip, an experiment dir, a .pth; errors name the fix."""

import shutil

import pytest
import torch

from espnet2_sled.bin.serve import find_checkpoint, load_synthesizer, main


def test_packed_zip_exp_dir_and_pth_load_the_same_model(server_exp, tmp_path):
    from espnet2.main_funcs.pack_funcs import pack

    checkpoint = find_checkpoint(server_exp)
    assert checkpoint.name == "valid.loss.best.pth"
    zip_path = tmp_path / "sled.zip"
    pack(files=dict(model_file=checkpoint), yaml_files=dict(train_config=server_exp / "config.yaml"),
         outpath=zip_path)
    loaded = [load_synthesizer(str(zip_path), cache_dir=str(tmp_path / "cache")),
              load_synthesizer(str(server_exp)), load_synthesizer(str(checkpoint))]
    reference = loaded[1].tts.state_dict()
    for t2s in loaded:
        state = t2s.tts.state_dict()
        assert set(state) == set(reference) and all(torch.equal(state[k], reference[k]) for k in state)


def test_checkpoint_choice_in_an_exp_dir(tmp_path):
    for name in ("3epoch.pth", "12epoch.pth", "checkpoint.pth"):
        (tmp_path / name).write_bytes(b"")
    assert find_checkpoint(tmp_path).name == "12epoch.pth"
    (tmp_path / "valid.loss.best.pth").write_bytes(b"")
    assert find_checkpoint(tmp_path).name == "valid.loss.best.pth"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint to serve"):
        find_checkpoint(empty)


def test_bad_arguments_name_the_fix(server_exp, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; give a .zip"):
        load_synthesizer(str(tmp_path / "missing.zip"))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(find_checkpoint(server_exp), lonely / "model.pth")
    with pytest.raises(FileNotFoundError, match="pass --train_config"):
        load_synthesizer(str(lonely / "model.pth"))
    with pytest.raises(SystemExit, match="--max_sessions must be >= 1"):
        main(["--model_file", str(server_exp), "--max_sessions", "0"])
