#!/usr/bin/env python3
"""Score synthesised speech offline: WER, speaker similarity, DNSMOS, real-time factor.

    python -m espnet2_sled.bin.score --wav_dir exp/x/decode/test/wav --text data/test/text \
        --ref_wav_scp data/test/wav.scp --ref_segments data/test/segments \
        --timing exp/x/decode/test/timing.jsonl --output_dir exp/x/decode/test/scores

Every tool here carries its own weights, so nothing is downloaded:

- **WER**: pocketsphinx's bundled US English acoustic model, language model and
  dictionary. Never an LM built from the test text: that drives WER to ~0 and measures
  nothing. Reference and hypothesis are lower-cased and stripped of punctuation before
  jiwer; the corpus WER is total errors over total reference words. pocketsphinx is a
  weak recogniser (flite voices ~0.1, real read speech ~0.3), so compare systems, or a
  system with the ground-truth audio scored the same way, not absolute numbers.
- **Speaker similarity**: cosine of resemblyzer utterance embeddings, generated vs
  the reference audio of the same utterance id (``spk_sim``) and vs the voice prompt
  (``spk_sim_prompt``) when ``--prompt_wav_scp`` is given.
- **DNSMOS** (speechmos): overall, signal, background and P.808 MOS.
- **RTF / time to first audio** from ``--timing``: JSON lines with ``utt_id``,
  ``audio_seconds``, ``compute_seconds`` and optionally ``first_audio_seconds``.
  RTF = total compute / total audio.

All audio is read as mono and resampled to 16 kHz. Writes ``scores.md`` (metric, value,
n), ``scores.json`` and per-utterance ``utt_scores.tsv`` in ``--output_dir``.
"""

import argparse
import json
import logging
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from espnet2_sled import fileio
from espnet2_sled.bin.timing_log import read_timing, timing_summary
from espnet2_sled.fileio import AudioEntry, read_table  # noqa: F401 (used below and by callers)
from espnet2_sled.latent import audio as audio_io

SCORE_RATE = 16000  # every scorer here works at 16 kHz
ALL_METRICS = ("wer", "spk_sim", "dnsmos", "rtf")


# --------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------
def read_audio_table(wav_scp: Optional[Path] = None, wav_dir: Optional[Path] = None,
                     segments: Optional[Path] = None) -> Dict[str, AudioEntry]:
    """{utt_id: (path, start, end)} from a wav.scp (+ segments) or a folder of ``<utt>.wav``."""
    if wav_dir is not None:
        files = sorted(Path(wav_dir).glob("*.wav"))
        if not files:
            raise FileNotFoundError(f"no .wav files in '{wav_dir}'")
        return {p.stem: (str(p), 0.0, None) for p in files}
    if wav_scp is None:
        raise ValueError("give a wav.scp or a wav directory")
    return fileio.read_audio_table(wav_scp, segments)


def load_audio(entry: AudioEntry, rate: int = SCORE_RATE) -> np.ndarray:
    """Read (a slice of) a file as mono float32 at ``rate`` Hz (empty audio: ``[0]``)."""
    path, start, end = entry
    return audio_io.load_audio(path, rate, start, end, allow_empty=True)


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation (keeping apostrophes inside words), squeeze spaces."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(^|\s)'+|'+(?=\s|$)", " ", text)
    return " ".join(text.split())


# --------------------------------------------------------------------------------------
# scorers
# --------------------------------------------------------------------------------------
MIN_SCORABLE_SAMPLES = SCORE_RATE // 10  # under 0.1 s counts as no audio


class PocketsphinxASR:
    """pocketsphinx with its bundled English acoustic model, LM and dictionary."""

    def __init__(self):
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=SCORE_RATE, logfn=os.devnull)

    def __call__(self, audio: np.ndarray) -> str:
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def word_errors(reference: str, hypothesis: str) -> Tuple[int, int]:
    """(edit distance in words, reference words) after normalisation."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        raise ValueError("reference text is empty after normalisation")
    if not hyp:
        return len(ref.split()), len(ref.split())
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


class SpeakerEncoder:
    """resemblyzer utterance embeddings (unit norm, so cosine = dot product)."""

    def __init__(self):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        import torch
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(audio, source_sr=SCORE_RATE)
        if len(wav) < SCORE_RATE // 4:  # the VAD trimmed nearly everything: use the raw audio
            wav = audio
        # The encoder is tiny: extra threads only fight over busy cores (10x slower here).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.encoder.embed_utterance(wav)
        finally:
            torch.set_num_threads(threads)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def dnsmos(audio: np.ndarray) -> Dict[str, float]:
    from speechmos import dnsmos as speechmos_dnsmos

    # DNSMOS rates 9.01 s windows. speechmos doubles a shorter clip until it is long enough
    # and then slides a 1 s hop over the copies: up to 7 identical-content windows for a
    # short clip (4 s of compute). Repeating the clip to exactly one window gives one.
    window = int(speechmos_dnsmos.INPUT_LENGTH * SCORE_RATE) + 1
    if len(audio) == 0:
        raise ValueError("cannot rate empty audio")
    if len(audio) < window:
        audio = np.resize(audio, window)
    result = speechmos_dnsmos.run(np.clip(audio, -1.0, 1.0), sr=SCORE_RATE)
    return {k: float(result[k]) for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
def score(
    hyp_audio: Dict[str, AudioEntry],
    texts: Optional[Dict[str, str]] = None,
    ref_audio: Optional[Dict[str, AudioEntry]] = None,
    prompt_audio: Optional[Dict[str, AudioEntry]] = None,
    timing: Optional[List[dict]] = None,
    metrics=ALL_METRICS,
    progress: bool = True,
    missing: Sequence[str] = (),
) -> Tuple[Dict[str, dict], Dict[str, dict]]:
    """Return (summary {metric: {value, n}}, per-utterance {utt: {column: value}}).

    ``missing``: utterances that should have audio but have none (the decoder stopped at
    once). They count as all words deleted in the WER and are reported as
    ``missing_audio``; the other metrics cannot rate them.
    """
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; known: {ALL_METRICS}")
    asr = PocketsphinxASR() if "wer" in metrics and texts is not None else None
    spk = SpeakerEncoder() if "spk_sim" in metrics and (ref_audio or prompt_audio) else None
    missing_text = [u for u in hyp_audio if texts is not None and u not in texts]
    if asr is not None and missing_text:
        raise KeyError(f"no reference text for {len(missing_text)} utterance(s), e.g. '{missing_text[0]}'")

    per_utt: Dict[str, dict] = {}
    errors = words = 0
    sims, prompt_sims = [], []
    mos: Dict[str, List[float]] = {}
    too_short = set()
    for utt in tqdm(sorted(hyp_audio), desc="scoring", disable=not progress, file=sys.stderr):
        audio = load_audio(hyp_audio[utt])
        if audio.shape[0] < MIN_SCORABLE_SAMPLES:  # the decoder stopped at once: nothing to rate
            too_short.add(utt)
            continue
        row = per_utt.setdefault(utt, {})
        if asr is not None:
            hyp = asr(audio)
            e, n = word_errors(texts[utt], hyp)
            errors, words = errors + e, words + n
            row.update(wer=e / n, hyp=normalize_text(hyp))
        if spk is not None:
            emb = spk(audio)
            if ref_audio and utt in ref_audio:
                row["spk_sim"] = cosine(emb, spk(load_audio(ref_audio[utt])))
                sims.append(row["spk_sim"])
            if prompt_audio and utt in prompt_audio:
                row["spk_sim_prompt"] = cosine(emb, spk(load_audio(prompt_audio[utt])))
                prompt_sims.append(row["spk_sim_prompt"])
        if "dnsmos" in metrics:
            for k, v in dnsmos(audio).items():
                row[k] = v
                mos.setdefault(k, []).append(v)

    missing = sorted((set(missing) - set(hyp_audio)) | too_short)
    if asr is not None:
        for utt in missing:
            if utt not in texts:
                raise KeyError(f"no reference text for utterance '{utt}' (listed as missing audio)")
            n = len(normalize_text(texts[utt]).split())
            errors, words = errors + n, words + n
            per_utt.setdefault(utt, {}).update(wer=1.0, hyp="")
    summary: Dict[str, dict] = {}
    if missing:
        summary["missing_audio"] = {"value": float(len(missing)), "n": len(set(hyp_audio) | set(missing))}
    if asr is not None:
        summary["wer"] = {"value": errors / max(words, 1), "n": len(set(hyp_audio) | set(missing)), "words": words}
    if sims:
        summary["spk_sim"] = {"value": float(np.mean(sims)), "n": len(sims)}
    if prompt_sims:
        summary["spk_sim_prompt"] = {"value": float(np.mean(prompt_sims)), "n": len(prompt_sims)}
    for k, values in mos.items():
        summary[f"dnsmos_{k.replace('_mos', '')}"] = {"value": float(np.mean(values)), "n": len(values)}
    if "rtf" in metrics and timing:
        summary.update(timing_summary(timing, per_utt))
    return summary, per_utt


DESCRIPTIONS = {
    "missing_audio": "utterances with no audio (counted as deleted in WER)",
    "wer": "WER, pocketsphinx bundled LM (lower is better)",
    "spk_sim": "speaker similarity to reference, resemblyzer cosine",
    "spk_sim_prompt": "speaker similarity to prompt, resemblyzer cosine",
    "dnsmos_ovrl": "DNSMOS overall",
    "dnsmos_sig": "DNSMOS signal",
    "dnsmos_bak": "DNSMOS background",
    "dnsmos_p808": "DNSMOS P.808",
    "rtf": "real-time factor (compute / audio seconds)",
    "first_audio_seconds": "time to first audio, seconds",
}


def write_reports(output_dir: Path, summary: Dict[str, dict], per_utt: Dict[str, dict], title: str = ""):
    output_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# {title}", ""] if title else []
    lines += ["| metric | value | n |", "|---|---|---|"]
    for name, entry in summary.items():
        lines.append(f"| {DESCRIPTIONS.get(name, name)} | {entry['value']:.4f} | {entry['n']} |")
    files = {
        "scores.md": "\n".join(lines) + "\n",
        "scores.json": json.dumps(summary, indent=2) + "\n",
    }
    columns = sorted({c for row in per_utt.values() for c in row})
    tsv = ["\t".join(["utt_id", *columns])]
    for utt in sorted(per_utt):
        row = per_utt[utt]
        tsv.append("\t".join([utt, *[f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                                     for c in columns]]))
    files["utt_scores.tsv"] = "\n".join(tsv) + "\n"
    for name, content in files.items():
        tmp = output_dir / (name + ".tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, output_dir / name)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--wav_dir", type=Path, help="folder of <utt_id>.wav (generated speech)")
    src.add_argument("--wav_scp", type=Path, help="wav.scp of the speech to score")
    parser.add_argument("--segments", type=Path, help="segments for --wav_scp (to score ground-truth slices)")
    parser.add_argument("--text", type=Path, help="Kaldi text: reference transcripts (for WER)")
    parser.add_argument("--ref_wav_scp", type=Path, help="reference audio of the same utterance ids")
    parser.add_argument("--ref_segments", type=Path, help="segments for --ref_wav_scp")
    parser.add_argument("--prompt_wav_scp", type=Path, help="utt_id -> voice prompt audio")
    parser.add_argument("--keys", type=Path, help="score only these utterances (first column)")
    parser.add_argument("--expected_keys", type=Path,
                        help="utterances that should have audio; those without count as failures")
    parser.add_argument("--timing", type=Path, help="decoder timing log (JSON lines); skipped if absent")
    parser.add_argument("--metrics", default=",".join(ALL_METRICS), help=f"comma list of {ALL_METRICS}")
    parser.add_argument("--title", default="", help="heading for scores.md")
    parser.add_argument("--output_dir", type=Path, required=True)
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (score) %(levelname)s: %(message)s")
    metrics = [m for m in args.metrics.split(",") if m]
    hyp = read_audio_table(args.wav_scp, args.wav_dir, args.segments)
    if args.keys is not None:
        wanted = read_table(args.keys)
        absent = [k for k in wanted if k not in hyp]
        if absent:
            raise KeyError(f"{len(absent)} key(s) of {args.keys} have no audio, e.g. '{absent[0]}'")
        hyp = {k: v for k, v in hyp.items() if k in wanted}
    texts = read_table(args.text) if args.text else None
    ref = read_audio_table(args.ref_wav_scp, None, args.ref_segments) if args.ref_wav_scp else None
    prompt = read_audio_table(args.prompt_wav_scp) if args.prompt_wav_scp else None
    timing = None
    if args.timing is not None:
        if args.timing.exists():
            timing = read_timing(args.timing)
        else:
            logging.info(f"no timing log at {args.timing}; RTF not reported")
    missing = []
    if args.expected_keys is not None:
        missing = [k for k in read_table(args.expected_keys) if k not in hyp]
        if missing:
            logging.warning(f"{len(missing)} utterance(s) have no audio, e.g. '{missing[0]}'")
    summary, per_utt = score(hyp, texts, ref, prompt, timing, metrics, missing=missing)
    write_reports(args.output_dir, summary, per_utt, args.title)
    print((args.output_dir / "scores.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
