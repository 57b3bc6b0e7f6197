"""The chunk-at-a-time encoders of /v1/audio/speech on their own (no model, no server):
every format decodes back to the samples' count and rate, also when resampling to 24 kHz."""

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from espnet2_sled.serve.audio_formats import FORMATS, AudioEncoder
from espnet2_sled.serve.protocol import pcm16


def tone(sample_rate: int, seconds: float = 1.3) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def encode(response_format: str, audio: np.ndarray, sample_rate: int, chunk_samples: int = 1920) -> bytes:
    encoder = AudioEncoder(response_format, sample_rate)
    pcm = pcm16(audio)
    pieces = [encoder.encode(pcm[i:i + 2 * chunk_samples]) for i in range(0, len(pcm), 2 * chunk_samples)]
    return b"".join(pieces) + encoder.finish()


def decode(response_format: str, data: bytes) -> np.ndarray:
    if response_format == "pcm":
        return np.frombuffer(data, dtype="<i2")
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 24000
    return audio


@pytest.mark.parametrize("response_format", FORMATS)
def test_24khz_input_round_trips(response_format):
    audio = tone(24000)
    got = decode(response_format, encode(response_format, audio, 24000))
    if response_format == "mp3":  # encoder delay + the silent placeholder frame + padding (audio_formats.py)
        assert len(audio) + 1681 <= len(got) <= len(audio) + 2256
    elif response_format == "opus":  # lossy, same length
        assert len(got) == len(audio)
    else:  # lossless: the very samples
        assert got.tobytes() == pcm16(audio)


@pytest.mark.parametrize("response_format", ["pcm", "wav", "flac"])
def test_16khz_input_is_resampled_in_chunks_like_in_one_go(response_format):
    audio = tone(16000)
    got = decode(response_format, encode(response_format, audio, 16000)).astype(np.float32) / 32767
    whole = soxr.resample(audio, 16000, 24000)
    assert abs(len(got) - len(whole)) <= 1 and abs(len(got) - 1.5 * len(audio)) <= 2
    n = min(len(got), len(whole))
    assert np.max(np.abs(got[:n] - whole[:n])) < 2e-3  # chunked vs one-shot soxr, plus 16-bit rounding


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="aac"):
        AudioEncoder("aac", 24000)
