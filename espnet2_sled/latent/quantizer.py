"""Residual vector quantiser, inference only: nearest codeword per level, then the sum.

SLED's latent is ``sum_k codebooks[k][codes[k]]`` over the first ``num_codebooks`` levels
(8 at 6 kbps), i.e. the *dequantised* RVQ output, not the encoder output.
"""

import torch
from torch import nn


class ResidualCodebooks(nn.Module):
    """``num_codebooks`` codebooks of ``bins`` vectors of width ``dim``: ``codebooks [K, bins, dim]``."""

    def __init__(self, num_codebooks: int = 8, bins: int = 1024, dim: int = 128):
        super().__init__()
        self.codebooks = nn.Parameter(torch.zeros(num_codebooks, bins, dim), requires_grad=False)

    def encode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent ``[B, T, dim]`` -> codes ``LongTensor [B, K, T]``.

        Distances use the same expansion as Encodec and HF (``|x|^2 - 2 x.e + |e|^2`` as one
        matmul per level), so near-ties resolve to the same code.
        """
        batch, frames, dim = latent.shape
        residual = latent.reshape(batch * frames, dim)
        codes = []
        for codebook in self.codebooks:
            dist = -(residual.pow(2).sum(1, keepdim=True) - 2 * residual @ codebook.t()
                     + codebook.pow(2).sum(1, keepdim=True).t())
            index = dist.max(dim=-1).indices
            residual = residual - codebook[index]
            codes.append(index.view(batch, frames))
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes ``[B, K', T]`` (K' <= K) -> sum of the selected vectors ``[B, T, dim]``."""
        total = torch.tensor(0.0, device=codes.device)
        for level in range(codes.shape[1]):
            total = total + self.codebooks[level][codes[:, level]]
        return total
