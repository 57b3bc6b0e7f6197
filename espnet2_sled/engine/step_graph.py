"""The decode step as one exportable function of explicit tensors (no cache object).

Same arithmetic as ``DecodingState.fixed_step`` (sample a frame from the last hidden state
with CFG on the hidden state, feed it back through the decoder), with one difference of
layout that decides the runtime's speed: the KV cache is never an output. Each layer reads
its past window ``[R, H, W, hd]`` (host buffers bound by pointer, no copy) and attends the
new slot separately: scores against the past and against the new key, one softmax over
both, ``P_past @ V_past + p_new * v_new``; only the new slot's key/value ``[R, H, 1, hd]``
leave the graph, and the host writes them into the cache in place. No Split or Concat of
the cache per step (a naive export copies ~50 MB per paper-config step doing that).
q | k | v and gate | up are packed into one MatMul each (fewer, larger weight reads).
"""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from espnet2_sled.modules.decoder import apply_rotary
from espnet2_sled.modules.sled_lm import SLEDLM


def input_names(layers: int) -> List[str]:
    return (["hidden", "noise", "cfg_scale", "positions", "past_mask"]
            + [f"past_{kind}_{i}" for i in range(layers) for kind in ("keys", "values")])


def output_names(layers: int) -> List[str]:
    return (["frame", "stop_prob", "next_hidden"]
            + [f"new_{kind}_{i}" for i in range(layers) for kind in ("keys", "values")])


class StepGraph(nn.Module):
    """``lm``'s decode step for ``copies`` rows per utterance (2: CFG, 1: none).

    hidden ``[R, dim]``, noise ``[B, noise_dim]``, cfg_scale ``[1]``, positions ``[R]`` long,
    past_mask ``[R, W]`` (0 = visible, -inf = not), past keys/values ``[R, H, W, hd]`` per
    layer -> frame ``[B, D]``, stop_prob ``[B]``, next_hidden ``[R, dim]``, new keys/values
    ``[R, H, 1, hd]`` per layer (R = copies * B)."""

    def __init__(self, lm: SLEDLM, copies: int):
        super().__init__()
        self.lm, self.copies = lm, copies
        decoder = lm.decoder
        self.heads, self.head_dim = decoder.heads, decoder.head_dim
        # Buffers, so the exporter writes them as initializers (plain tensor attributes become
        # Constant nodes, which the runtime's quantizers do not see).
        for i, b in enumerate(decoder.layers):
            attn, mlp = b.self_attn, b.mlp
            self.register_buffer(f"qkv_{i}", torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
            self.register_buffer(f"gate_up_{i}", torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))

    def forward(self, hidden, noise, cfg_scale, positions, past_mask, *past) -> Tuple[torch.Tensor, ...]:
        lm, decoder = self.lm, self.lm.decoder
        B = noise.shape[0]
        h_cond = hidden.view(self.copies, B, -1)[0]
        h = h_cond
        if self.copies == 2:  # guidance on the hidden state (SLEDLM.sample_frame)
            h_uncond = hidden.view(self.copies, B, -1)[1]
            h = h_uncond + cfg_scale * (h_cond - h_uncond)
        # [B, 1, ..]: the generator's linears export as MatMul (2-D ones become Gemm, which
        # the 4-bit quantizer leaves in fp32)
        frame = lm.generator(h[:, None], noise[:, None])[:, 0]
        stop_prob = torch.sigmoid(F.linear(h_cond, lm.stop_head.weight).squeeze(-1))
        x = lm.input_norm(lm.frame_proj(frame)).repeat(self.copies, 1)[:, None]  # [R, 1, dim]
        angles = positions.float()[:, None] * decoder.inv_freq  # [R, hd/2]
        angles = torch.cat([angles, angles], dim=-1)[:, None, None]  # [R, 1, 1, hd]
        cos, sin = angles.cos(), angles.sin()
        mask = past_mask[:, None, None, :]  # [R, 1, 1, W]
        new = []
        for i, block in enumerate(decoder.layers):
            q, k, v = self.attend_inputs(block, x, i, cos, sin)
            y = self.attend(q, k, v, past[2 * i], past[2 * i + 1], mask)
            x = x + F.linear(y.transpose(1, 2).reshape(x.shape), block.self_attn.o_proj.weight)
            gate, up = F.linear(block.post_attention_layernorm(x), getattr(self, f"gate_up_{i}")).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, block.mlp.down_proj.weight)
            new += [k, v]
        return (frame, stop_prob, decoder.norm(x)[:, 0], *new)

    def attend_inputs(self, block, x, layer: int, cos, sin):
        R = x.shape[0]
        q, k, v = (y.view(R, 1, self.heads, self.head_dim).transpose(1, 2)
                   for y in F.linear(block.input_layernorm(x), getattr(self, f"qkv_{layer}")).chunk(3, dim=-1))
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def attend(self, q, k, v, past_keys, past_values, mask):
        """q, k, v ``[R, H, 1, hd]``; past ``[R, H, W, hd]``; mask ``[R, 1, 1, W]`` additive."""
        scale = self.head_dim ** -0.5
        past_scores = (q @ past_keys.transpose(-1, -2)) * scale + mask  # [R, H, 1, W]
        new_score = (q * k).sum(-1, keepdim=True) * scale  # [R, H, 1, 1]; the new slot is always visible
        probs = torch.cat([past_scores, new_score], dim=-1).softmax(-1)
        return probs[..., :-1] @ past_values + probs[..., -1:] * v
