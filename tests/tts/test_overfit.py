"""A tiny SLED must learn: after overfitting a few utterances its samples are closer
(energy distance) to their own targets than to other utterances' targets."""

import torch

from espnet2_sled.modules.energy_distance import energy_score_loss
from factory import tiny_sled


def test_tiny_model_overfits_and_prefers_own_targets():
    torch.manual_seed(0)
    model = tiny_sled(dim=48, heads=4, ffn_dim=96, generator_width=64, noise_dim=8, cfg_dropout=0.0)
    B, T, D = 4, 12, 8
    text = torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9], [10, 11, 12, 13], [14, 15, 16, 17]])
    tl = torch.full((B,), 4)
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(B, T, D, generator=g) * 2.0
    fl = torch.full((B,), T)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    first = None
    for step in range(150):
        loss, stats, _ = model(text, tl, feats, fl)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else float(stats["energy_distance"])
    final = float(stats["energy_distance"])
    assert final < 0.5 * first, (first, final)

    model.eval()
    with torch.no_grad():
        wrapped, wl = model.wrap_text(text, tl)
        from espnet2_sled.modules.layout import build_layout

        layout = build_layout(wl, fl, "offline")
        h = model.lm.hidden_states(wrapped, wl, feats, fl, layout, model.eos_id)
        z = h.gather(1, layout.frame_slot[..., None].expand(-1, -1, h.shape[-1])).reshape(B * T, -1)
        samples = model.lm.generator(z[None].expand(16, -1, -1), torch.randn(16, B * T, model.lm.noise_dim))
        own = energy_score_loss(samples, feats.reshape(B * T, D)).mean()
        shuffled = energy_score_loss(samples, feats.roll(1, 0).reshape(B * T, D)).mean()
    assert own < 0.7 * shuffled, (float(own), float(shuffled))
    # and the stop head learned where utterances end
    assert float(stats["stop_acc"]) > 0.95
