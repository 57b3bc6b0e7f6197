"""The per-frame generator g(z, noise): a noise-driven AdaLN MLP.

Roles are swapped relative to DiT/MAR: the trunk carries the autoregressive state ``z``
and the *noise* predicts every block's shift, scale and gate. One forward pass turns a
hidden state and a Gaussian draw into one latent frame, so sampling costs one MLP call.
At initialisation every gate and the output layer are zero: the generator outputs 0.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from espnet2_sled.modules.config import SLEDConfig
from espnet2_sled.modules.packed import decode_linear


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class NoiseModulatedBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.in_norm = nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)
        self.noise_norm = nn.LayerNorm(width, eps=1e-6)
        self.modulation = nn.Linear(width, 3 * width)  # -> shift | scale | gate
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x, noise_embedding):
        if self.training and torch.is_grad_enabled():  # keep the shared noise embedding, not its norm
            noise_features = checkpoint(self.noise_features, noise_embedding, use_reentrant=False)
        else:
            noise_features = self.noise_features(noise_embedding)
        shift, scale, gate = decode_linear(self.modulation, noise_features).chunk(3, dim=-1)
        h = decode_linear(self.fc2, F.silu(decode_linear(self.fc1, modulate(self.in_norm(x), shift, scale))))
        if torch.is_grad_enabled():
            # `gate * h` keeps gate for the backward; as a view it would keep the whole
            # [.., 3 * width] modulation output alive (training memory), as a copy only a third.
            gate = gate.contiguous()
        return x + gate * h

    def noise_features(self, noise_embedding):
        return F.silu(self.noise_norm(noise_embedding))


class NoiseModulatedOutput(nn.Module):
    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)
        self.modulation = nn.Linear(width, 2 * width)  # -> shift | scale (no norm on the noise here)
        self.linear = nn.Linear(width, out_dim)

    def forward(self, x, noise_embedding):
        shift, scale = decode_linear(self.modulation, F.silu(noise_embedding)).chunk(2, dim=-1)
        return decode_linear(self.linear, modulate(self.norm(x), shift, scale))


class FrameGenerator(nn.Module):
    """g(z, noise) -> latent frame.

    ``z [..., dim]`` (the decoder's hidden state) and ``noise [..., noise_dim]`` ->
    ``[..., latent_dim]``; ``generator_width`` wide, ``generator_depth`` blocks.
    """

    def __init__(self, config: SLEDConfig):
        super().__init__()
        width = config.generator_width
        self.noise_dim = config.noise_dim
        self.noise_proj = nn.Linear(config.noise_dim, width)
        self.cond_proj = nn.Linear(config.dim, width)
        self.blocks = nn.ModuleList(NoiseModulatedBlock(width) for _ in range(config.generator_depth))
        self.output = NoiseModulatedOutput(width, config.latent_dim)
        self.reset_parameters()

    def reset_parameters(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero gates and output: each block starts as the identity and g(z, e) = 0.
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        for layer in (self.output.modulation, self.output.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        n = decode_linear(self.noise_proj, noise)
        x = decode_linear(self.cond_proj, z)
        for block in self.blocks:
            x = block(x, n)
        dtype = self.output.linear.weight.dtype  # fp32 output layer under a bf16 trunk (modules/precision.py)
        return self.output(x.to(dtype), n.to(dtype))
