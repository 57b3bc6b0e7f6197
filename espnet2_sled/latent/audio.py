"""Reading audio (latent extraction, prompts, scoring): soundfile -> mono -> target-rate float32.

Resampling uses librosa's default ``soxr_hq``, as upstream SLED did for LibriHeavy.
Errors name the file (and the utterance when the caller passes one).
"""

from typing import Optional

import numpy as np
import torch


class AudioError(ValueError):
    """Missing, unreadable, empty or too-short audio; the message names the file."""


# A segment may end this far past the end of its file (timestamps rounded to ms); more is
# an error, not a silent truncation. 10 ms is less than one latent frame (13.3 ms).
MAX_OVERSHOOT_SECONDS = 0.01


def to_mono(audio: np.ndarray) -> np.ndarray:
    """``[S]`` or ``[S, C]`` (soundfile layout) -> ``[S]`` by averaging channels."""
    return audio if audio.ndim == 1 else audio.mean(axis=1)


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """``[S]`` at ``orig_rate`` -> ``[round(S * target / orig)]`` at ``target_rate`` (soxr_hq).

    The length is computed in integers: librosa's float ratio makes 1 s at 44.1 kHz come
    out as 24001 samples (one frame too many); the spare sample is dropped."""
    if orig_rate == target_rate:
        return audio
    import librosa

    length = (len(audio) * target_rate + orig_rate // 2) // orig_rate
    out = librosa.resample(audio, orig_sr=orig_rate, target_sr=target_rate, res_type="soxr_hq")
    return out[:length] if len(out) >= length else np.pad(out, (0, length - len(out)))


def load_audio(path: str, target_rate: int = 24000, start: Optional[float] = None,
               end: Optional[float] = None, name: Optional[str] = None, allow_empty: bool = False) -> np.ndarray:
    """Read ``path`` (optionally the segment ``[start, end)`` seconds) as mono float32 ``[S]``
    at ``target_rate``. Raises ``AudioError`` naming ``name``/``path`` for missing, corrupt
    or empty audio (an empty file is returned as ``[0]`` when ``allow_empty``), and for a
    segment that ends past the end of the file."""
    import soundfile as sf

    who = f"utterance '{name}' (file '{path}')" if name else f"audio file '{path}'"
    try:
        info = sf.info(path)
        rate = info.samplerate
        first = int(round(start * rate)) if start is not None else 0
        last = int(round(end * rate)) if end is not None else -1
        if last != -1 and last <= first:
            raise AudioError(f"{who}: segment [{start}, {end}) s is empty")
        if end is not None and end - info.frames / rate > MAX_OVERSHOOT_SECONDS:
            raise AudioError(f"{who}: segment [{start}, {end}) s ends past the end of the file "
                             f"({info.frames / rate:.3f} s); fix the segments file (or the recording)")
        audio, rate = sf.read(path, start=first, stop=None if last == -1 else last,
                              dtype="float32", always_2d=False)
    except AudioError:
        raise
    except FileNotFoundError as e:
        raise AudioError(f"{who} does not exist") from e
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError on corrupt data
        if not _exists(path):
            raise AudioError(f"{who} does not exist") from e
        raise AudioError(f"{who} could not be read as audio ({type(e).__name__}: {e})") from e
    audio = to_mono(np.asarray(audio, dtype=np.float32))
    if audio.size == 0:
        if allow_empty:
            return audio
        raise AudioError(f"{who} is empty (0 samples{' in the segment' if end is not None else ''})")
    if not np.isfinite(audio).all():
        raise AudioError(f"{who} contains NaN or inf samples")
    return resample(audio, rate, target_rate).astype(np.float32, copy=False)


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)


def as_batch(audio: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """Tensor ``[S]``, ``[B, S]`` or ``[B, C, S]`` at ``sample_rate`` -> ``[B, S']`` mono fp32
    at ``target_rate`` (channels averaged, torchaudio sinc resampling on the tensor's device)."""
    if audio.dim() == 1:
        audio = audio[None]
    elif audio.dim() == 3:
        audio = audio.mean(dim=1)
    elif audio.dim() != 2:
        raise ValueError(f"audio has shape {tuple(audio.shape)}; expected [S], [B, S] or [B, C, S]")
    audio = audio.float()
    if sample_rate != target_rate:
        import torchaudio.functional as AF

        audio = AF.resample(audio, sample_rate, target_rate)
    return audio
