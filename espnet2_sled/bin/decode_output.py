"""What the decoding CLI (``sled_inference``) reads and writes: the text table and its checks
before the first decode, the output dir (wav/, norm/feats.scp, speech_shape/, timing.jsonl),
and the warnings of one utterance logged beside its key."""

import contextlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from espnet2.fileio.npy_scp import NpyScpWriter

from espnet2_sled.decode_report import quote
from espnet2_sled.fileio import read_table as read_kaldi_table
from espnet2_sled.fileio import write_wav


class OutputWriter:
    """wav/, norm/feats.scp (npy), speech_shape/, timing.jsonl under the output dir."""

    def __init__(self, out: Path, fs: Optional[int]):
        self.out, self.fs = out, fs
        for sub in ("wav", "speech_shape"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        self.feats = NpyScpWriter(out / "norm", out / "norm/feats.scp")
        self.shape = open(out / "speech_shape/speech_shape", "w")
        self.timing = open(out / "timing.jsonl", "w")
        self.written: List[str] = []
        self.refused: Dict[str, str] = {}  # key -> why no output was written (EmptyOutputError)

    def refuse(self, key: str, error: Exception) -> None:
        """No output files for ``key``: logged, and a timing.jsonl line with the error."""
        logging.error(f"{key}: {error}; no output written for it")
        self.refused[key] = str(error)
        record = dict(utt_id=key, error="empty_output", message=str(error))
        if getattr(error, "report", None) is not None:
            record["report"] = error.report.as_dict()
        self.timing.write(json.dumps(record) + "\n")
        self.timing.flush()

    def write(self, key: str, result: Dict[str, torch.Tensor], timing: Dict[str, Any]) -> None:
        feat = result["feat_gen"].float().cpu().numpy()
        self.feats[key] = feat
        self.shape.write(f"{key} {','.join(map(str, feat.shape))}\n")
        seconds = 0.0
        gain = None
        if result.get("wav") is not None:
            wav = result["wav"].float().cpu().numpy()
            gain = write_wav(self.out / "wav" / f"{key}.wav", wav, self.fs)  # peaks limited to 0.99
            seconds = len(wav) / self.fs
        record = dict(utt_id=key, frames=int(feat.shape[0]), audio_seconds=seconds, **timing)
        if gain is not None:
            record["peak_gain"] = float(f"{gain:.6g}")
        if result.get("piece_frames") is not None:
            record["pieces"] = len(result["piece_frames"])
        if result.get("report") is not None:
            record["report"] = result["report"].as_dict()  # frames per text token, short pieces (decode_report.py)
        if seconds > 0:
            record["rtf"] = record["compute_seconds"] / seconds
        self.timing.write(json.dumps(record) + "\n")
        self.timing.flush()
        self.written.append(key)
        logging.info(f"{key}: {feat.shape[0]} frames, {timing['compute_seconds']:.2f} s")

    def close(self) -> None:
        self.feats.close()
        self.shape.close()
        self.timing.close()
        with open(self.out / "wav/wav.scp", "w") as f:
            for w in sorted((self.out / "wav").glob("*.wav")):
                f.write(f"{w.stem} {w.resolve()}\n")


def read_table(path: str, what: str) -> Dict[str, str]:
    table = read_kaldi_table(path)
    if not table:
        raise ValueError(f"{what} '{path}' is empty")
    return table


def read_texts(path: str) -> Dict[str, str]:
    """The text file -> {key: text}; a line with a key and no text is an error naming both."""
    texts = read_table(path, "text file")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split(maxsplit=1)
            if len(parts) == 1 or (len(parts) == 2 and not parts[1].strip()):
                raise ValueError(f"text is empty for utterance '{parts[0]}' ({path}:{lineno})")
    return texts


def check_texts(t2s, texts: Dict[str, str], keys: Sequence[str], path: str) -> None:
    """Every text of the run, before the first decode: one the model cannot read (no token it
    knows, or a word longer than its positions) stops the run naming its key, nothing written."""
    empty = [key for key in keys if key in texts and len(t2s.tokenize(texts[key], warn=False)) == 0]
    if empty:
        shown = ", ".join(f"'{key}' ({quote(texts[key])})" for key in empty[:5]) + (" ..." if len(empty) > 5 else "")
        raise ValueError(f"text is empty after tokenization for {len(empty)} utterance(s) of {path}: {shown}; none "
                         "of their characters are in the model's token list: write them in words the model knows "
                         "or remove those lines (nothing was decoded)")
    for key in keys:
        if key in texts:
            try:
                t2s.split_text(texts[key])
            except ValueError as e:
                raise ValueError(f"utterance '{key}' of {path}: {e} (nothing was decoded)") from None


@contextlib.contextmanager
def logged_warnings(key: str):
    """Warnings raised while decoding an utterance are logged beside its key (also when it fails)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                logging.warning(f"{key}: {w.message}")

