"""Fast Griffin-Lim (with momentum) that can hold a known prefix of the signal fixed.

The fixed prefix is what makes chunked streaming work: each chunk is reconstructed
together with a few frames of already-emitted audio, and that audio is written back
after every iteration, so the new phases continue the old ones instead of restarting.
"""

from typing import Optional

import torch


def stft(audio: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """audio ``[B, S]`` -> complex ``[B, n_fft // 2 + 1, S // hop + 1]`` (centred, zero-padded)."""
    return torch.stft(audio, n_fft, hop, window.shape[0], window, center=True,
                      pad_mode="constant", return_complex=True)


def istft(spec: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """complex ``[B, F, N]`` -> audio ``[B, length]`` (inverse of ``stft``)."""
    return torch.istft(spec, n_fft, hop, window.shape[0], window, center=True, length=length)


def griffin_lim(magnitude: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, iters: int,
                momentum: float = 0.99, prefix: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Phase for ``magnitude [B, F, N]`` -> audio ``[B, (N - 1) * hop]``.

    ``prefix [B, P]``: samples known already; they overwrite the estimate every iteration.
    Starts from zero phase (deterministic). Cost: ``iters`` STFT/ISTFT pairs over N frames.
    """
    length = (magnitude.shape[-1] - 1) * hop
    angles = torch.ones_like(magnitude, dtype=torch.complex64)
    previous = torch.zeros_like(angles)
    for _ in range(iters):
        audio = _with_prefix(istft(magnitude * angles, n_fft, hop, window, length), prefix)
        rebuilt = stft(audio, n_fft, hop, window)
        angles = rebuilt - previous * (momentum / (1 + momentum))
        angles = angles / angles.abs().clamp_min(1e-16)
        previous = rebuilt
    return _with_prefix(istft(magnitude * angles, n_fft, hop, window, length), prefix)


def _with_prefix(audio: torch.Tensor, prefix: Optional[torch.Tensor]) -> torch.Tensor:
    if prefix is None or prefix.shape[-1] == 0:
        return audio
    return torch.cat([prefix, audio[:, prefix.shape[-1]:]], dim=-1)
