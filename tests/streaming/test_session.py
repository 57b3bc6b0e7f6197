import gc

import pytest
import torch

from espnet2_sled.modules.generation import generate
from espnet2_sled.streaming import StreamingSession
from factory import tiny_sled

VOCAB = {c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .,")}


def char_tokens(text):
    return [VOCAB[c] for c in text.lower() if c in VOCAB]


def streaming_model(**kw):
    conf = dict(layout="packed", tokens_per_chunk=3, frames_per_chunk=4, max_positions=200)
    conf.update(kw)
    return tiny_sled(idim=40, **conf).eval()


def run(session, pieces):
    chunks = []
    for piece in pieces:
        chunks += list(session.push_text(piece))
    chunks += list(session.end_text())
    return chunks


TEXT = "the cat sat on a mat, then it slept."


def test_one_character_pieces_equal_whole_text():
    model = streaming_model()
    noise = torch.randn(1, 200, model.lm.noise_dim)
    whole = run(StreamingSession(model, char_tokens, stop_threshold=0.9, noise=noise, max_frames=60), [TEXT])
    pieces = run(StreamingSession(model, char_tokens, stop_threshold=0.9, noise=noise, max_frames=60), list(TEXT))
    a, b = torch.cat([c.frames for c in whole]), torch.cat([c.frames for c in pieces])
    assert a.shape == b.shape and a.shape[0] > 10
    assert (a - b).abs().max() < 1e-5
    assert all(c.frames.shape[0] == 4 for c in whole[:-1])  # chunks of frames_per_chunk


def test_audio_arrives_before_the_text_ends():
    model = streaming_model()
    session = StreamingSession(model, char_tokens, stop_threshold=2.0, max_frames=100,
                               noise=torch.Generator().manual_seed(0))
    early = list(session.push_text("the cat sat on a mat, then "))
    assert len(early) >= 2 and not session.text_ended
    rest = list(session.end_text())
    assert rest and session.finished


def test_streaming_matches_training_layout():
    """Frames sampled by the session are what the packed layout's teacher forcing predicts."""
    from espnet2_sled.modules.layout import build_layout

    model = streaming_model()
    noise = torch.randn(1, 40, model.lm.noise_dim)
    chunks = run(StreamingSession(model, char_tokens, cfg_scale=1.0, stop_threshold=2.0, noise=noise, max_frames=20),
                 [TEXT])
    frames = torch.cat([c.frames for c in chunks])  # [20, D]
    ids = torch.tensor(char_tokens(TEXT))[None]
    wrapped, wl = model.wrap_text(ids, torch.tensor([ids.shape[1]]))
    fl = torch.tensor([frames.shape[0]])
    layout = build_layout(wl, fl, "packed", 3, 4)
    with torch.no_grad():
        h = model.lm.hidden_states(wrapped, wl, frames[None], fl, layout, model.eos_id)
        z = h[0, layout.frame_slot[0]]
        resampled = model.lm.generator(z, noise[0, :20])
    assert (resampled - frames).abs().max() < 1e-5


def test_offline_model_streams_the_same_frames_as_generate():
    model = tiny_sled(idim=40, max_positions=200).eval()
    noise = torch.randn(1, 60, model.lm.noise_dim)
    chunks = run(StreamingSession(model, char_tokens, stop_threshold=0.7, noise=noise, max_frames=60), [TEXT])
    streamed = torch.cat([c.frames for c in chunks])
    ids = torch.tensor(char_tokens(TEXT))[None]
    wrapped, wl = model.wrap_text(ids, torch.tensor([ids.shape[1]]))
    with torch.no_grad():
        out = generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=2.0, stop_threshold=0.7, max_frames=60,
                       noise=noise)
    assert streamed.shape[0] == int(out.lengths[0])
    assert (streamed - out.frames[0, : streamed.shape[0]]).abs().max() < 1e-5


def test_stop_before_all_text_was_read():
    model = streaming_model()
    with torch.no_grad():  # make the stop head fire at once
        model.lm.stop_head.weight.zero_()
    session = StreamingSession(model, char_tokens, stop_threshold=0.5, noise=torch.Generator().manual_seed(0))
    assert list(session.push_text(TEXT)) == []  # stopped at the first write, mid-text
    assert session.finished and session.stopped_early and session.num_read < len(session.tokens)
    assert list(session.push_text("more text ")) == [] and list(session.end_text()) == []
    late = StreamingSession(model, char_tokens, stop_threshold=0.5, allow_early_stop=False, max_frames=50)
    out = run(late, [TEXT])
    assert late.finished and not late.stopped_early and late.num_read == len(late.tokens)
    assert sum(c.frames.shape[0] for c in out) > 0


def test_misuse_gives_clear_errors_and_next_session_works():
    model = streaming_model()
    session = StreamingSession(model, char_tokens, max_frames=30)
    list(session.end_text())
    with pytest.raises(RuntimeError, match="push_text after end_text"):
        session.push_text("again")
    abandoned = StreamingSession(model, char_tokens, max_frames=30)
    next(iter(abandoned.push_text("the cat sat on the mat ")), None)  # walk away mid-way
    del abandoned
    gc.collect()
    with StreamingSession(model, char_tokens, max_frames=10, stop_threshold=2.0) as fresh:
        assert sum(c.frames.shape[0] for c in run(fresh, [TEXT])) == 10
    with pytest.raises(RuntimeError, match="closed"):
        fresh.push_text("x")


def test_memory_is_bounded_by_the_position_budget():
    model = streaming_model(max_positions=80)
    session = StreamingSession(model, char_tokens, stop_threshold=2.0)
    cache_bytes = sum(k.numel() for k in session.state.cache.keys) * 4
    with pytest.raises(RuntimeError, match="positions"):
        for _ in range(50):
            for _ in session.push_text("a long text goes on and on "):
                pass
    assert sum(k.numel() for k in session.state.cache.keys) * 4 == cache_bytes  # preallocated, never grown
