"""A decoder's timing log (``sled_inference``'s ``timing.jsonl``): read it, summarise it for ``score``."""

import json
import math
from pathlib import Path
from typing import Dict, List


def read_timing(path: Path) -> List[dict]:
    """The timed rows of a decoder's timing log. Rows with an ``error`` (``sled_inference
    --allow_empty_output``: a text that produced no audio; its key is in missing_wavs and
    scored as missing) have no audio to time and are left out of the RTF."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})")
            if "error" in row:
                continue
            for key in ("utt_id", "audio_seconds", "compute_seconds"):
                if key not in row:
                    raise ValueError(f"{path}:{lineno}: missing key '{key}'")
            rows.append(row)
    return rows


def timing_summary(timing: List[dict], per_utt: Dict[str, dict]) -> Dict[str, dict]:
    """{rtf, first_audio_seconds}: {value, n} over the timed rows; each scored utterance's
    ``rtf`` is added to its ``per_utt`` row."""
    audio_s = sum(float(r["audio_seconds"]) for r in timing)
    compute_s = sum(float(r["compute_seconds"]) for r in timing)
    summary = {"rtf": {"value": compute_s / audio_s if audio_s > 0 else math.nan, "n": len(timing)}}
    firsts = [float(r["first_audio_seconds"]) for r in timing if r.get("first_audio_seconds") is not None]
    if firsts:
        summary["first_audio_seconds"] = {"value": sum(firsts) / len(firsts), "n": len(firsts)}
    for r in timing:
        if r["utt_id"] in per_utt and float(r["audio_seconds"]) > 0:
            per_utt[r["utt_id"]]["rtf"] = float(r["compute_seconds"]) / float(r["audio_seconds"])
    return summary
