"""Weight-free log-mel latent space at 24 kHz, decoded with Griffin-Lim.

It exists so that the recipe produces audible speech without any pretrained weights.
Mel frames line up with Encodec's: mel frame ``t`` is centred on sample ``320 t`` and there
are ``ceil(S / 320)`` of them (75 Hz). ``stack = k`` concatenates k consecutive mel frames
into one latent frame (width ``k * n_mels``, ``75 / k`` Hz, ``T = ceil(S / (320 k))``, the
audio zero-padded to whole frames): k times fewer autoregressive steps for the same audio,
which is what lets the CPU mini recipe learn an alignment in minutes. Values are
``(ln(max(mel, 1e-5)) - LOG_MEL_MEAN) / LOG_MEL_STD`` with fixed constants (no data
statistics), about [-2, 2] for speech at normal level.

Decoding: mel -> linear magnitude by the filterbank's pseudo-inverse (clamped at 0), then
``griffin_lim_iters`` iterations of fast Griffin-Lim. Cost per second of audio with the
defaults (n_fft = win = 1280, 32 iterations) is ~32 STFT/ISTFT pairs over 76 frames; see
bench/bench_latent.py for numbers. Streaming is approximate (see ``MelStreamingDecoder``).
"""

import math
from typing import Optional

import torch

from .audio import as_batch
from .base import LatentSpace, StreamingLatentDecoder
from .griffin_lim import griffin_lim, stft

LOG_MEL_FLOOR = 1e-5
LOG_MEL_MEAN = -4.0  # fixed: ln-magnitude-mel of speech at ~-25 dBFS sits in about [-11.5, 2]
LOG_MEL_STD = 3.0


class MelLatent(LatentSpace):
    """Log-mel frames ``[B, T, latent_dim]``; ``decode`` returns ``[B, T * hop_length]``.

    Args:
        n_mels: number of mel bands of one 75-Hz mel frame.
        stack: mel frames per latent frame (``latent_dim = stack * n_mels``,
            ``hop_length = 320 * stack``).
        n_fft / win_length: STFT size; 1280 = 4 hops gives Griffin-Lim 75 % overlap.
        f_min / f_max: mel band edges in Hz (``f_max`` None -> 12000, Nyquist).
        griffin_lim_iters: phase-reconstruction iterations of ``decode`` (quality vs cost).
        stream_context_frames: past 75-Hz mel frames re-used by the streaming decoder.
        stream_griffin_lim_iters: iterations per push when streaming (fewer: the past is
            already fixed, and every push pays for its context frames again).
    """

    sample_rate = 24000
    mel_hop = 320  # samples per mel frame (75 Hz); a latent frame holds ``stack`` of them

    def __init__(self, n_mels: int = 80, stack: int = 1, n_fft: int = 1280, win_length: int = 1280,
                 f_min: float = 0.0, f_max: Optional[float] = None, griffin_lim_iters: int = 32,
                 stream_context_frames: int = 8, stream_griffin_lim_iters: int = 16):
        super().__init__()
        import torchaudio.functional as AF

        if n_mels < 1 or stack < 1:
            raise ValueError(f"n_mels={n_mels}, stack={stack}; expected positive integers")
        if win_length > n_fft:
            raise ValueError(f"win_length={win_length} > n_fft={n_fft}; expected win_length <= n_fft")
        self.n_mels, self.stack = n_mels, stack
        self.latent_dim = n_mels * stack
        self.hop_length = self.mel_hop * stack
        self.n_fft = n_fft
        self.griffin_lim_iters = griffin_lim_iters
        self.stream_context_frames = stream_context_frames
        self.stream_griffin_lim_iters = stream_griffin_lim_iters
        window = torch.hann_window(win_length)
        window = torch.nn.functional.pad(window, ((n_fft - win_length) // 2, (n_fft - win_length + 1) // 2))
        fbank = AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max or self.sample_rate / 2, n_mels,
                                   self.sample_rate, norm="slaney", mel_scale="slaney")  # [F, D]
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("fbank", fbank, persistent=False)
        self.register_buffer("fbank_pinv", torch.linalg.pinv(fbank), persistent=False)  # [D, F]

    def encode(self, audio: torch.Tensor, sample_rate: Optional[int] = None) -> torch.Tensor:
        """audio ``[S]`` / ``[B, S]`` / ``[B, C, S]`` -> ``[B, ceil(S / hop_length), latent_dim]`` fp32."""
        audio = as_batch(audio, sample_rate or self.sample_rate, self.sample_rate)
        frames = math.ceil(audio.shape[-1] / self.hop_length)
        mel_frames = frames * self.stack
        with torch.autocast(audio.device.type, enabled=False), torch.no_grad():
            audio = torch.nn.functional.pad(audio, (0, frames * self.hop_length - audio.shape[-1]))
            magnitude = stft(audio, self.n_fft, self.mel_hop, self.window).abs()[..., :mel_frames]
            mel = (magnitude.transpose(1, 2) @ self.fbank).clamp_min(LOG_MEL_FLOOR)  # [B, T k, n_mels]
            return ((mel.log() - LOG_MEL_MEAN) / LOG_MEL_STD).reshape(mel.shape[0], frames, self.latent_dim)

    def unstack(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, T, stack * n_mels]`` -> 75-Hz mel frames ``[B, T * stack, n_mels]``."""
        return frames.reshape(frames.shape[0], frames.shape[1] * self.stack, self.n_mels)

    def magnitude(self, frames: torch.Tensor) -> torch.Tensor:
        """75-Hz log-mel ``[B, T, n_mels]`` -> linear magnitude ``[B, F, T + 1]`` (last frame
        repeated, so an inverse STFT yields exactly ``T * 320`` samples)."""
        mel = (frames.float() * LOG_MEL_STD + LOG_MEL_MEAN).exp()
        # floor at the encoder's floor, not 0: exact zeros drive Griffin-Lim's phases into
        # denormal floats, which made decoding ~20x slower on x86
        magnitude = (mel @ self.fbank_pinv).clamp_min(LOG_MEL_FLOOR).transpose(1, 2)
        return torch.cat([magnitude, magnitude[..., -1:]], dim=-1)

    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames ``[B, T, latent_dim]`` -> audio ``[B, T * hop_length]`` fp32 (Griffin-Lim)."""
        _check_frames(frames, self.latent_dim)
        if frames.shape[1] == 0:
            return frames.new_zeros(frames.shape[0], 0)
        with torch.autocast(frames.device.type, enabled=False), torch.no_grad():
            return griffin_lim(self.magnitude(self.unstack(frames)), self.n_fft, self.mel_hop,
                               self.window, self.griffin_lim_iters)

    def stream_decoder(self, batch_size: int = 1) -> "MelStreamingDecoder":
        return MelStreamingDecoder(self, batch_size)


class MelStreamingDecoder(StreamingLatentDecoder):
    """Chunked Griffin-Lim: APPROXIMATE, not equal to one-shot ``decode``.

    Each push reconstructs ``stream_context_frames`` past frames plus the new ones, with the
    already-emitted audio of the past frames held fixed, and emits only the new frames'
    samples. Phases continue smoothly across chunks, but the last frame of each chunk is
    built without seeing the next chunk, so quality drops with small chunks (flite speech,
    mel L1 after re-encoding: 0.04 one-shot, 0.08 with t=20, ~0.27 with t=3; pocketsphinx
    gets every word at t=20 and one-shot, and loses the last few words at t<=3). Cost per
    frame ~ (context + t + 1) / t * stream_griffin_lim_iters / griffin_lim_iters times the
    one-shot cost.
    """

    def __init__(self, latent: MelLatent, batch_size: int = 1):
        self.latent = latent
        self.batch_size = batch_size
        self.past_frames: Optional[torch.Tensor] = None  # 75-Hz mel [B, <=context, n_mels]
        self.past_audio: Optional[torch.Tensor] = None  # [B, <=context * 320]

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """frames ``[B, t, latent_dim]`` -> audio ``[B, t * hop_length]``."""
        _check_frames(frames, self.latent.latent_dim)
        if frames.shape[0] != self.batch_size:
            raise ValueError(f"pushed frames have batch {frames.shape[0]}; this stream was opened "
                             f"with batch_size={self.batch_size}")
        if frames.shape[1] == 0:
            return frames.new_zeros(self.batch_size, 0)
        hop, mel = self.latent.mel_hop, self.latent.unstack(frames.float())
        new = mel.shape[1]
        if self.past_frames is not None:
            mel = torch.cat([self.past_frames, mel], dim=1)
        with torch.autocast(mel.device.type, enabled=False), torch.no_grad():
            audio = griffin_lim(self.latent.magnitude(mel), self.latent.n_fft, hop,
                                self.latent.window, self.latent.stream_griffin_lim_iters,
                                prefix=self.past_audio)
        keep = self.latent.stream_context_frames
        self.past_frames = mel[:, max(0, mel.shape[1] - keep):] if keep else None
        self.past_audio = audio[:, max(0, audio.shape[1] - keep * hop):] if keep else None
        return audio[:, audio.shape[1] - new * hop:]


def _check_frames(frames: torch.Tensor, dim: int) -> None:
    if frames.dim() != 3 or frames.shape[-1] != dim:
        raise ValueError(f"frames have shape {tuple(frames.shape)}; expected [B, T, {dim}]")
