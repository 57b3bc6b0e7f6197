"""SLED: a LLaMA decoder over [text ; latent frames], a per-frame generator, a stop head.

    x      = LayerNorm([E(text) ; W_z frames + b_z])        (one norm over the whole sequence)
    h      = Decoder(x)                                     (post-final-RMSNorm hidden states)
    frame  = g(h_t, noise)                                  (FrameGenerator, one pass)
    p_stop = sigmoid(w . h_t)                               (stop head)

Training loss = energy distance between generator samples and the target frame (fp32)
+ stop BCE with a large positive weight (the single "stop" position per utterance is rare)
[+ optional guided attention on chosen heads, ``modules/guided_attention.py``; off by default].
This module is plain PyTorch; ESPnet glue lives in ``espnet2_sled.tts.sled``.
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet2_sled.modules.config import LossConfig, SLEDConfig
from espnet2_sled.modules.decoder import AttentionProbe, Decoder, init_normal_
from espnet2_sled.modules.energy_distance import energy_score_loss
from espnet2_sled.modules.generator import FrameGenerator
from espnet2_sled.modules.guided_attention import guided_attention_loss
from espnet2_sled.modules.layout import Layout, build_layout

INITIALIZER_RANGE = 0.02  # std of the normal init of the backbone (upstream's initializer_range)


def hide_whole_frames(frame_emb: torch.Tensor, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """frame embeddings ``[..., dim]``, each zeroed whole with probability ``p`` (``frame_drop``).
    The mask is drawn on ``generator``'s device (default: the global RNG on ``frame_emb``'s)."""
    device = frame_emb.device if generator is None else generator.device
    keep = torch.rand(frame_emb.shape[:-1], device=device, generator=generator) >= p
    return frame_emb * keep[..., None].to(frame_emb.device, frame_emb.dtype)



def guided_attention_term(probe: AttentionProbe, layout: Layout, text_lengths: torch.Tensor,
                          frame_lengths: torch.Tensor, rows: torch.Tensor, loss_config: LossConfig) -> torch.Tensor:
    """The guided-attention loss over every probed layer's heads (one prior); rows ``[B]`` bool:
    the rows that saw their text (``modules/guided_attention.py``)."""
    heads = torch.cat([probe.probs[i] for i in loss_config.guided_attention_layers], dim=1)
    return guided_attention_loss(heads, layout, text_lengths, frame_lengths, rows, loss_config.guided_attention_sigma)

class SLEDLM(nn.Module):
    def __init__(self, config: SLEDConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.embed_tokens = nn.Embedding(config.vocab_size, dim)
        self.frame_proj = nn.Linear(config.latent_dim, dim)
        self.input_norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder = Decoder(config)
        self.generator = FrameGenerator(config)
        self.stop_head = nn.Linear(dim, 1, bias=False)
        # Initialisation as upstream: normal(0.02) backbone, xavier projections.
        init_normal_(self.embed_tokens, INITIALIZER_RANGE)
        init_normal_(self.decoder, INITIALIZER_RANGE)
        nn.init.xavier_uniform_(self.frame_proj.weight)
        nn.init.zeros_(self.frame_proj.bias)
        nn.init.xavier_uniform_(self.stop_head.weight)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def noise_dim(self) -> int:
        return self.config.noise_dim

    # ------------------------------------------------------------------ sequence
    def embed_slots(self, text: torch.Tensor, frames: torch.Tensor, layout: Layout, eos_id: int) -> torch.Tensor:
        """text ``[B, N]``, frames ``[B, T, D]`` -> slot embeddings ``[B, L, dim]`` (before the input norm)."""
        text_emb = self.embed_tokens(text.gather(1, layout.text_index.clamp(min=0)))
        if frames.shape[1] == 0:  # text-only prefill: gather needs something to index
            frames = frames.new_zeros(frames.shape[0], 1, frames.shape[2])
        frames_at = frames.gather(1, layout.frame_index.clamp(min=0)[..., None].expand(-1, -1, frames.shape[-1]))
        # Gaussian noise (frame_noise std, in latent units) on the frames fed back as input
        # (training only; 0 = off, as upstream): at decoding the model reads its own sampled
        # frames, which are never exactly on the data; trained on clean frames only, its errors compound.
        if self.training and self.config.frame_noise > 0:
            frames_at = frames_at + self.config.frame_noise * torch.randn_like(frames_at)
        frame_emb = self.frame_proj(frames_at.to(self.frame_proj.weight.dtype))
        # Dropout on the embeddings of the frames fed back as input (training only; 0 = off,
        # as upstream). Like Tacotron 2's pre-net dropout: the past frames alone then cannot
        # predict the next one, so the model has to read the text early in training.
        if self.training and self.config.frame_dropout > 0:
            frame_emb = F.dropout(frame_emb, self.config.frame_dropout)
        # Whole-frame drop (training only; 0 = off, as upstream): each fed-back frame's embedding
        # is zeroed with probability frame_drop. Element-wise dropout leaves most of a frame's
        # information in place; a hidden frame cannot be copied, so the next frame has to come
        # from the text (and older frames).
        if self.training and self.config.frame_drop > 0:
            frame_emb = hide_whole_frames(frame_emb, self.config.frame_drop)
        eos_emb = self.embed_tokens.weight[eos_id].to(text_emb.dtype)
        is_frame = (layout.frame_index >= 0)[..., None]
        x = torch.where(is_frame, frame_emb.to(text_emb.dtype), text_emb)
        return torch.where(layout.eos_slot[..., None], eos_emb, x)

    def hidden_states(self, text, text_lengths, frames, frame_lengths, layout: Layout, eos_id: int,
                      probe: Optional[AttentionProbe] = None) -> torch.Tensor:
        """Teacher-forced hidden states ``[B, L, dim]`` for a layout."""
        x = self.input_norm(self.embed_slots(text, frames, layout, eos_id))
        return self.decoder(x, layout.positions, layout.visible, probe=probe)

    # ------------------------------------------------------------------ loss
    def loss(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        frames: torch.Tensor,
        frame_lengths: torch.Tensor,
        loss_config: LossConfig,
        text_dropout: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """text ``[B, N]`` (wrapped ``<s> .. </s>``), frames ``[B, T, D]``, laid out as ``config.layout``.

        loss = energy distance (``energy_term``) + stop BCE (``stop_term``)
        [+ ``guided_attention_weight`` x guided attention (``guided_attention_term``)].

        text_dropout ``[B]`` bool: rows trained without text (CFG). noise ``[M, F, noise_dim]``
        with F = number of real frames in (b, t) order, or the whole padded grid
        ``[M, B, T, noise_dim]`` (upstream draws noise for every slot and masks afterwards), or
        None (``loss_config.energy_samples`` draws). ``loss_config.self_feed > 0`` (training
        only) replaces that fraction of the input frames by the model's own samples of them
        (``own_samples_mixed_in``); the targets stay the ground truth. Returns (loss, stats).
        """
        config, eos_id = self.config, self.config.eos_id
        layout = build_layout(text_lengths, frame_lengths, config.layout, config.tokens_per_chunk,
                              config.frames_per_chunk, text_dropout)
        probe = (AttentionProbe(loss_config.guided_attention_layers, loss_config.guided_attention_heads)
                 if loss_config.guided else None)
        frame_mask = torch.arange(frames.shape[1], device=frames.device)[None] < frame_lengths[:, None]  # [B, T]
        inputs = frames
        if self.training and loss_config.self_feed > 0:
            inputs = self.own_samples_mixed_in(text, text_lengths, frames, frame_lengths, layout, eos_id,
                                               frame_mask, loss_config.self_feed)
        h = self.hidden_states(text, text_lengths, inputs, frame_lengths, layout, eos_id, probe)  # [B, L, dim]
        energy = self.energy_term(h, frames, frame_mask, layout, loss_config, noise)
        with torch.autocast(device_type=h.device.type, enabled=False):  # the stop and guide terms in fp32
            stop_loss, stop_acc = self.stop_term(h, layout, loss_config.stop_pos_weight)
            loss = energy + stop_loss
            if probe is not None:
                rows = (torch.ones_like(frame_lengths, dtype=torch.bool) if text_dropout is None
                        else ~text_dropout.to(h.device))
                guide = guided_attention_term(probe, layout, text_lengths, frame_lengths, rows, loss_config)
                loss = loss + loss_config.guided_attention_weight * guide
        stats = dict(loss=loss.detach(), energy_distance=energy.detach(), stop_loss=stop_loss.detach(),
                     stop_acc=stop_acc.detach())
        if probe is not None:
            stats["guided_attention"] = guide.detach()
        return loss, stats

    def energy_term(self, h: torch.Tensor, frames: torch.Tensor, frame_mask: torch.Tensor, layout: Layout,
                    loss_config: LossConfig, noise: Optional[torch.Tensor]) -> torch.Tensor:
        """Energy distance between generator samples at each frame's slot and the frame itself.

        h ``[B, L, dim]``, frames ``[B, T, D]``, frame_mask ``[B, T]``; noise as in ``loss``.
        Returns the mean over the F real frames (a scalar).
        """
        z = h.gather(1, layout.frame_slot[..., None].expand(-1, -1, h.shape[-1]))[frame_mask]  # [F, dim]
        target = frames[frame_mask]  # [F, D]
        if noise is not None and noise.dim() == 4:  # padded grid [M, B, >=T, noise_dim]
            noise = noise[:, :, :frames.shape[1]][:, frame_mask]
        if noise is None:
            noise = torch.randn(loss_config.energy_samples, z.shape[0], self.noise_dim, device=z.device, dtype=z.dtype)
        samples = self.generator(z[None].expand(noise.shape[0], -1, -1), noise.to(z.dtype))  # [M, F, D]
        return energy_score_loss(samples, target, loss_config.energy_beta).mean()

    def stop_term(self, h: torch.Tensor, layout: Layout, pos_weight: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weighted stop BCE over each row's T+1 stop slots (fp32) and its accuracy at logit 0.

        h ``[B, L, dim]`` -> (loss, accuracy), scalars. The one "stop" slot per utterance
        weighs ``pos_weight`` (it is rare); slots past a row's end weigh 0 (``layout.stop_weight``).
        """
        stop_h = h.gather(1, layout.stop_slot[..., None].expand(-1, -1, h.shape[-1]))  # [B, T+1, dim]
        logits = F.linear(stop_h.float(), self.stop_head.weight.float()).squeeze(-1)  # [B, T+1]
        bce = F.binary_cross_entropy_with_logits(logits, layout.stop_target, reduction="none",
                                                 pos_weight=torch.tensor(pos_weight, device=logits.device))
        weight_sum = layout.stop_weight.sum()
        correct = ((logits > 0).float() == layout.stop_target).float()
        return (bce * layout.stop_weight).sum() / weight_sum, (correct * layout.stop_weight).sum() / weight_sum

    @torch.no_grad()
    def teacher_forced_samples(self, text, text_lengths, frames, frame_lengths, layout: Layout, eos_id: int,
                               noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One teacher-forced pass: ``[B, T, D]``, frame t sampled by the generator given the
        text and the ground-truth ``frames[:, :t]`` (``[B, T, D]``). noise ``[B, T, noise_dim]``,
        or None (drawn from the global RNG after the pass)."""
        h = self.hidden_states(text, text_lengths, frames, frame_lengths, layout, eos_id)
        z = h.gather(1, layout.frame_slot[..., None].expand(-1, -1, h.shape[-1]))  # [B, T, dim]
        if noise is None:
            noise = torch.randn(*z.shape[:2], self.noise_dim, device=z.device, dtype=z.dtype)
        return self.generator(z, noise.to(z.device, z.dtype))

    def own_samples_mixed_in(self, text, text_lengths, frames, frame_lengths, layout, eos_id, frame_mask, rate):
        """frames ``[B, T, D]`` with a ``rate`` fraction of the real frames replaced by this
        model's sample of that frame given the ground-truth past (``teacher_forced_samples``)."""
        own = self.teacher_forced_samples(text, text_lengths, frames, frame_lengths, layout, eos_id)
        swap = (torch.rand(frame_mask.shape, device=frames.device) < rate) & frame_mask
        return torch.where(swap[..., None], own.to(frames.dtype), frames)

    # ------------------------------------------------------------------ decoding
    def sample_frame(
        self, hidden: torch.Tensor, noise: torch.Tensor, cfg_scale: float
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """hidden ``[R, dim]`` (R = B, or 2B with the unconditional rows last), noise ``[B, noise_dim]``.

        Guidance acts on the hidden state, not on the sample: the generator sees
        h_u + s (h_c - h_u), and the stop head sees the conditional state only.
        Returns (frame ``[B, D]``, stop probability ``[B]``).
        """
        B = noise.shape[0]
        h_cond = hidden[:B]
        h = h_cond
        if hidden.shape[0] == 2 * B:  # the guidance sum in fp32 (a no-op for an fp32 backbone)
            h_uncond = hidden[B:].float()
            h = (h_uncond + cfg_scale * (h_cond.float() - h_uncond)).to(hidden.dtype)
        frame = self.generator(h, noise.to(h.dtype))
        # The stop head stays fp32 when the backbone is bf16 (modules/precision.py).
        stop_prob = torch.sigmoid(self.stop_head(h_cond.to(self.stop_head.weight.dtype)).float().squeeze(-1))
        return frame, stop_prob
