"""extract_latents: Kaldi dir -> ark/scp/shape, job splitting + merge, resume after a kill,
bad audio (error or logged skip), segments, latent.yaml."""

import math
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_sled.bin import extract_latents as cli
from espnet2_sled.latent import EncodecLatent
from espnet2_sled.latent.audio import AudioError, load_audio

RANDOM = ["--latent", "encodec", "--weights", "random", "--num_threads", "2"]


def make_data_dir(root, lengths, rate=16000, extra_lines=()):
    """Utterances u00.. of the given sample counts (tones at ``rate``) -> Kaldi dir."""
    audio_dir, data = root / "audio", root / "data"
    audio_dir.mkdir(parents=True)
    data.mkdir()
    lines = []
    for i, n in enumerate(lengths):
        path = audio_dir / f"u{i:02d}.wav"
        t = np.arange(n) / rate
        sf.write(path, 0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t), rate)
        lines.append(f"u{i:02d} {path}")
    (data / "wav.scp").write_text("\n".join(lines + list(extra_lines)) + "\n")
    return data


def run(data, out, *extra, on_commit=None):
    args = cli.get_parser().parse_args(["--data_dir", str(data), "--output_dir", str(out), *RANDOM, *extra])
    return cli.extract(args, on_commit=on_commit)


def read_scp(path):
    return path.read_text().splitlines()


def test_single_run_writes_ark_scp_shape_and_yaml(tmp_path):
    lengths = [16000, 8017, 213 * 2]  # 16 kHz -> 24 kHz: 24000, 12026, 639 samples
    data = make_data_dir(tmp_path, lengths)
    out = tmp_path / "out"
    cli.main(["--data_dir", str(data), "--output_dir", str(out), *RANDOM, "--batch_size", "2"])
    scp = dict(line.split() for line in read_scp(out / "feats.scp"))
    assert list(scp) == ["u00", "u01", "u02"]
    space = EncodecLatent(weights="random")
    for i, key in enumerate(scp):
        matrix = kaldiio.load_mat(scp[key])
        samples = round(lengths[i] * 24000 / 16000)
        assert matrix.dtype == np.float32 and matrix.shape == (math.ceil(samples / 320), 128)
        import torch
        direct = space.encode(torch.from_numpy(load_audio(str(tmp_path / "audio" / f"{key}.wav"))))[0]
        np.testing.assert_allclose(matrix, direct.numpy(), atol=1e-4)  # batched == single
    shapes = (out / "speech_shape").read_text().splitlines()
    assert shapes[0] == "u00 75,128" and shapes[2] == "u02 2,128"
    info = yaml.safe_load((out / "latent.yaml").read_text())
    assert info["latent"] == "encodec" and info["latent_dim"] == 128 and info["frame_rate"] == 75.0
    assert info["latent_conf"]["weights"] == "random"


def test_jobs_and_merge_equal_single_run(tmp_path):
    data = make_data_dir(tmp_path, [3200 + 100 * i for i in range(7)])
    single, parts = tmp_path / "single", tmp_path / "parts"
    cli.main(["--data_dir", str(data), "--output_dir", str(single), "--latent", "mel"])
    for job in (1, 2, 3):
        cli.main(["--data_dir", str(data), "--output_dir", str(parts), "--latent", "mel",
                  "--nj", "3", "--job", str(job)])
    assert len(read_scp(parts / "feats.1.scp")) == 2 and len(read_scp(parts / "feats.3.scp")) == 3
    cli.main(["--data_dir", str(data), "--output_dir", str(parts), "--nj", "3", "--merge", "true"])
    merged = [line.split() for line in read_scp(parts / "feats.scp")]
    assert [k for k, _ in merged] == sorted(k for k, _ in merged) and len(merged) == 7
    for (key, value), (key1, value1) in zip(merged, [line.split() for line in read_scp(single / "feats.scp")]):
        assert key == key1
        np.testing.assert_array_equal(kaldiio.load_mat(value), kaldiio.load_mat(value1))
    assert (parts / "speech_shape").read_text() == (single / "speech_shape").read_text()
    assert yaml.safe_load((parts / "latent.yaml").read_text())["latent_dim"] == 80


def test_key_file_job(tmp_path):
    data = make_data_dir(tmp_path, [3200] * 4)
    keys = tmp_path / "keys.2"
    keys.write_text("u01\nu03\n")
    cli.main(["--data_dir", str(data), "--output_dir", str(tmp_path / "o"), "--latent", "mel",
              "--key_file", str(keys), "--job", "2"])
    assert [line.split()[0] for line in read_scp(tmp_path / "o" / "feats.2.scp")] == ["u01", "u03"]


class Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    data = make_data_dir(tmp_path, [4000 + 300 * i for i in range(6)])
    full, broken = tmp_path / "full", tmp_path / "broken"
    run(data, full, "--nj", "1", "--job", "1", "--batch_size", "1")

    def kill_after_three(key, seen=[]):
        seen.append(key)
        if len(seen) == 3:
            raise Killed

    with pytest.raises(Killed):
        run(data, broken, "--nj", "1", "--job", "1", "--batch_size", "1", on_commit=kill_after_three)
    assert len(read_scp(broken / "feats.1.scp")) == 3
    # a half-written next matrix and a partial scp line, as a kill mid-write would leave
    with open(broken / "feats.1.ark", "ab") as ark:
        ark.write(b"u03 \x00BFM \x04" + b"\x07" * 50)
    with open(broken / "feats.1.scp", "a") as scp:
        scp.write("u03 " + str(broken / "feats.1.ark"))
    committed = []
    run(data, broken, "--nj", "1", "--job", "1", "--batch_size", "1", on_commit=committed.append)
    assert committed == ["u03", "u04", "u05"]  # finished ones were skipped
    assert read_scp(broken / "feats.1.scp") == [
        line.replace(str(full), str(broken)) for line in read_scp(full / "feats.1.scp")
    ]
    assert (broken / "feats.1.ark").read_bytes() == (full / "feats.1.ark").read_bytes()
    assert (broken / "speech_shape.1").read_text() == (full / "speech_shape.1").read_text()
    # a third run has nothing to do and changes nothing
    run(data, broken, "--nj", "1", "--job", "1", on_commit=committed.append)
    assert len(committed) == 3 and len(read_scp(broken / "feats.1.scp")) == 6


def test_bad_audio_errors_name_utterance_and_file(tmp_path):
    data = make_data_dir(tmp_path, [3200, 100], extra_lines=[f"u09 {tmp_path}/nowhere.wav"])
    with pytest.raises(AudioError, match=r"utterance 'u01'.*u01.wav.*shorter than one frame.*--skip_bad"):
        run(data, tmp_path / "o")


def test_bad_audio_skipped_and_logged(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"not audio at all")
    data = make_data_dir(tmp_path, [3200, 100, 0],
                         extra_lines=[f"u08 {corrupt}", f"u09 {tmp_path}/nowhere.wav"])
    out = tmp_path / "o"
    cli.main(["--data_dir", str(data), "--output_dir", str(out), *RANDOM, "--skip_bad", "true"])
    assert [line.split()[0] for line in read_scp(out / "feats.scp")] == ["u00"]
    bad = dict(line.split("\t", 1) for line in (out / "bad_utts").read_text().splitlines())
    assert sorted(bad) == ["u01", "u02", "u08", "u09"]
    assert "shorter than one frame" in bad["u01"] and "is empty" in bad["u02"]
    assert "could not be read" in bad["u08"] and "does not exist" in bad["u09"]


def test_segments(tmp_path):
    data = make_data_dir(tmp_path, [32000])
    (data / "wav.scp").write_text((data / "wav.scp").read_text().replace("u00 ", "rec "))
    (data / "segments").write_text("s1 rec 0.0 0.5\ns2 rec 0.5 1.99\n")
    out = tmp_path / "o"
    cli.main(["--data_dir", str(data), "--output_dir", str(out), "--latent", "mel"])
    assert (out / "speech_shape").read_text() == "s1 38,80\ns2 112,80\n"


def test_merge_refuses_incomplete_jobs(tmp_path):
    data = make_data_dir(tmp_path, [3200] * 4)
    out = tmp_path / "o"
    cli.main(["--data_dir", str(data), "--output_dir", str(out), "--latent", "mel", "--nj", "2", "--job", "1"])
    with pytest.raises(FileNotFoundError, match="feats.2.scp"):
        cli.main(["--data_dir", str(data), "--output_dir", str(out), "--nj", "2", "--merge", "true"])


def test_command_line_entry_point(tmp_path):
    data = make_data_dir(tmp_path, [3200])
    result = subprocess.run([sys.executable, "-m", "espnet2_sled.bin.extract_latents", "--data_dir", str(data),
                             "--output_dir", str(tmp_path / "o"), "--latent", "mel"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "feats.scp").read_text().startswith("u00 ")
