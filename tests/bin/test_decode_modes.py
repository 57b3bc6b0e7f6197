"""The decoding CLI's streaming, voice-cloning and continuation modes, on a tiny trained
streaming model with the weight-free mel latent (so that audio is produced), two 75-Hz mel
frames per latent frame (hop 640 samples)."""

import json

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_sled.bin import sled_inference, sled_train
from factory import DEBUG_CONF, train_args, write_dataset

HOP = 640  # samples per latent frame: 2 stacked mel frames of 320


@pytest.fixture(scope="module")
def streaming_exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    data, exp = root / "data", root / "exp"
    write_dataset(data, odim=8)
    conf = yaml.safe_load(DEBUG_CONF.read_text())
    conf["tts_conf"].update(layout="packed", latent="mel", latent_conf=dict(n_mels=4, stack=2, griffin_lim_iters=4))
    conf.update(max_epoch=1, num_iters_per_epoch=2)
    (root / "conf.yaml").write_text(yaml.safe_dump(conf))
    sled_train.main(train_args(data, exp, config=root / "conf.yaml"))
    return root, data, exp


def decode(exp, data, out, *extra):
    sled_inference.main([
        "--output_dir", str(out), "--train_config", str(exp / "config.yaml"), "--model_file", str(exp / "1epoch.pth"),
        "--data_path_and_name_and_type", f"{data}/text,text,text", "--max_frames", "12", "--stop_threshold", "1.5",
        *extra,
    ])
    timing = [json.loads(line) for line in (out / "timing.jsonl").read_text().splitlines()]
    return timing


def test_streaming_mode_writes_audio_and_first_audio_time(streaming_exp, tmp_path):
    _, data, exp = streaming_exp
    timing = decode(exp, data, tmp_path / "s", "--streaming", "true", "--stream_text_by", "word")
    assert len(timing) == 8
    for t in timing:
        assert t["frames"] == 12 and 0 < t["first_audio_seconds"] <= t["compute_seconds"]
        assert len(t["chunk_compute_seconds"]) == 3  # frames_per_chunk 4 in the debug config
        wav, fs = sf.read(tmp_path / "s" / "wav" / f"{t['utt_id']}.wav")
        assert fs == 24000 and len(wav) == 12 * HOP and t["rtf"] > 0


def test_voice_cloning_mode(streaming_exp, tmp_path):
    root, data, exp = streaming_exp
    prompt = root / "prompt.wav"
    sf.write(prompt, 0.1 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220), 16000)  # 16 kHz: resampled
    keys = [line.split()[0] for line in (data / "text").read_text().splitlines()]
    (root / "prompt.scp").write_text("".join(f"{k} {prompt}\n" for k in keys))
    (root / "prompt_text").write_text("".join(f"{k} a low hum.\n" for k in keys))
    timing = decode(exp, data, tmp_path / "c", "--prompt_wav_scp", str(root / "prompt.scp"),
                    "--prompt_text", str(root / "prompt_text"))
    assert all(t["frames"] == 12 for t in timing)
    wav, _ = sf.read(tmp_path / "c" / "wav" / "utt000.wav")
    assert len(wav) == 12 * HOP  # the prompt's audio is cut off

    missing = root / "missing.scp"
    missing.write_text("".join(f"{k} {root}/nope.wav\n" for k in keys))
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        decode(exp, data, tmp_path / "m", "--prompt_wav_scp", str(missing), "--prompt_text", str(root / "prompt_text"))
    (root / "empty_text").write_text("".join(f"{k}\n" for k in keys))
    with pytest.raises(ValueError, match="prompt_text is empty"):
        decode(exp, data, tmp_path / "e", "--prompt_wav_scp", str(root / "prompt.scp"),
               "--prompt_text", str(root / "empty_text"))


def test_continuation_mode(streaming_exp, tmp_path):
    _, data, exp = streaming_exp
    out = tmp_path / "k"
    timing = decode(exp, data, out, "--continuation_seconds", "0.04", "--keep_prompt_audio", "true",
                    "--data_path_and_name_and_type", f"{data}/feats.scp,speech,kaldi_ark")
    assert all(t["frames"] == 12 for t in timing)
    wav, _ = sf.read(out / "wav" / "utt001.wav")
    assert len(wav) == (2 + 12) * HOP  # 0.04 s = 1.5 frames -> 2 frames of prefix kept in front
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    assert feats["utt001"].shape[1] == 8


def test_streaming_fine_tune_from_offline_checkpoint(tmp_path):
    """Stage 6: a streaming config initialised from an offline model through --init_param."""
    import torch

    data = tmp_path / "data"
    write_dataset(data, odim=8)
    offline = tmp_path / "offline"
    conf = yaml.safe_load(DEBUG_CONF.read_text())
    conf.update(max_epoch=1, num_iters_per_epoch=1)
    (tmp_path / "offline.yaml").write_text(yaml.safe_dump(conf))
    sled_train.main(train_args(data, offline, config=tmp_path / "offline.yaml"))
    conf["tts_conf"].update(layout="packed", stop_threshold=0.5)
    conf.update(optim_conf=dict(lr=0.0))  # lr 0: the fine-tuned weights must equal the initial ones
    (tmp_path / "streaming.yaml").write_text(yaml.safe_dump(conf))
    streaming = tmp_path / "streaming"
    sled_train.main(train_args(data, streaming, config=tmp_path / "streaming.yaml",
                               extra=["--init_param", str(offline / "1epoch.pth")]))
    a, b = (torch.load(d / "1epoch.pth", weights_only=True) for d in (offline, streaming))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert yaml.safe_load((streaming / "config.yaml").read_text())["tts_conf"]["layout"] == "packed"
