"""MelLatent: frame count like Encodec, fixed scaling, Griffin-Lim decodes to the right
length and back to nearly the same mel; streaming is approximate but close."""

import math

import pytest
import torch

from espnet2_sled.latent import MelLatent, build_latent_space


@pytest.fixture(scope="module")
def mel():
    return MelLatent(griffin_lim_iters=16)


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 24000 + 17])
def test_frames_and_decoded_length(mel, speech, samples):
    frames = mel.encode(speech(samples))
    assert frames.shape == (1, math.ceil(samples / 320), 80)
    assert torch.isfinite(frames).all()
    assert mel.decode(frames).shape == (1, frames.shape[1] * 320)


def test_scaling_is_fixed_and_roughly_unit(mel, speech):
    frames = mel.encode(speech(24000))
    assert -3.5 < frames.min() and frames.max() < 3.5
    assert 0.3 < frames.std() < 2.0
    silence = mel.encode(torch.zeros(3200))
    assert torch.allclose(silence, silence[0, 0, 0].expand_as(silence))  # the floor, not data stats
    assert mel.encode(torch.zeros(3200)).equal(MelLatent().encode(torch.zeros(3200)))


def test_width_is_configurable():
    space = build_latent_space("mel", n_mels=100)
    assert space.latent_dim == 100 and space.encode(torch.zeros(640)).shape == (1, 2, 100)
    assert not space.state_dict()  # weight-free: nothing lands in a checkpoint


@pytest.mark.parametrize("samples", [1, 959, 960, 961, 24000 + 17])
def test_stacked_frames_are_consecutive_mel_frames(mel, speech, samples):
    stacked = MelLatent(stack=3, griffin_lim_iters=16)
    assert (stacked.latent_dim, stacked.hop_length, stacked.frame_rate) == (240, 960, 25.0)
    audio = speech(samples)
    frames = stacked.encode(audio)
    T = math.ceil(samples / 960)
    assert frames.shape == (1, T, 240)
    padded = torch.nn.functional.pad(audio, (0, T * 960 - samples))  # whole latent frames
    torch.testing.assert_close(stacked.unstack(frames), mel.encode(padded), rtol=0, atol=1e-5)
    assert stacked.unstack(frames)[0, 1].equal(frames[0, 0, 80:160])  # frame-major layout
    assert stacked.decode(frames).shape == (1, T * 960)


def test_stacked_streaming_keeps_lengths_and_spectrum(speech):
    stacked = MelLatent(stack=3, griffin_lim_iters=16)
    frames = stacked.encode(speech(12000))  # 13 frames
    stream = stacked.stream_decoder()
    pieces = [stream.push(frames[:, i:i + 4]) for i in range(0, frames.shape[1], 4)]
    assert [p.shape[1] for p in pieces] == [3840, 3840, 3840, 960]
    assert (stacked.encode(torch.cat(pieces, 1)) - frames).abs().mean() < 0.35


def test_bad_stack_is_refused():
    with pytest.raises(ValueError, match="stack=0"):
        MelLatent(stack=0)


def test_griffin_lim_round_trip_is_close(mel, speech):
    frames = mel.encode(speech(24000))
    again = mel.encode(mel.decode(frames))
    assert (again - frames).abs().mean() < 0.1  # normalised log-mel units


def test_batch_equals_single(mel, speech):
    a, b = speech(6400, seed=1), speech(6400, seed=2)
    torch.testing.assert_close(mel.encode(torch.stack([a, b]))[1:], mel.encode(b), rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunks", [[1], [3], [2, 7, 1, 13]])
def test_streaming_is_approximately_one_shot(mel, speech, chunks):
    frames = mel.encode(speech(12000))  # 38 frames
    stream = mel.stream_decoder()
    pieces, start, i = [], 0, 0
    while start < frames.shape[1]:
        size = chunks[i % len(chunks)]
        pieces.append(stream.push(frames[:, start:start + size]))
        assert pieces[-1].shape == (1, min(size, frames.shape[1] - start) * 320)
        start, i = start + size, i + 1
    streamed = torch.cat(pieces, 1)
    # different phases, same spectrum (approximately)
    assert (mel.encode(streamed) - frames).abs().mean() < 0.35
