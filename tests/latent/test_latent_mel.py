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
    space = build_latent_space("mel", latent_dim=100)
    assert space.latent_dim == 100 and space.encode(torch.zeros(640)).shape == (1, 2, 100)
    assert not space.state_dict()  # weight-free: nothing lands in a checkpoint


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
