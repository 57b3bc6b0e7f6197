"""Teacher-forced held-out energy distance of a ``SLED`` model: the "did it learn, does it
read the text" score used by the recipe's stage 8 (``local/check_learning.py``) and by
``bench/mini_learning_curve.py``."""

from typing import Iterable, Tuple

import torch


@torch.no_grad()
def heldout_energy_distance(tts, items: Iterable[Tuple[torch.Tensor, torch.Tensor]], seed: int = 0,
                            drop_text: bool = False) -> float:
    """Per-frame energy distance over ``items`` = (text ids ``[N]``, latents ``[T, D]``), one
    utterance at a time, with fixed noise (drawn on the CPU from ``seed``, in item order), no
    CFG dropout, and the text dropped when ``drop_text``. Lower is better. The model's
    train/eval mode is restored afterwards."""
    was_training = tts.training
    tts.eval()
    device = next(tts.parameters()).device
    g = torch.Generator().manual_seed(seed)
    total, frames = 0.0, 0
    for text, feats in items:
        text, feats = text.long().to(device)[None], feats.float().to(device)[None]
        noise = torch.randn(tts.config.loss.energy_samples, feats.shape[1], tts.lm.noise_dim, generator=g).to(device)
        _, stats, _ = tts(text, torch.tensor([text.shape[1]], device=device), feats,
                          torch.tensor([feats.shape[1]], device=device),
                          text_dropout=torch.tensor([drop_text]), noise=noise)
        total += float(stats["energy_distance"]) * feats.shape[1]
        frames += feats.shape[1]
    tts.train(was_training)
    return total / frames


@torch.no_grad()
def teacher_forced_frames(tts, text: torch.Tensor, feats: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Frames ``[T, D]`` sampled one by one from the ground-truth past: frame t is the
    generator's sample given text ids ``[N]`` and ``feats[:t]`` (``feats``: ``[T, D]``), one
    noise draw per frame from ``seed``, no CFG. Scored against another sentence's text, this
    tells whether the model reads: a model that only continues the previous frame sounds the
    same whichever text it is given. The model's train/eval mode is restored afterwards."""
    from espnet2_sled.modules.layout import build_layout

    was_training = tts.training
    tts.eval()
    device = next(tts.parameters()).device
    ids, lengths = tts.wrap_text(text.long().to(device)[None], torch.tensor([text.shape[0]], device=device))
    feats = feats.float().to(device)[None]
    frame_lengths = torch.tensor([feats.shape[1]], device=device)
    layout = build_layout(lengths, frame_lengths, tts.config.layout, tts.config.tokens_per_chunk,
                          tts.config.frames_per_chunk)
    noise = torch.randn(1, feats.shape[1], tts.lm.noise_dim, generator=torch.Generator().manual_seed(seed))
    frames = tts.lm.teacher_forced_samples(ids, lengths, feats, frame_lengths, layout, tts.eos_id, noise)[0]
    tts.train(was_training)
    return frames
