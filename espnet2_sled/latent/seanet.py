"""Causal SEANet encoder/decoder (the Encodec 24 kHz architecture) with a streaming path.

Every layer has two entry points:

- ``forward(x)``: the whole signal at once (what extraction and one-shot decoding use);
- ``step(x, cache)``: one chunk of a stream; ``cache`` is a dict owned by the caller in
  which each stateful layer keeps what it needs from the past (convolution left context,
  transposed-convolution overlap, LSTM ``(h, c)``), keyed by the layer itself.

For stride-1 layers with ``pad_mode="replicate"`` the two are the same computation, so a
stream of chunks reproduces ``forward`` of the concatenation (up to float rounding in the
transposed-convolution overlap-add). ``pad_mode="reflect"`` (what Encodec and HF use)
looks a few samples *ahead* at the very start of every layer, which no causal stream can
do; the decoder therefore streams with replicate padding (see ``EncodecLatent``).

Weights are plain tensors (no weight-norm parametrisation): this module is inference-only
and the loaders in ``weights.py`` fold Encodec's ``g * v / |v|`` into ``weight``.
"""

import math
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

Cache = Dict[nn.Module, object]


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last axis of ``x [B, C, S]``; reflect on a signal shorter than the pad first
    zero-extends it on the right (as Encodec does), then drops that extension again."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode=mode) if (left or right) else x
    length = x.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


class CausalConv1d(nn.Conv1d):
    """Conv1d padded on the left by ``(kernel - 1) * dilation - (stride - 1)`` and on the
    right just enough that the last window is full; ``[B, C_in, S] -> [B, C_out, ceil(S/stride)]``."""

    def __init__(self, *args, pad_mode: str = "reflect", **kwargs):
        super().__init__(*args, **kwargs)
        self.pad_mode = pad_mode

    @property
    def left_context(self) -> int:
        return (self.kernel_size[0] - 1) * self.dilation[0] - (self.stride[0] - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = (self.kernel_size[0] - 1) * self.dilation[0] + 1
        stride = self.stride[0]
        pad = self.left_context
        frames = (x.shape[-1] - kernel + pad) / stride + 1
        right = (math.ceil(frames) - 1) * stride + (kernel - pad) - x.shape[-1]
        return self._conv_forward(pad1d(x, pad, right, self.pad_mode), self.weight, self.bias)

    def step(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        """One chunk ``[B, C_in, s] -> [B, C_out, s]`` (stride 1 only)."""
        assert self.stride[0] == 1, "streaming is implemented for stride-1 convolutions"
        pad = self.left_context
        if pad == 0:
            return self._conv_forward(x, self.weight, self.bias)
        past = cache.get(self)
        if past is None:  # first chunk: replicate the first sample, like F.pad(mode="replicate")
            past = x[..., :1].expand(-1, -1, pad)
        x = torch.cat([past, x], dim=-1)
        cache[self] = x[..., -pad:]
        return self._conv_forward(x, self.weight, self.bias)


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """ConvTranspose1d with the ``kernel - stride`` overhang trimmed on the right:
    ``[B, C_in, T] -> [B, C_out, T * stride]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose1d(x, self.weight, self.bias, self.stride)
        return y[..., : x.shape[-1] * self.stride[0]]

    def step(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        """One chunk ``[B, C_in, t] -> [B, C_out, t * stride]``; the overhang of the last frame
        is kept and added to the start of the next chunk.

        With ``kernel == 2 * stride`` (SEANet) every input frame writes two output blocks of
        ``stride`` samples: block t = head(frame t) + tail(frame t - 1). That is one matmul,
        several times cheaper than a small ``conv_transpose1d`` call.
        """
        kernel, stride = self.kernel_size[0], self.stride[0]
        assert kernel == 2 * stride, "streaming needs kernel_size == 2 * stride"
        batch, channels, frames = x.shape
        y = (x.transpose(1, 2) @ self.weight.reshape(channels, -1)).view(batch, frames, -1, kernel)
        head, tail = y[..., :stride], y[..., stride:]  # [B, t, C_out, stride] each
        previous = cache.get(self)
        if previous is None:
            previous = torch.zeros_like(tail[:, :1])
        cache[self] = tail[:, -1:]
        blocks = head + torch.cat([previous, tail[:, :-1]], dim=1) + self.bias[:, None]
        return blocks.permute(0, 2, 1, 3).reshape(batch, -1, frames * stride)


class SkipLSTM(nn.Module):
    """Unidirectional multi-layer LSTM plus identity skip, conv layout ``[B, C, T] -> [B, C, T]``."""

    def __init__(self, dim: int, num_layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.step(x, {})

    def step(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        seq = x.permute(2, 0, 1)  # [T, B, C]
        if seq.shape[0] > self.cell_loop_max_steps:
            y, cache[self] = self.lstm(seq, cache.get(self))
        else:
            y, cache[self] = self._cell_loop(seq, cache.get(self))
        return (y + seq).permute(1, 2, 0)

    # nn.LSTM (oneDNN) has a fixed cost per call of ~1-2 ms; for the few steps of a stream
    # chunk, plain lstm_cell calls are several times cheaper and agree to ~1e-7.
    cell_loop_max_steps = 4

    def _cell_loop(self, seq: torch.Tensor, state):
        lstm = self.lstm
        if state is None:
            zeros = seq.new_zeros(lstm.num_layers, seq.shape[1], lstm.hidden_size)
            state = (zeros, zeros)
        hs, cs = [], []
        for layer in range(lstm.num_layers):
            weights = [getattr(lstm, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h, c = state[0][layer], state[1][layer]
            outputs = []
            for frame in seq:
                h, c = torch.lstm_cell(frame, (h, c), *weights)
                outputs.append(h)
            seq = torch.stack(outputs)
            hs.append(h)
            cs.append(c)
        return seq, (torch.stack(hs), torch.stack(cs))


class ResidualUnit(nn.Module):
    """``x + block(x)`` with a 1x1 convolution as shortcut (SEANet ``true_skip=False``)."""

    def __init__(self, dim: int, kernel_size: int, pad_mode: str):
        super().__init__()
        hidden = dim // 2
        self.block = nn.ModuleList([
            nn.ELU(), CausalConv1d(dim, hidden, kernel_size, pad_mode=pad_mode),
            nn.ELU(), CausalConv1d(hidden, dim, 1, pad_mode=pad_mode),
        ])
        self.shortcut = CausalConv1d(dim, dim, 1, pad_mode=pad_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.block:
            y = layer(y)
        return self.shortcut(x) + y

    def step(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        y = x
        for layer in self.block:
            y = layer.step(y, cache) if hasattr(layer, "step") else layer(y)
        return self.shortcut.step(x, cache) + y


class _Stack(nn.Module):
    def __init__(self, layers: List[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def step(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        for layer in self.layers:
            x = layer.step(x, cache) if hasattr(layer, "step") else layer(x)
        return x

    def weighted_modules(self) -> List[nn.Module]:
        """Convolutions and LSTMs in checkpoint order (Encodec and HF list them the same way)."""
        return [m for m in self.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d, nn.LSTM))]


class SEANetEncoder(_Stack):
    """Audio ``[B, 1, S]`` -> pre-quantisation latent ``[B, dim, ceil(S / prod(ratios))]``."""

    def __init__(self, dim: int = 128, filters: int = 32, ratios: Sequence[int] = (8, 5, 4, 2),
                 pad_mode: str = "reflect"):
        layers: List[nn.Module] = [CausalConv1d(1, filters, 7, pad_mode=pad_mode)]
        width = filters
        for ratio in reversed(ratios):
            layers += [
                ResidualUnit(width, 3, pad_mode),
                nn.ELU(),
                CausalConv1d(width, width * 2, ratio * 2, stride=ratio, pad_mode=pad_mode),
            ]
            width *= 2
        layers += [SkipLSTM(width), nn.ELU(), CausalConv1d(width, dim, 7, pad_mode=pad_mode)]
        super().__init__(layers)


class SEANetDecoder(_Stack):
    """Latent ``[B, dim, T]`` -> audio ``[B, 1, T * prod(ratios)]``; ``step`` streams it."""

    def __init__(self, dim: int = 128, filters: int = 32, ratios: Sequence[int] = (8, 5, 4, 2),
                 pad_mode: str = "replicate"):
        width = filters * 2 ** len(ratios)
        layers: List[nn.Module] = [CausalConv1d(dim, width, 7, pad_mode=pad_mode), SkipLSTM(width)]
        for ratio in ratios:
            layers += [
                nn.ELU(),
                CausalConvTranspose1d(width, width // 2, ratio * 2, stride=ratio),
                ResidualUnit(width // 2, 3, pad_mode),
            ]
            width //= 2
        layers += [nn.ELU(), CausalConv1d(width, 1, 7, pad_mode=pad_mode)]
        super().__init__(layers)
