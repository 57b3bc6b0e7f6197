"""Audio loading: mono 24 kHz from any rate/channels, segments, clear errors naming the file."""


import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_sled.latent import MelLatent
from espnet2_sled.latent.audio import AudioError, load_audio


def write(path, seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = tone if channels == 1 else np.stack([tone] * channels, axis=1)
    sf.write(path, data, rate)
    return str(path)


@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2), (24000, 1)])
def test_resampled_to_24k_mono_gives_right_frame_count(tmp_path, rate, channels):
    path = write(tmp_path / "a.flac", 1.0, rate, channels)
    audio = load_audio(path)
    assert audio.ndim == 1 and audio.dtype == np.float32 and abs(len(audio) - 24000) <= 1
    assert MelLatent().encode(torch.from_numpy(audio)).shape[1] == 75
    assert abs(np.abs(audio).max() - 0.3) < 0.02


def test_tensor_input_rates(encodec):
    stereo_44k = torch.randn(1, 2, 44100) * 0.1
    assert encodec.encode(stereo_44k, sample_rate=44100).shape == (1, 75, 128)


def test_segment(tmp_path):
    path = write(tmp_path / "a.wav", 2.0, 16000)
    assert abs(len(load_audio(path, start=0.5, end=1.25)) - 18000) <= 1


def test_errors_name_the_file_and_utterance(tmp_path):
    with pytest.raises(AudioError, match="utterance 'u1'.*missing.wav.*does not exist"):
        load_audio(str(tmp_path / "missing.wav"), name="u1")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00junk" * 10)
    with pytest.raises(AudioError, match="corrupt.wav.*could not be read"):
        load_audio(str(corrupt))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty.wav.*is empty"):
        load_audio(str(empty))
    path = write(tmp_path / "a.wav", 1.0, 16000)
    with pytest.raises(AudioError, match="segment"):
        load_audio(path, start=0.5, end=0.5)
