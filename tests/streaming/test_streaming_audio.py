"""Streaming audio = offline decoding of the same frames (Encodec, random weights)."""

import torch
from test_session import TEXT, char_tokens

from espnet2_sled.streaming import StreamingSession
from factory import tiny_sled


def test_concatenated_stream_audio_equals_offline_decode_of_same_frames():
    model = tiny_sled(idim=40, odim=128, layout="packed", tokens_per_chunk=3, frames_per_chunk=5, max_positions=200,
                      latent="encodec", latent_conf=dict(weights="random")).eval()
    session = StreamingSession(model, char_tokens, stop_threshold=2.0, max_frames=17,
                               noise=torch.Generator().manual_seed(0))
    chunks = list(session.push_text(TEXT)) + list(session.end_text())
    frames = torch.cat([c.frames for c in chunks])
    audio = torch.cat([c.audio for c in chunks])
    assert frames.shape == (17, 128) and [c.frames.shape[0] for c in chunks] == [5, 5, 5, 2]
    assert audio.shape == (17 * 320,)
    with torch.no_grad():
        offline = model.frames_to_wav(frames)
    assert (audio - offline).abs().max() < 1e-4
    assert chunks[0].elapsed_seconds <= chunks[-1].elapsed_seconds
