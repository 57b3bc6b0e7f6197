"""Autoregressive decoding: one state object and one step, shared by every mode.

Offline, batched, voice-cloned and streaming decoding differ only in *what* they feed
(``DecodingState.feed``) and *when* they sample (``SLEDLM.sample_frame``); the KV cache is
preallocated once and written in place (no per-step copy of past keys/values).

With classifier-free guidance the batch is doubled: rows [B, 2B) see the same slots but
their text is hidden except the boundary ``</s>`` (speech prompts stay visible).
"""

from dataclasses import dataclass
from typing import Optional, Union

import torch

from espnet2_sled.modules.layout import build_layout
from espnet2_sled.modules.sled_lm import SLEDLM

NoiseSource = Union[None, torch.Generator, torch.Tensor]


class DecodingState:
    """KV cache + the hidden state at each row's last visible slot + next RoPE position."""

    def __init__(self, lm: SLEDLM, rows: int, capacity: int, device, dtype):
        self.lm = lm
        self.cache = lm.decoder.new_cache(rows, capacity, device, dtype)
        self.last_hidden = torch.zeros(rows, lm.decoder.dim, device=device, dtype=dtype)
        self.next_position = torch.zeros(rows, dtype=torch.long, device=device)

    @property
    def length(self) -> int:
        return self.cache.length

    def feed(self, x: torch.Tensor, visible: torch.Tensor) -> None:
        """Append slots. x ``[R, l, dim]`` un-normalised embeddings, visible ``[R, l]`` bool."""
        positions = self.next_position[:, None] + (visible.long().cumsum(1) - 1).clamp(min=0)
        h = self.lm.decoder(self.lm.input_norm(x), positions, visible, self.cache)  # [R, l, dim]
        l = visible.shape[1]
        last = l - 1 - visible.flip(1).long().argmax(1)  # last visible slot of each row
        rows = torch.arange(h.shape[0], device=h.device)
        has_visible = visible.any(1)[:, None]
        self.last_hidden = torch.where(has_visible, h[rows, last].to(self.last_hidden.dtype), self.last_hidden)
        self.next_position += visible.long().sum(1)

    def feed_frames(self, frames: torch.Tensor) -> None:
        """frames ``[B, l, D]`` appended to every row (both CFG branches)."""
        emb = self.lm.frame_proj(frames.to(self.lm.frame_proj.weight.dtype))
        rows = self.last_hidden.shape[0]
        emb = emb.repeat(rows // emb.shape[0], 1, 1)
        self.feed(emb, torch.ones(emb.shape[:2], dtype=torch.bool, device=emb.device))


def draw_noise(noise: NoiseSource, step: int, batch: int, dim: int, device) -> torch.Tensor:
    """[B, dim] noise for one step: from explicit ``[B, steps, dim]`` tensors, a generator, or the global RNG."""
    if isinstance(noise, torch.Tensor):
        if step >= noise.shape[1]:
            raise ValueError(f"explicit noise has {noise.shape[1]} steps; step {step} needs more (pass max_frames <= steps)")
        return noise[:, step].to(device)
    if isinstance(noise, torch.Generator):
        return torch.randn(batch, dim, generator=noise, device=noise.device).to(device)
    return torch.randn(batch, dim, device=device)


def prefill(
    lm: SLEDLM,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
    eos_id: int,
    prompt: Optional[torch.Tensor] = None,
    prompt_lengths: Optional[torch.Tensor] = None,
    cfg: bool = True,
    capacity: int = 2048,
) -> DecodingState:
    """Feed ``[pad.. text | prompt frames]`` for every row (and its unconditional twin).

    text ``[B, N]`` wrapped ``<s> .. </s>``; prompt ``[B, P, D]`` latent frames or None.
    """
    B = text.shape[0]
    device = text.device
    if prompt is None:
        prompt = torch.zeros(B, 0, lm.latent_dim, device=device)
        prompt_lengths = torch.zeros(B, dtype=torch.long, device=device)
    if prompt_lengths is None:
        prompt_lengths = torch.full((B,), prompt.shape[1], dtype=torch.long, device=device)
    copies = 2 if cfg else 1
    dropout = torch.arange(copies * B) >= B  # unconditional rows last
    layout = build_layout(text_lengths.repeat(copies), prompt_lengths.repeat(copies), "offline", text_dropout=dropout)
    x = lm.embed_slots(text.repeat(copies, 1), prompt.repeat(copies, 1, 1), layout, eos_id)
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else x.dtype
    state = DecodingState(lm, copies * B, capacity, device, dtype)
    state.feed(x, layout.visible)
    return state


@dataclass
class Generated:
    frames: torch.Tensor  # [B, T, D] padded
    lengths: torch.Tensor  # [B]
    stop_probs: torch.Tensor  # [B, T]


def generate(
    lm: SLEDLM,
    text: torch.Tensor,
    text_lengths: torch.Tensor,
    eos_id: int,
    prompt: Optional[torch.Tensor] = None,
    prompt_lengths: Optional[torch.Tensor] = None,
    cfg_scale: float = 2.0,
    stop_threshold: float = 0.8,
    max_frames: Optional[int] = None,
    max_positions: int = 2048,
    noise: NoiseSource = None,
    keep_stop_frame: bool = False,
    guidance: Optional[bool] = None,
) -> Generated:
    """Offline decoding of a (left-padded internally) batch.

    A row stops at the first step whose conditional stop probability reaches
    ``stop_threshold``; the frame sampled at that step is dropped unless
    ``keep_stop_frame``. Finished rows keep running until every row is done, so a padded
    batch gives each row exactly the frames it would get alone (same noise).
    ``guidance`` forces the doubled (conditional + unconditional) batch on or off; by
    default it runs only when ``cfg_scale != 1``.
    """
    B = text.shape[0]
    prompt_len = 0 if prompt is None else prompt.shape[1]
    prefill_len = int(text_lengths.max()) + prompt_len
    budget = max_positions - prefill_len
    if budget <= 0:
        raise ValueError(
            f"text ({int(text_lengths.max())} tokens) + prompt ({prompt_len} frames) fill the "
            f"model's {max_positions} positions; nothing is left to generate"
        )
    max_frames = budget if max_frames is None else min(max_frames, budget)
    cfg = cfg_scale != 1.0 if guidance is None else guidance
    state = prefill(lm, text, text_lengths, eos_id, prompt, prompt_lengths, cfg, prefill_len + max_frames)

    frames, probs = [], []
    lengths = torch.full((B,), -1, dtype=torch.long, device=text.device)
    for step in range(max_frames):
        frame, stop_prob = lm.sample_frame(state.last_hidden, draw_noise(noise, step, B, lm.noise_dim, text.device), cfg_scale)
        frames.append(frame.float())
        probs.append(stop_prob)
        stopping = (stop_prob >= stop_threshold) & (lengths < 0)
        lengths[stopping] = step + int(keep_stop_frame)
        if bool((lengths >= 0).all()) or step == max_frames - 1:
            break
        state.feed_frames(frame[:, None])
    lengths[lengths < 0] = len(frames)
    return Generated(torch.stack(frames, 1), lengths, torch.stack(probs, 1))
