"""The interface every latent space implements.

SLED never looks inside a latent space: it is given frames ``[T, latent_dim]`` at
``frame_rate`` Hz for training and hands generated frames back for waveform decoding.
A latent space is an ``nn.Module`` so that its weights (when it has any) live in the
SLED checkpoint and a packed model decodes offline.
"""

from typing import Optional

import torch


class StreamingLatentDecoder:
    """Turns latent chunks into audio chunks, carrying state between calls.

    ``push(frames [B, t, D]) -> audio [B, t * hop_length]``; the concatenation of all
    pushed outputs equals ``LatentSpace.decode`` of the concatenated frames.
    """

    def push(self, frames: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class LatentSpace(torch.nn.Module):
    """Audio <-> continuous frames. Subclasses set the four attributes below."""

    sample_rate: int  # Hz of the waveform side (24000 for every space we ship)
    hop_length: int  # samples per frame (320 -> 75 Hz at 24 kHz)
    latent_dim: int  # width D of one frame

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def encode(self, audio: torch.Tensor, sample_rate: Optional[int] = None) -> torch.Tensor:
        """audio ``[S]`` or ``[B, S]`` or ``[B, C, S]`` at ``sample_rate`` -> ``[B, T, D]`` fp32."""
        raise NotImplementedError

    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames ``[B, T, D]`` -> audio ``[B, T * hop_length]`` fp32."""
        raise NotImplementedError

    def stream_decoder(self, batch_size: int = 1) -> StreamingLatentDecoder:
        raise NotImplementedError
