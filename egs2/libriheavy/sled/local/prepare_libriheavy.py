#!/usr/bin/env python3
"""LibriHeavy cut manifest (lhotse MonoCut JSON lines, optionally .gz) -> Kaldi data dir.

    prepare_libriheavy.py MANIFEST AUDIO_ROOT OUT_DIR [--check_audio true]

Fields read from each line: ``id``, ``start``, ``duration``, ``supervisions[0].text``
(kept cased and punctuated), ``supervisions[0].speaker``, ``recording.id`` (else the
source path without extension), ``recording.sources[0].source`` (relative to AUDIO_ROOT
unless absolute) and ``recording.sampling_rate``.

Writes OUT_DIR/{wav.scp, segments, text, utt2spk, spk2utt}: recordings keyed by
recording id, utterances by cut id, with '/' in ids turned into '-' (ids become file
names downstream). Files are sorted in byte order. The directory is built as
OUT_DIR.tmp and renamed when complete. A malformed line stops with its file and line
number; cuts whose audio file is missing are dropped (with --check_audio true) and counted.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import sys
from pathlib import Path

from espnet2.utils.types import str2bool


class ManifestError(ValueError):
    pass


def sanitize_id(raw: str) -> str:
    return re.sub(r"\s+", "_", raw.strip()).replace("/", "-")


def open_manifest(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_cut(cut: dict, where: str):
    """Return (utt_id, reco_id, source, start, end, text, speaker, sampling_rate)."""

    def need(obj, key, what):
        if not isinstance(obj, dict) or key not in obj or obj[key] is None:
            raise ManifestError(f"{where}: missing field {what}")
        return obj[key]

    if not isinstance(cut, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(cut).__name__}")
    cut_id = need(cut, "id", "'id'")
    try:
        start = float(need(cut, "start", "'start'"))
        duration = float(need(cut, "duration", "'duration'"))
    except (TypeError, ValueError):
        raise ManifestError(f"{where}: 'start' and 'duration' must be numbers (cut '{cut_id}')")
    if start < 0 or duration <= 0:
        raise ManifestError(f"{where}: cut '{cut_id}' has start={start}, duration={duration}; "
                            "need start >= 0 and duration > 0")
    sups = need(cut, "supervisions", "'supervisions'")
    if not isinstance(sups, list) or not sups:
        raise ManifestError(f"{where}: cut '{cut_id}' has no supervisions")
    text = need(sups[0], "text", "'supervisions[0].text'")
    speaker = need(sups[0], "speaker", "'supervisions[0].speaker'")
    text = " ".join(str(text).split())
    if not text:
        raise ManifestError(f"{where}: text is empty for cut '{cut_id}'")
    rec = need(cut, "recording", "'recording'")
    sources = need(rec, "sources", "'recording.sources'")
    if not isinstance(sources, list) or not sources:
        raise ManifestError(f"{where}: cut '{cut_id}' has no recording.sources")
    source = str(need(sources[0], "source", "'recording.sources[0].source'"))
    rate = need(rec, "sampling_rate", "'recording.sampling_rate'")
    if not isinstance(rate, int) or rate <= 0:
        raise ManifestError(f"{where}: recording.sampling_rate must be a positive integer, got {rate!r}")
    reco_id = rec.get("id") or os.path.splitext(source)[0]
    return (sanitize_id(str(cut_id)), sanitize_id(str(reco_id)), source, start,
            start + duration, text, sanitize_id(str(speaker)), rate)


def convert(manifest: Path, audio_root: Path, out_dir: Path, check_audio: bool):
    wav, segments, text, utt2spk = {}, {}, {}, {}
    missing_audio = 0
    exists_cache = {}
    with open_manifest(manifest) as f:
        for lineno, line in enumerate(f, 1):
            where = f"{manifest}:{lineno}"
            if not line.strip():
                continue
            try:
                cut = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
            utt, reco, source, start, end, txt, spk, _ = parse_cut(cut, where)
            path = source if os.path.isabs(source) else os.path.abspath(audio_root / source)
            if re.search(r"\s", path):
                raise ManifestError(f"{where}: audio path '{path}' contains whitespace, "
                                    "which a wav.scp line cannot hold")
            if check_audio:
                if path not in exists_cache:
                    exists_cache[path] = os.path.exists(path)
                if not exists_cache[path]:
                    missing_audio += 1
                    continue
            if reco in wav and wav[reco] != path:
                raise ManifestError(f"{where}: recording '{reco}' was given as '{wav[reco]}' "
                                    f"earlier and as '{path}' here")
            if utt in text:
                raise ManifestError(f"{where}: cut id '{utt}' appears twice")
            wav[reco] = path
            segments[utt] = f"{reco} {start:.3f} {end:.3f}"
            text[utt] = txt
            utt2spk[utt] = spk
    if not text:
        raise ManifestError(f"{manifest}: no usable cuts"
                            + (f" ({missing_audio} had missing audio under {audio_root})"
                               if missing_audio else ""))

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    def write(name, table):
        with open(tmp / name, "w", encoding="utf-8") as f:
            for k in sorted(table, key=lambda s: s.encode("utf-8")):
                f.write(f"{k} {table[k]}\n")

    write("wav.scp", wav)
    write("segments", segments)
    write("text", text)
    write("utt2spk", utt2spk)
    spk2utt = {}
    for u in sorted(utt2spk, key=lambda s: s.encode("utf-8")):
        spk2utt.setdefault(utt2spk[u], []).append(u)
    write("spk2utt", {s: " ".join(us) for s, us in spk2utt.items()})
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    print(f"prepare_libriheavy: {manifest} -> {out_dir}: {len(text)} utterances, "
          f"{len(wav)} recordings, {len(spk2utt)} speakers"
          + (f"; dropped {missing_audio} cuts whose audio is missing" if missing_audio else ""),
          file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("audio_root", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--check_audio", type=str2bool, default=True)
    args = parser.parse_args(argv)
    if not args.manifest.exists():
        sys.exit(f"prepare_libriheavy: manifest '{args.manifest}' does not exist")
    try:
        convert(args.manifest, args.audio_root, args.out_dir, args.check_audio)
    except ManifestError as e:
        sys.exit(f"prepare_libriheavy: error: {e}")


if __name__ == "__main__":
    main()
