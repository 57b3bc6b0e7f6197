"""Guided attention: the probe returns the attention the decoder really uses, the prior
sits on the text diagonal, the loss rewards diagonal attention, and training with it
makes the probed heads follow the diagonal. Off by default: the loss is unchanged."""

import pytest
import torch

from espnet2_sled.modules.config import LossConfig, SLEDConfig
from espnet2_sled.modules.decoder import AttentionProbe, Decoder
from espnet2_sled.modules.guided_attention import diagonal_prior, guided_attention_loss
from espnet2_sled.modules.layout import build_layout
from espnet2_sled.modules.sled_lm import SLEDLM
from espnet2_sled.tts.sled import SLED


def test_probe_reports_the_attention_actually_used():
    torch.manual_seed(0)
    conf = SLEDConfig(10, 4, dim=16, layers=2, heads=4, ffn_dim=32, dropout=0.0, attention_dropout=0.0,
                      activation_dropout=0.0)
    dec = Decoder(conf).eval()
    x = torch.randn(2, 6, 16)
    visible = torch.tensor([[False, True, True, True, True, True], [True] * 6])
    positions = (visible.cumsum(1) - 1).clamp(min=0)
    probe = AttentionProbe(layers=(1,), heads=2)
    out = dec(x, positions, visible, probe=probe)
    torch.testing.assert_close(out, dec(x, positions, visible))  # probing changes nothing
    p = probe.probs[1]
    assert set(probe.probs) == {1} and p.shape == (2, 2, 6, 6)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 2, 6))
    assert p[0, :, 1:, 0].abs().max() == 0  # invisible key
    assert torch.triu(p[1], diagonal=1).abs().max() == 0  # causal

    # the probed probabilities reproduce the layer's attention output for those heads
    attn = dec.layers[1].self_attn
    captured = {}
    attn.register_forward_hook(lambda m, args, y: captured.update(x=args[0]))
    dec(x, positions, visible)
    h = captured["x"]
    v = attn.v_proj(h).view(2, 6, 4, 4).transpose(1, 2)[:, :2]
    mixed = p @ v  # [B, 2, L, head_dim]
    full = torch.nn.functional.scaled_dot_product_attention  # recompute the reference per head
    from espnet2_sled.modules.decoder import apply_rotary, attention_mask, rotary_cos_sin

    cos, sin = rotary_cos_sin(positions, dec.inv_freq, h.dtype)
    q = apply_rotary(attn.q_proj(h).view(2, 6, 4, 4).transpose(1, 2), cos, sin)[:, :2]
    k = apply_rotary(attn.k_proj(h).view(2, 6, 4, 4).transpose(1, 2), cos, sin)[:, :2]
    torch.testing.assert_close(mixed, full(q, k, v, attn_mask=attention_mask(visible, 6, 0)), rtol=1e-5, atol=1e-6)


def test_prior_peaks_on_the_matching_token_and_ignores_padding():
    lay = build_layout(torch.tensor([4, 2]), torch.tensor([8, 3]), "offline")
    prior = diagonal_prior(lay, torch.tensor([4, 2]), torch.tensor([8, 3]), sigma=0.2)  # [B, T, L]
    assert prior.shape == (2, 8, lay.visible.shape[1])
    text_slots = (lay.text_index[0] >= 0).nonzero().flatten()
    peaks = prior[0][:, text_slots].argmax(-1)
    assert peaks.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # frame t -> token floor(t * 4 / 8)
    assert prior[0][:, lay.frame_index[0] >= 0].abs().max() == 0  # frame keys get no prior
    assert prior[1, :, :2].abs().max() == 0  # left padding of the short row
    assert prior[1, 3:].abs().max() == 0  # frames beyond its length


def _one_hot_probs(lay, targets):
    """Attention [B, 1, L, L] where the query predicting frame t attends only to slot targets(b, t)."""
    B, L = lay.visible.shape
    probs = torch.zeros(B, 1, L, L)
    for b in range(B):
        for t in range(lay.frame_slot.shape[1]):
            probs[b, 0, lay.frame_slot[b, t], targets(b, t)] = 1.0
    return probs


def test_loss_rewards_diagonal_attention_and_skips_dropped_rows():
    tl, fl = torch.tensor([6, 6]), torch.tensor([12, 12])
    lay = build_layout(tl, fl, "offline")
    rows = torch.tensor([True, True])
    diagonal = _one_hot_probs(lay, lambda b, t: t // 2)  # offline: text occupies slots 0..5
    backwards = _one_hot_probs(lay, lambda b, t: 5 - t // 2)
    on_frames = _one_hot_probs(lay, lambda b, t: int(lay.frame_slot[b, t]))  # attends to itself
    loss = {name: float(guided_attention_loss(p, lay, tl, fl, rows, sigma=0.2))
            for name, p in (("diagonal", diagonal), ("backwards", backwards), ("frames", on_frames))}
    assert loss["diagonal"] < 0.05 and loss["backwards"] > 0.5 and loss["frames"] == pytest.approx(1.0, abs=1e-3)
    mixed = torch.cat([diagonal[:1], backwards[1:]])
    keep_first = torch.tensor([True, False])
    assert float(guided_attention_loss(mixed, lay, tl, fl, keep_first, 0.2)) == pytest.approx(loss["diagonal"])
    none = float(guided_attention_loss(mixed, lay, tl, fl, torch.tensor([False, False]), 0.2))
    assert none == 0.0


def _tiny(**guided):
    torch.manual_seed(0)
    return SLED(12, 4, dim=32, layers=2, heads=2, ffn_dim=64, generator_width=32, generator_depth=1, noise_dim=4,
                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, cfg_dropout=0.0, **guided)


def test_off_by_default_and_training_follows_the_diagonal():
    text = torch.randint(0, 10, (4, 6))
    tl, fl = torch.tensor([6, 6, 5, 4]), torch.tensor([18, 16, 15, 12])
    feats = torch.randn(4, 18, 4)
    noise = torch.randn(2, int(fl.sum()), 4)
    plain, guided = _tiny(), _tiny(guided_attention_weight=1.0, guided_attention_layers=[1], guided_attention_heads=1,
                                   guided_attention_sigma=0.2)
    loss_plain, stats_plain, _ = plain(text, tl, feats, fl, noise=noise)
    loss_guided, stats_guided, _ = guided(text, tl, feats, fl, noise=noise)
    assert "guided_attention" not in stats_plain
    # same weights, same noise: the guided loss is added on top of the plain one
    torch.testing.assert_close(loss_guided, loss_plain + stats_guided["guided_attention"])
    start = float(stats_guided["guided_attention"])
    opt = torch.optim.Adam(guided.parameters(), lr=3e-3)
    for _ in range(60):
        loss, stats, _ = guided(text, tl, feats, fl)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(stats["guided_attention"]) < 0.5 * start


@pytest.mark.parametrize("conf, word", [
    (dict(guided_attention_weight=1.0, guided_attention_layers=[2]), "guided_attention_layers"),
    (dict(guided_attention_weight=1.0, guided_attention_heads=3), "guided_attention_heads"),
    (dict(guided_attention_weight=-1.0), "guided_attention_weight"),
    (dict(guided_attention_sigma=0.0), "guided_attention_sigma"),
])
def test_bad_guided_attention_config_is_refused(conf, word):
    with pytest.raises(ValueError, match=word):
        _tiny(**conf)


def test_sledlm_loss_reports_guided_stat_only_when_asked():
    torch.manual_seed(0)
    lm = SLEDLM(SLEDConfig(10, 4, dim=16, layers=2, heads=2, ffn_dim=32, generator_width=16, generator_depth=1,
                           noise_dim=4))
    text, tl = torch.randint(0, 9, (2, 5)), torch.tensor([5, 4])
    frames, fl = torch.randn(2, 7, 4), torch.tensor([7, 5])
    guided = LossConfig(guided_attention_weight=0.5, guided_attention_layers=(0, 1), guided_attention_heads=1)
    _, stats = lm.loss(text, tl, frames, fl, guided)
    assert 0.0 <= float(stats["guided_attention"]) <= 1.0


def _training_aid_case():
    """(text, text lengths, frames, frame lengths, layout, SLEDConfig keywords): a 2-row padded
    batch and a tiny dropout-free model, for the training-only input perturbations."""
    torch.manual_seed(0)
    text, tl = torch.randint(0, 9, (2, 5)), torch.tensor([5, 4])
    frames, fl = torch.randn(2, 7, 4), torch.tensor([7, 5])
    kw = dict(dim=16, layers=1, heads=2, ffn_dim=32, generator_width=16, generator_depth=1, noise_dim=4,
              dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    return text, tl, frames, fl, build_layout(tl, fl, "offline"), kw


@pytest.mark.parametrize("option,value", [("frame_dropout", 0.5), ("frame_noise", 0.3), ("frame_drop", 0.5)])
def test_frame_perturbation_acts_in_training_only(option, value):
    """Fed-back frame dropout (Tacotron-style pre-net dropout) and frame noise: the
    teacher-forced hidden states change in training mode, not in eval mode, and 0 leaves
    training untouched."""
    text, tl, frames, fl, lay, kw = _training_aid_case()
    lm = SLEDLM(SLEDConfig(10, 4, **{option: value}, **kw))
    ref = SLEDLM(SLEDConfig(10, 4, **kw))
    ref.load_state_dict(lm.state_dict())
    h = lambda m: m.hidden_states(text, tl, frames, fl, lay, eos_id=9)  # noqa: E731
    lm.eval(), ref.eval()
    torch.testing.assert_close(h(lm), h(ref))
    lm.train(), ref.train()
    text_part = lay.frame_index < 0  # text slots come before any frame: unaffected
    assert not torch.allclose(h(lm), h(ref))
    torch.testing.assert_close(h(lm)[text_part], h(ref)[text_part])
    torch.testing.assert_close(h(ref), h(ref))  # both 0: deterministic in training
    with pytest.raises(ValueError, match=option):
        _tiny(**{option: -1.0})


def test_self_feed_replaces_real_frames_with_own_samples_in_training_only():
    """Scheduled-sampling-style inputs: a fraction of the real input frames become the model's
    own samples (padding untouched); the targets, and evaluation, are unchanged."""
    text, tl, frames, fl, lay, kw = _training_aid_case()
    lm = SLEDLM(SLEDConfig(10, 4, **kw))
    real = torch.arange(7)[None] < fl[:, None]
    assert torch.equal(lm.own_samples_mixed_in(text, tl, frames, fl, lay, 9, real, 0.0), frames)
    mixed = lm.own_samples_mixed_in(text, tl, frames, fl, lay, 9, real, 1.0)
    assert torch.equal(mixed[~real], frames[~real])
    assert not torch.isclose(mixed[real], frames[real]).any()
    noise = torch.randn(2, int(fl.sum()), 4)

    def loss(rate):
        return lm.loss(text, tl, frames, fl, LossConfig(self_feed=rate), noise=noise)[0]
    lm.eval()
    torch.testing.assert_close(loss(1.0), loss(0.0))
    lm.train()
    assert not torch.isclose(loss(1.0), loss(0.0))
    with pytest.raises(ValueError, match="self_feed"):
        _tiny(self_feed=1.5)
