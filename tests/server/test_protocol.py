"""The protocol alone (no server): the 16-bit conversion, the WAV wrapper, message order rules."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet2_sled.serve.protocol import (
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    Limits,
    RequestError,
    StreamRequest,
    pcm16,
    wav_bytes,
)


def test_pcm16_scales_rounds_and_clips():
    audio = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -3.0, 1.4e-5, 1.6e-5])
    samples = np.frombuffer(pcm16(audio), dtype="<i2")
    assert samples.tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32768, 0, 1]
    assert pcm16(audio) == pcm16(audio.numpy())


def test_wav_holds_the_same_samples():
    pcm = pcm16(np.sin(np.arange(1000) / 10).astype(np.float32) * 0.3)
    wav, fs = sf.read(io.BytesIO(wav_bytes(pcm, 24000)), dtype="int16")
    assert fs == 24000 and wav.tobytes() == pcm


def test_stream_request_order_and_limits():
    request = StreamRequest(Limits(max_text_chars=10))
    first = request.parse('{"text": "the ", "seed": 3, "cfg_scale": 1}')
    assert first.text == "the " and first.options.seed == 3 and first.options.cfg_scale == 1.0
    assert request.parse('{"text": "cat "}').options is None
    with pytest.raises(RequestError) as e:
        request.parse('{"text": "sat on"}')  # 4 + 4 + 6 > 10
    assert e.value.code == MESSAGE_TOO_BIG and e.value.http_status == 413
    request = StreamRequest(Limits())
    assert request.parse('{"text": "the cat.", "end": true}').end
    with pytest.raises(RequestError) as e:
        request.parse('{"text": "more"}')
    assert e.value.error == "text_after_end" and e.value.code == POLICY_VIOLATION


@pytest.mark.parametrize("message, error", [
    ('{"text": "a", "end": "yes"}', "invalid_option"),
    ('{"text": 5}', "invalid_option"),
    ('{"text": "a", "seed": 1.5}', "invalid_option"),
    ('{"text": "a", "seed": true}', "invalid_option"),
    ('{"text": "a", "cfg_scale": NaN}', "invalid_option"),
    ('{"text": "a", "stop_threshold": 0}', "invalid_option"),
    ('{"text": "a", "max_frames": 100000}', "invalid_option"),
    ('{"text": "a", "prompt_text": "hi"}', "invalid_option"),
    ('{}', "empty_text"),
    ('"text"', "invalid_json"),
])
def test_bad_first_messages(message, error):
    with pytest.raises(RequestError) as e:
        StreamRequest(Limits(max_frames=512)).parse(message)
    assert e.value.error == error and e.value.message
