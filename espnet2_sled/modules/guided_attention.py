"""Guided attention for a decoder-only TTS: pull chosen heads onto the text diagonal.

A training-only auxiliary loss (off in the paper configs). In the spirit of Tachibana et
al.'s guided attention (ESPnet's ``use_guided_attn_loss`` for Transformer-TTS), adapted to
self-attention over ``[text ; frames]``: the query that predicts frame ``t`` of an
utterance with ``T`` frames and ``N`` text tokens should look at text token ``j`` with

    G[t, j] = exp(-((j + 1/2) / N - (t + 1/2) / T)^2 / (2 sigma^2))

and the loss per query is ``1 - sum_j P[t, j] G[t, j]`` over the text keys, where ``P``
is the head's full attention distribution: mass on other frames or off the diagonal
costs, mass near the diagonal does not. Those heads then tell the rest of the network
where in the text it is, which an autoregressive decoder otherwise has to discover on its
own (slow: thousands of updates on a small corpus). Decoding is unchanged.

Rows whose text was dropped for classifier-free guidance have no text to follow and are
left out.
"""

import torch

from espnet2_sled.modules.layout import Layout


def diagonal_prior(layout: Layout, text_lengths: torch.Tensor, frame_lengths: torch.Tensor,
                   sigma: float) -> torch.Tensor:
    """Prior ``G [B, T, L]`` over the keys of the queries that predict frames; 0 on non-text
    keys and for frames beyond an utterance's length."""
    T = layout.frame_slot.shape[1]
    n = text_lengths.to(torch.float32).clamp(min=1)[:, None, None]
    m = frame_lengths.to(torch.float32).clamp(min=1)[:, None, None]
    t = torch.arange(T, device=layout.frame_slot.device, dtype=torch.float32)[None, :, None]
    j = layout.text_index.to(torch.float32)[:, None, :]  # [B, 1, L], -1 on non-text slots
    prior = torch.exp(-(((j + 0.5) / n - (t + 0.5) / m) ** 2) / (2 * sigma**2))
    is_text = (layout.text_index >= 0) & layout.visible
    is_frame = torch.arange(T, device=prior.device)[None] < frame_lengths[:, None]
    return prior * is_text[:, None, :] * is_frame[:, :, None]


def guided_attention_loss(probs: torch.Tensor, layout: Layout, text_lengths: torch.Tensor,
                          frame_lengths: torch.Tensor, rows: torch.Tensor, sigma: float) -> torch.Tensor:
    """probs ``[B, H, L, L]`` (probed heads, of one or several layers), rows ``[B]`` bool (which rows count)
    -> scalar mean of ``1 - sum_j P G`` over counted frames and heads (0 if none count)."""
    B, H, L, _ = probs.shape
    T = layout.frame_slot.shape[1]
    queries = layout.frame_slot[:, None, :, None].expand(B, H, T, L)
    p = probs.gather(2, queries)  # [B, H, T, L]: the queries that predict frames
    prior = diagonal_prior(layout, text_lengths, frame_lengths, sigma).to(p.dtype)
    on_diagonal = (p * prior[:, None]).sum(-1)  # [B, H, T]
    counted = (torch.arange(T, device=p.device)[None] < frame_lengths[:, None]) & rows[:, None]  # [B, T]
    weight = counted[:, None, :].expand(B, H, T).to(p.dtype)
    return ((1 - on_diagonal) * weight).sum() / weight.sum().clamp(min=1)
