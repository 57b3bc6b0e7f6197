"""Issue 11 item 7: a segment that ends past the end of its recording is an error naming the
utterance and file (or, with --skip_bad true, a logged skip), never a silent truncation."""

import numpy as np
import pytest
import soundfile as sf

from espnet2_sled.bin import extract_latents
from espnet2_sled.latent.audio import AudioError


def data_dir(tmp_path, segments):
    """One 2.0 s recording 'rec' at 16 kHz and the given segments lines."""
    wav = tmp_path / "rec.wav"
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 200 * np.arange(32000) / 16000), 16000)
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec {wav}\n")
    (data / "segments").write_text("".join(f"{line}\n" for line in segments))
    return data, wav


def extract(data, out, *extra):
    extract_latents.main(["--data_dir", str(data), "--output_dir", str(out), "--latent", "mel", *extra])


def test_segment_past_the_end_is_named(tmp_path):
    data, wav = data_dir(tmp_path, ["a rec 0.0 1.0", "b rec 1.0 2.6"])
    with pytest.raises(AudioError) as err:
        extract(data, tmp_path / "out")
    message = str(err.value)
    assert f"utterance 'b' (file '{wav}')" in message
    assert "[1.0, 2.6) s ends past the end of the file (2.000 s)" in message and "--skip_bad" in message
    assert not (tmp_path / "out" / "feats.scp").exists()  # nothing that looks complete


def test_skip_bad_lists_it_and_keeps_the_rest(tmp_path):
    # ms-rounded timestamps (2.0004 s on a 2.0 s file) are still a whole segment
    data, _ = data_dir(tmp_path, ["a rec 0.0 1.0", "b rec 1.0 2.6", "c rec 1.5 2.0004"])
    out = tmp_path / "out"
    extract(data, out, "--skip_bad", "true")
    assert [line.split()[0] for line in (out / "feats.scp").read_text().splitlines()] == ["a", "c"]
    bad = dict(line.split("\t", 1) for line in (out / "bad_utts").read_text().splitlines())
    assert list(bad) == ["b"] and "ends past the end of the file" in bad["b"]
    shapes = dict(line.split() for line in (out / "speech_shape").read_text().splitlines())
    assert shapes["c"].split(",")[0] == "38"  # 0.5 s at 75 frames/s, as a 1.5..2.0 segment
