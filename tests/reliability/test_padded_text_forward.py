"""Issue 11 item 13: ESPnet pads text batches with -1; ``SLED.forward`` on unequal text
lengths must work for every layout (the ``upstream`` streaming layout used to embed the
padded slots and raise IndexError), and the padding value must not change the loss."""

import pytest
import torch

from factory import random_batch, tiny_sled


@pytest.mark.parametrize("layout", ["offline", "packed", "upstream"])
def test_forward_with_unequal_text_lengths_ignores_the_pad_value(layout):
    model = tiny_sled(layout=layout, tokens_per_chunk=2, frames_per_chunk=3).eval()
    text, text_lengths, feats, feats_lengths = random_batch(B=3, N=7, T=11)
    assert len(set(text_lengths.tolist())) == 3  # unequal text lengths
    pad = torch.arange(text.shape[1])[None] >= text_lengths[:, None]
    noise = torch.randn(2, int(feats_lengths.sum()), model.lm.noise_dim, generator=torch.Generator().manual_seed(0))
    drop = torch.tensor([False, True, False])  # a CFG-dropped row too
    losses = []
    for pad_value in (-1, 5):  # ESPnet's pad, and a valid token id
        padded = text.masked_fill(pad, pad_value)
        loss, stats, _ = model(padded, text_lengths, feats, feats_lengths, text_dropout=drop, noise=noise)
        assert torch.isfinite(loss)
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-6)

    model.train()  # and gradients flow through a training step
    loss, _, _ = model(text.masked_fill(pad, -1), text_lengths, feats, feats_lengths)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
