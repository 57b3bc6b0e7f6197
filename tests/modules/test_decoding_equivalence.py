"""KV-cache decoding vs full recomputation, CFG scale 1, padding / batching invariance."""

import pytest
import torch

from espnet2_sled.modules.generation import generate
from espnet2_sled.modules.layout import build_layout
from factory import tiny_sled


def teacher_forced_frames(model, text, frames, noise, cfg_scale):
    """Recompute every step from scratch (no cache) and sample with the same noise."""
    lm = model.lm
    wrapped, wl = model.wrap_text(text[None], torch.tensor([text.shape[0]]))
    T = frames.shape[0]
    out = []
    for t in range(T):
        prefix = frames[None, :t]
        hs = []
        for dropout in ([False, True] if cfg_scale != 1.0 else [False]):
            layout = build_layout(wl, torch.tensor([t]), "offline", text_dropout=torch.tensor([dropout]))
            h = lm.hidden_states(wrapped, wl, prefix, torch.tensor([t]), layout, model.eos_id)
            hs.append(h[:, -1] if t > 0 else h[:, wrapped.shape[1] - 1])
        frame, _ = lm.sample_frame(torch.cat(hs), noise[None, t], cfg_scale)
        out.append(frame[0])
    return torch.stack(out)


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_kv_cache_decoding_equals_full_recomputation(cfg_scale):
    model = tiny_sled().eval()
    text = torch.tensor([3, 5, 7, 2, 9])
    noise = torch.randn(1, 12, model.lm.noise_dim)
    with torch.no_grad():
        gen = model.generate_batch(text[None], torch.tensor([5]), max_frames=12, noise=noise,
                                   cfg_scale=cfg_scale, stop_threshold=1.1)
        frames = gen.frames[0]
        recomputed = teacher_forced_frames(model, text, frames, noise[0], cfg_scale)
    assert frames.shape == (12, 8)
    assert (frames - recomputed).abs().max() < 1e-5


def test_cfg_scale_one_equals_conditional_path():
    model = tiny_sled().eval()
    text, lengths = torch.tensor([[3, 5, 7, 2, 9]]), torch.tensor([5])
    noise = torch.randn(1, 10, model.lm.noise_dim)
    wrapped, wl = model.wrap_text(text, lengths)
    with torch.no_grad():
        doubled = generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=1.0, stop_threshold=1.1,
                           max_frames=10, noise=noise, guidance=True)
        single = generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=1.0, stop_threshold=1.1,
                          max_frames=10, noise=noise, guidance=False)
        guided = generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=2.0, stop_threshold=1.1,
                          max_frames=10, noise=noise)
    assert (doubled.frames - single.frames).abs().max() < 1e-5
    assert (guided.frames - single.frames).abs().max() > 1e-3  # guidance does change the output


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_padded_batch_decodes_like_one_by_one(cfg_scale):
    model = tiny_sled().eval()
    texts = [torch.tensor([3, 5, 7, 2, 9, 4]), torch.tensor([6, 1]), torch.tensor([8, 8, 3, 1])]
    noise = torch.randn(3, 25, model.lm.noise_dim)
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    lengths = torch.tensor([len(t) for t in texts])
    threshold = 0.6
    with torch.no_grad():
        batch = model.generate_batch(padded, lengths, max_frames=25, noise=noise, cfg_scale=cfg_scale,
                                     stop_threshold=threshold)
        for b, text in enumerate(texts):
            alone = model.generate_batch(text[None], lengths[b : b + 1], max_frames=25, noise=noise[b : b + 1],
                                         cfg_scale=cfg_scale, stop_threshold=threshold)
            n = int(alone.lengths[0])
            assert int(batch.lengths[b]) == n
            assert (batch.frames[b, :n] - alone.frames[0, :n]).abs().max() < 1e-5
    assert len(set(batch.lengths.tolist())) > 1 or int(batch.lengths.max()) < 25  # stops were exercised


def test_prompted_batch_matches_single():
    model = tiny_sled().eval()
    texts = [torch.tensor([3, 5, 7, 2]), torch.tensor([6, 1, 4])]
    prompts = [torch.randn(5, 8), torch.randn(2, 8)]
    noise = torch.randn(2, 8, model.lm.noise_dim)
    pt = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    pp = torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True)
    with torch.no_grad():
        batch = model.generate_batch(pt, torch.tensor([4, 3]), pp, torch.tensor([5, 2]), max_frames=8,
                                     noise=noise, stop_threshold=1.1)
        for b in range(2):
            alone = model.generate_batch(texts[b][None], torch.tensor([len(texts[b])]), prompts[b][None], None,
                                         max_frames=8, noise=noise[b : b + 1], stop_threshold=1.1)
            assert (batch.frames[b] - alone.frames[0]).abs().max() < 1e-5


def test_stop_frame_convention():
    model = tiny_sled().eval()
    text = torch.tensor([[3, 5, 7]])
    noise = torch.randn(1, 30, model.lm.noise_dim)
    with torch.no_grad():
        dropped = model.generate_batch(text, torch.tensor([3]), max_frames=30, noise=noise, stop_threshold=0.5)
        kept = model.generate_batch(text, torch.tensor([3]), max_frames=30, noise=noise, stop_threshold=0.5,
                                    keep_stop_frame=True)
    n = int(dropped.lengths[0])
    assert n < 30, "the stop head should fire within 30 steps at threshold 0.5"
    assert dropped.stop_probs[0, n] >= 0.5 and (dropped.stop_probs[0, :n] < 0.5).all()
    assert int(kept.lengths[0]) == n + 1


def test_position_budget_error():
    model = tiny_sled(max_positions=16)
    with pytest.raises(ValueError, match="positions"):
        model.generate_batch(torch.ones(1, 20, dtype=torch.long), torch.tensor([20]), max_frames=4)
