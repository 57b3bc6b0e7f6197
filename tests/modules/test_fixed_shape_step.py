"""The fixed-shape decode step (and its compiled graph) gives the frames and stop steps of
the eager variable-shape step, at the same noise, in every decoding mode."""

import pytest
import torch

from espnet2_sled.modules.generation import STOP_CHECK_EVERY, generate
from espnet2_sled.streaming import StreamingSession
from factory import tiny_sled

TOL = 1e-5
VOCAB = {c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .,")}
TEXT = "the cat sat on a mat, then it slept."


def char_tokens(text):
    return [VOCAB[c] for c in text.lower() if c in VOCAB]


def assert_same(reference, other):
    assert torch.equal(reference.lengths, other.lengths)  # identical stop steps
    assert reference.frames.shape == other.frames.shape
    assert (reference.frames - other.frames).abs().max() <= TOL
    assert (reference.stop_probs - other.stop_probs).abs().max() <= TOL


def both_steps(model, text, lengths, noise, decode_graph=None, **kw):
    wrapped, wl = model.wrap_text(text, lengths)
    with torch.no_grad():
        runs = [generate(model.lm, wrapped, wl, model.eos_id, noise=noise, fixed_shape=fixed,
                         decode_graph=decode_graph if fixed else None, **kw) for fixed in (False, True)]
    return runs


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_padded_batch_with_stops_matches_eager_step(cfg_scale):
    model = tiny_sled().eval()
    texts = [torch.tensor([3, 5, 7, 2, 9, 4]), torch.tensor([6, 1]), torch.tensor([8, 8, 3, 1])]
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    lengths = torch.tensor([len(t) for t in texts])
    noise = torch.randn(3, 70, model.lm.noise_dim)
    lengths_at = {}
    for threshold, keep, max_frames in ((0.8, False, 30), (0.8, True, 30), (0.91, False, 30), (1.1, False, 70)):
        eager, fixed = both_steps(model, padded, lengths, noise, cfg_scale=cfg_scale, stop_threshold=threshold,
                                  max_frames=max_frames, keep_stop_frame=keep)
        assert_same(eager, fixed)
        lengths_at[threshold] = eager.lengths.tolist()
    for threshold in (0.8, 0.91):  # rows stopped at different steps, not all on a stop-check step
        stops = lengths_at[threshold]
        assert len(set(stops)) > 1 and max(stops) < 30 and any((n + 1) % STOP_CHECK_EVERY for n in stops)
    assert min(lengths_at[1.1]) == 70  # ran to max_frames: the attention window grew past 64 slots


def test_prompt_and_continuation_match_eager_step():
    model = tiny_sled().eval()
    texts = [torch.tensor([3, 5, 7, 2]), torch.tensor([6, 1, 4])]
    prompts = torch.nn.utils.rnn.pad_sequence([torch.randn(5, 8), torch.randn(2, 8)], batch_first=True)
    noise = torch.randn(2, 30, model.lm.noise_dim)
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    eager, fixed = both_steps(model, padded, torch.tensor([4, 3]), noise, prompt=prompts,
                              prompt_lengths=torch.tensor([5, 2]), max_frames=30, stop_threshold=0.6)
    assert_same(eager, fixed)
    # continuation: an utterance continues from its own first frames (one row, no padding)
    own = eager.frames[:1, :6]
    eager, fixed = both_steps(model, padded[:1], torch.tensor([4]), noise[:1], prompt=own, max_frames=30,
                              stop_threshold=0.6)
    assert_same(eager, fixed)


def test_explicit_noise_shorter_than_max_frames_still_stops_cleanly():
    """Steps past a stop must not ask explicit noise for steps it does not have."""
    model = tiny_sled().eval()
    text, lengths = torch.tensor([[3, 5, 7]]), torch.tensor([3])
    probe, _ = both_steps(model, text, lengths, torch.randn(1, 60, model.lm.noise_dim), stop_threshold=0.5,
                          max_frames=60)
    n = int(probe.lengths[0])
    assert n < 59
    noise = torch.randn(1, n + 1, model.lm.noise_dim)  # exactly enough steps for the stop
    eager, fixed = both_steps(model, text, lengths, noise, stop_threshold=0.5, max_frames=60)
    assert_same(eager, fixed)


def test_compiled_step_matches_eager_step():
    """decode_graph on CPU: the fixed-shape step compiled as one graph (fullgraph: no host sync
    or Python branch on device values inside the step); backend aot_eager to keep it fast."""
    model = tiny_sled().eval()
    texts = [torch.tensor([3, 5, 7, 2, 9, 4]), torch.tensor([6, 1])]
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    noise = torch.randn(2, 40, model.lm.noise_dim)
    eager, compiled = both_steps(model, padded, torch.tensor([6, 2]), noise, decode_graph="aot_eager",
                                 cfg_scale=2.0, stop_threshold=0.6, max_frames=40)
    assert_same(eager, compiled)


def streamed(model, fixed_shape, decode_graph=None, pieces=(TEXT,), **kw):
    session = StreamingSession(model, char_tokens, noise=kw.pop("noise"), fixed_shape=fixed_shape,
                               decode_graph=decode_graph, **kw)
    chunks = []
    with torch.no_grad():
        for piece in pieces:
            chunks += list(session.push_text(piece))
        chunks += list(session.end_text())
    return [c.frames for c in chunks], session


def assert_same_chunks(eager, other):
    assert [c.shape for c in eager] == [c.shape for c in other]  # same chunks, same stop step
    if eager:
        assert (torch.cat(eager) - torch.cat(other)).abs().max() <= TOL


@pytest.mark.parametrize("keep_stop_frame", [False, True])
def test_streaming_matches_eager_step(keep_stop_frame):
    model = tiny_sled(idim=40, layout="packed", tokens_per_chunk=3, frames_per_chunk=4, max_positions=200).eval()
    noise = torch.randn(1, 120, model.lm.noise_dim)
    prompt = torch.randn(3, 8)
    cases = (dict(stop_threshold=0.85),  # stops at the first frame, mid-text
             dict(stop_threshold=0.85, allow_early_stop=False),  # stops mid-chunk after the text
             dict(stop_threshold=0.8, prompt_latents=prompt),  # voice prompt, stops in chunk 2
             dict(stop_threshold=0.85, prompt_latents=prompt),
             dict(stop_threshold=2.0, max_frames=37))
    for kw in cases:
        kw = dict(dict(max_frames=100), **kw)
        eager, eager_session = streamed(model, False, noise=noise, keep_stop_frame=keep_stop_frame, **kw)
        fixed, fixed_session = streamed(model, True, noise=noise, keep_stop_frame=keep_stop_frame, **kw)
        assert_same_chunks(eager, fixed)
        assert eager_session.stopped_early == fixed_session.stopped_early
        assert eager_session.finished and fixed_session.finished
    words = [w + " " for w in TEXT.split()]
    kw = dict(noise=noise, stop_threshold=0.85, allow_early_stop=False, pieces=words)
    eager, _ = streamed(model, False, **kw)
    compiled, _ = streamed(model, True, decode_graph="aot_eager", **kw)
    assert sum(c.shape[0] for c in eager) > 40
    assert_same_chunks(eager, compiled)
