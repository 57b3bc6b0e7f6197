"""Small file helpers shared by the CLIs: Kaldi-style tables, peak-limited 16-bit WAVs."""

import os
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import soundfile as sf


def read_table(path: Union[str, Path]) -> Dict[str, str]:
    """Kaldi-style ``key value...`` file -> {key: value}; a repeated key is an error naming the line."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            if parts[0] in table:
                raise ValueError(f"{path}:{lineno}: key '{parts[0]}' appears twice")
            table[parts[0]] = parts[1] if len(parts) > 1 else ""
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
