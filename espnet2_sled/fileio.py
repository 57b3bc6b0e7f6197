"""Small file helpers shared by the CLIs and the recipe's ``local/`` scripts: Kaldi-style
tables, peak-limited 16-bit WAVs."""

import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import soundfile as sf

PathLike = Union[str, Path]
AudioEntry = Tuple[str, float, Optional[float]]  # (audio path, start seconds, end seconds or None)


def read_table(path: PathLike, require_value: bool = False) -> Dict[str, str]:
    """Kaldi-style ``key value...`` file -> {key: value}; a repeated key (or, with
    ``require_value``, a key without a value) is an error naming the line."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            if parts[0] in table:
                raise ValueError(f"{path}:{lineno}: key '{parts[0]}' appears twice")
            if require_value and len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'key value', got {line.rstrip()!r}")
            table[parts[0]] = parts[1] if len(parts) > 1 else ""
    return table


def read_audio_table(wav_scp: PathLike, segments: Optional[PathLike] = None) -> Dict[str, AudioEntry]:
    """``{utt: (audio path, start s, end s or None)}`` from a ``wav.scp`` (+ ``segments``:
    ``utt recording start end``). Only plain file paths are read: command pipes are refused."""
    recordings = read_table(wav_scp, require_value=True)
    for key, value in recordings.items():
        if value.rstrip().endswith("|"):
            raise ValueError(f"{wav_scp}: entry '{key}' is a command pipe ({value!r}); "
                             "only plain audio file paths are supported")
    if segments is None:
        return {key: (path, 0.0, None) for key, path in recordings.items()}
    table = {}
    for utt, value in read_table(segments, require_value=True).items():
        fields = value.split()
        if len(fields) != 3:
            raise ValueError(f"{segments}: line for '{utt}' should be 'utt recording start end'")
        if fields[0] not in recordings:
            raise ValueError(f"{segments}: utterance '{utt}' uses recording '{fields[0]}', which is not in {wav_scp}")
        table[utt] = (recordings[fields[0]], float(fields[1]), float(fields[2]))
    return table


# Decoded audio is written as 16-bit PCM, which clips anything beyond full scale: an
# utterance whose peak exceeds this is scaled down as a whole (one gain, no clipping).
PEAK_CEILING = 0.99


def limit_peak(wav: np.ndarray, ceiling: float = PEAK_CEILING) -> Tuple[np.ndarray, float]:
    """wav ``[S]`` -> (wav scaled so that ``max |wav| <= ceiling``, the gain used, 1.0 if none)."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if not np.isfinite(peak):
        raise ValueError("audio contains NaN/Inf")
    if peak <= ceiling:
        return wav, 1.0
    gain = ceiling / peak
    return (wav * gain).astype(wav.dtype), gain


def write_wav(path: Union[str, Path], wav, sample_rate: int) -> float:
    """Peak-limited 16-bit WAV, written under a temp name and renamed; returns the gain applied."""
    path = Path(path)
    try:
        wav, gain = limit_peak(np.asarray(wav, dtype=np.float32))
    except ValueError as e:
        raise ValueError(f"{e}; not writing '{path}'") from None
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), wav, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return gain
