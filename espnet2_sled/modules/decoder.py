"""LLaMA-style decoder: RMSNorm, rotary positions, SwiGLU, SDPA attention, KV cache.

Matches the upstream backbone (HF Llama with residual and activation dropout): pre-norm
blocks, a final RMSNorm, no biases, RoPE in the "rotate half" convention so that
upstream q/k weights load without permutation.

Positions are explicit (``positions [B, L]``) and the attention mask is built from a
per-slot visibility flag, so one decoder serves training (whole sequence), prefill and
one-frame steps (through ``KVCache``), left-padded batches and the streaming layouts.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from espnet2_sled.modules.config import SLEDConfig
from espnet2_sled.modules.packed import PackedLinear, decode_linear, pack_linears, packed_or_separate


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.weight._no_weight_decay = True  # honoured by ESPnet's --exclude_weight_decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            # Keep only the input for the backward (the residual stream, kept anyway), not
            # the normalised copy: recomputing it is one cheap pass (training memory).
            return checkpoint(self.normalize, x, use_reentrant=False)
        return self.normalize(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 (as HF Llama does), return in the input dtype.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """``[head_dim / 2]`` rotation frequencies (HF Llama's, no scaling)."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def rotary_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype):
    """positions ``[B, L]`` -> (cos, sin) each ``[B, 1, L, head_dim]``."""
    angles = positions.float()[..., None] * inv_freq  # [B, L, hd/2]
    angles = torch.cat([angles, angles], dim=-1)[:, None]  # [B, 1, L, hd]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x ``[B, H, L, hd]``; rotate-half convention (first half pairs with second half)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class KVCache:
    """Preallocated keys/values for every layer; a step writes in place, nothing is copied.

    ``visible [R, capacity]`` says which cached slots may be attended to (padding and
    masked text are never visible). Slots are shared columns across the rows of a batch.
    ``length`` (host) and ``write_index`` (``[1]`` long, on the device) both count the
    slots in use: eager feeds read the first, the fixed-shape step (``Decoder.step``) reads
    and advances the second, so a captured step needs no host value.
    """

    def __init__(self, num_layers, rows, heads, head_dim, capacity, device, dtype):
        shape = (rows, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.visible = torch.zeros(rows, capacity, dtype=torch.bool, device=device)
        self.write_index = torch.zeros(1, dtype=torch.long, device=device)
        self.length = 0
        self.capacity = capacity

    def reserve(self, num_slots: int, visible: torch.Tensor) -> slice:
        """Claim the next ``num_slots`` columns; visible ``[R, num_slots]``."""
        self.check_room(num_slots)
        span = slice(self.length, self.length + num_slots)
        self.visible[:, span] = visible
        self.length += num_slots
        self.write_index.fill_(self.length)
        return span

    def check_room(self, num_slots: int) -> None:
        if self.length + num_slots > self.capacity:
            raise RuntimeError(
                f"KV cache full: {self.length} + {num_slots} slots exceed its capacity "
                f"{self.capacity} (the model's max_positions); shorten the text or max_frames"
            )

    def window(self, slots: int) -> int:
        """Keys a one-slot step attends to once ``slots`` are in use: the smallest of
        64, 128, 256, .. (capped at the capacity) that holds them. The step's shapes change
        only when the window doubles (a handful of captured graphs per decode, never one per
        step), and its attention reads at most twice the live keys, not the whole capacity
        (capacity 2048 at batch 64 with CFG would be ~25 GB of fp32 keys/values per step)."""
        window = 64
        while window < slots:
            window *= 2
        return min(window, self.capacity)


def attention_mask(visible_keys: torch.Tensor, num_queries: int, query_offset: int) -> torch.Tensor:
    """Causal mask over visible keys: ``[R, 1, Lq, Lk]`` bool (True = may attend).

    Each query also sees itself, so a row of pure padding never has an empty softmax
    (its output is unused; visible slots never attend to it).
    """
    num_keys = visible_keys.shape[1]
    q_idx = torch.arange(num_queries, device=visible_keys.device)[:, None] + query_offset
    k_idx = torch.arange(num_keys, device=visible_keys.device)[None, :]
    causal = k_idx <= q_idx  # [Lq, Lk]
    mask = causal[None] & visible_keys[:, None, :]
    mask = mask | (k_idx == q_idx)[None]
    return mask[:, None]


@dataclass
class AttentionProbe:
    """Asks ``Decoder.forward`` for the attention probabilities of the first ``heads`` heads
    of each layer in ``layers``; filled in place as ``probs[layer]`` ``[B, heads, Lq, Lk]``
    (before attention dropout). Used by the guided-attention loss; costs one extra
    softmax(QK^T) over those heads only."""

    layers: Tuple[int, ...]
    heads: int
    probs: Dict[int, torch.Tensor] = field(default_factory=dict)


class Attention(nn.Module):
    def __init__(self, config: SLEDConfig):
        super().__init__()
        dim = config.dim
        self.heads, self.head_dim = config.heads, dim // config.heads
        self.rope_theta = config.rope_theta
        self.attention_dropout = config.attention_dropout
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.packed_qkv: Optional[PackedLinear] = None  # q | k | v as one matmul when decoding (Decoder.pack)

    def forward(self, x, rope, mask, cache: Optional[KVCache], layer: int, span: Optional[slice],
                probe: Optional[AttentionProbe] = None):
        B, L, _ = x.shape
        q, k, v = (
            y.view(B, L, self.heads, self.head_dim).transpose(1, 2)
            for y in packed_or_separate(self.packed_qkv, (self.q_proj, self.k_proj, self.v_proj), x,
                                        step=isinstance(span, torch.Tensor))
        )
        cos, sin = rope
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None and isinstance(span, torch.Tensor):
            # Fixed-shape step: write at the device index, attend over the whole window
            # (the mask hides unwritten and invisible slots), same shapes every step.
            cache.keys[layer].index_copy_(2, span, k.to(cache.keys[layer].dtype))
            cache.values[layer].index_copy_(2, span, v.to(cache.values[layer].dtype))
            k = cache.keys[layer][:, :, : mask.shape[-1]]
            v = cache.values[layer][:, :, : mask.shape[-1]]
        elif cache is not None:
            cache.keys[layer][:, :, span] = k
            cache.values[layer][:, :, span] = v
            k = cache.keys[layer][:, :, : span.stop]
            v = cache.values[layer][:, :, : span.stop]
        if probe is not None and layer in probe.layers:
            h = probe.heads
            scores = (q[:, :h] @ k[:, :h].transpose(-1, -2).to(q.dtype)).float() * self.head_dim**-0.5
            probe.probs[layer] = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        dropout = self.attention_dropout if self.training else 0.0
        if dropout > 0 and q.device.type == "cpu" and torch.is_grad_enabled():
            # With dropout, CPU SDPA falls back to its math kernel, which keeps ~4 fp32
            # [B, H, L, L] tensors per layer for the backward (~1.5 GB for 4 x 5 s on the paper
            # config). Recompute them in the backward instead (~2% more compute); the RNG
            # state is replayed, so the dropout mask, loss and gradients are unchanged.
            y = checkpoint(F.scaled_dot_product_attention, q, k.to(q.dtype), v.to(q.dtype), mask, dropout,
                           use_reentrant=False)
        else:
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, dropout_p=dropout)
        return decode_linear(self.o_proj, y.transpose(1, 2).reshape(B, L, -1))


class SwiGLU(nn.Module):
    def __init__(self, config: SLEDConfig):
        super().__init__()
        dim, hidden = config.dim, config.ffn_dim
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(config.activation_dropout)
        self.packed_gate_up: Optional[PackedLinear] = None  # gate | up as one matmul when decoding (Decoder.pack)

    def forward(self, x, step: bool = False):
        gate, up = packed_or_separate(self.packed_gate_up, (self.gate_proj, self.up_proj), x, step)
        if self.training and self.dropout.p > 0 and torch.is_grad_enabled():
            # Recompute silu(gate) and the dropout mask in the backward instead of keeping
            # them (training memory); the RNG state is replayed: same mask, same gradients.
            return self.down_proj(checkpoint(self.activation, gate, up, use_reentrant=False))
        return decode_linear(self.down_proj, self.activation(gate, up))

    def activation(self, gate, up):
        return self.dropout(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: SLEDConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = SwiGLU(config)
        self.dropout = nn.Dropout(config.dropout)  # residual dropout, as upstream

    def forward(self, x, rope, mask, cache, layer, span, probe=None):
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), rope, mask, cache, layer, span, probe))
        step = isinstance(span, torch.Tensor)  # the fixed-shape decode step (Decoder.step)
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x), step))


class Decoder(nn.Module):
    """Stack of ``config.layers`` blocks + final RMSNorm. Output: post-norm hidden ``[B, L, dim]``."""

    def __init__(self, config: SLEDConfig):
        super().__init__()
        self.dim, self.heads, self.head_dim = config.dim, config.heads, config.dim // config.heads
        self.rope_theta = config.rope_theta
        self.layers = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        # A constant of the model, computed once (not per decode step). A plain fp32 tensor,
        # not a buffer: model.to(dtype=half) must not round the rotation frequencies.
        self.inv_freq = rotary_inv_freq(self.head_dim, config.rope_theta)
        # True: the fp32/bf16 decode step packs q | k | v and gate | up (pack). Off by default:
        # the packed matmul may round ~1 ulp differently, which a free-running decode
        # amplifies, and the frames must stay bitwise those of the unpacked model (the
        # reference implementation's layout). int8 decoding always packs (precision.py).
        self.packing = False

    def pack(self, enabled: Optional[bool] = None) -> List[PackedLinear]:
        """Pack each layer's q | k | v and gate | up linears for the decode step when
        ``enabled`` (default: ``packing``; ``modules/packed.py``: no added memory, state dict
        unchanged, outputs within ~1 ulp per step); returns the packings in use. Called at
        the start of every decode (``DecodingState``): an intact packing is kept, a broken
        one rebuilt, a disabled one dropped; an int8 packing (precision.py) stays for good."""
        enabled = self.packing if enabled is None else enabled
        for block in self.layers:
            attn, mlp = block.self_attn, block.mlp
            attn.packed_qkv = pack_linears(attn.packed_qkv, (attn.q_proj, attn.k_proj, attn.v_proj), enabled)
            mlp.packed_gate_up = pack_linears(mlp.packed_gate_up, (mlp.gate_proj, mlp.up_proj), enabled)
        return [p for block in self.layers for p in (block.self_attn.packed_qkv, block.mlp.packed_gate_up)
                if p is not None]

    def new_cache(self, rows: int, capacity: int, device, dtype) -> KVCache:
        return KVCache(len(self.layers), rows, self.heads, self.head_dim, capacity, device, dtype)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        visible: torch.Tensor,
        cache: Optional[KVCache] = None,
        probe: Optional[AttentionProbe] = None,
    ) -> torch.Tensor:
        """x ``[B, L, dim]``, positions ``[B, L]`` (long), visible ``[B, L]`` (bool).

        Without a cache: causal attention over the visible slots of ``x``. With a cache:
        ``x`` is appended after the cached slots and attends to all visible ones.
        ``probe`` (optional) collects attention probabilities of chosen layers/heads.
        """
        L = x.shape[1]
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        if self.inv_freq.device != positions.device:
            self.inv_freq = self.inv_freq.to(positions.device)
        rope = rotary_cos_sin(positions, self.inv_freq, dtype)
        if cache is None:
            span, mask = None, attention_mask(visible, L, 0)
        else:
            offset = cache.length
            span = cache.reserve(L, visible)
            mask = attention_mask(cache.visible[:, : span.stop], L, offset)
        for i, block in enumerate(self.layers):
            x = block(x, rope, mask, cache, i, span, probe)
        return self.norm(x)

    def step(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache, window: int) -> torch.Tensor:
        """The fixed-shape decode step: one visible slot per row. x ``[R, 1, dim]``,
        positions ``[R, 1]`` (on the device) -> hidden ``[R, 1, dim]``.

        Writes at ``cache.write_index`` and advances it, marks the slot visible in place, and
        attends over the first ``window`` slots (``cache.window``) with the visibility mask:
        no host value is read, so the step can be compiled or captured as a CUDA graph.
        Equal to ``forward(x, positions, ones, cache)`` (the caller advances ``cache.length``).
        """
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        if self.inv_freq.device != positions.device:  # moved once, by the eager warm-up (no copy in a graph)
            self.inv_freq = self.inv_freq.to(positions.device)
        rope = rotary_cos_sin(positions, self.inv_freq, dtype)
        index = cache.write_index
        cache.visible.index_fill_(1, index, True)
        # Slots past the write index are not yet visible, so visibility alone is the causal mask,
        # made additive once per step (with a bool mask every layer's attention converts it).
        visible = cache.visible[:, None, None, :window]
        mask = torch.zeros(visible.shape, dtype=dtype, device=x.device)
        mask.masked_fill_(~visible, float("-inf"))
        for i, block in enumerate(self.layers):
            x = block(x, rope, mask, cache, i, index)
        cache.write_index.add_(1)
        return self.norm(x)


def init_normal_(module: nn.Module, std: float = 0.02) -> None:
    """HF-Llama initialisation for the backbone: N(0, std) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


__all__ = ["Decoder", "KVCache", "RMSNorm", "init_normal_"]
