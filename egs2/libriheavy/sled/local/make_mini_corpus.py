#!/usr/bin/env python3
"""Synthesise a small LibriHeavy-format corpus (manifests + 24 kHz audio), offline.

    make_mini_corpus.py OUT_DIR [--sentences local/mini_sentences.txt] [--seed 0] [--generated_train N]
        [--voices flite_slt] [--prefix mini]

Speakers are four flite voices and two espeak-ng voices; sentences come from
local/mini_sentences.txt (ours). The corpus is split BY SENTENCE (no sentence is in two
splits): test and dev sentences are read once each, training sentences by one or two
speakers. ``--generated_train N`` adds N training-only sentences from
local/generate_sentences.py's grammar (one reader each; off by default). ``--voices`` keeps
only the named speakers (one voice: every sentence read once, by it). Each speaker's
utterances are grouped into recordings of one to six utterances separated by short
silences, so cuts address a slice of a longer file (start/duration), as in LibriHeavy.
Everything is resampled to 24 kHz with sox and written as FLAC.

Output (built in OUT_DIR.tmp, renamed when complete):
    OUT_DIR/audio/<split>/<speaker>/<recording>.flac
    OUT_DIR/manifests/libriheavy_cuts_<prefix>_{train,dev,test}.jsonl(.gz for train)
    OUT_DIR/manifests/libriheavy_cuts_librivox_test.jsonl  (if pocketsphinx test data exists)
The same seed gives the same corpus.
"""

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 24000
# speaker id -> command that writes a wav of TEXT to OUT
VOICES = {
    "flite_kal16": ["flite", "-voice", "kal16", "-t", "{text}", "-o", "{out}"],
    "flite_awb": ["flite", "-voice", "awb", "-t", "{text}", "-o", "{out}"],
    "flite_rms": ["flite", "-voice", "rms", "-t", "{text}", "-o", "{out}"],
    "flite_slt": ["flite", "-voice", "slt", "-t", "{text}", "-o", "{out}"],
    "espeak_en_us": ["espeak-ng", "-v", "en-us", "-s", "150", "-w", "{out}", "{text}"],
    "espeak_en_gb_f3": ["espeak-ng", "-v", "en-gb+f3", "-s", "150", "-w", "{out}", "{text}"],
}
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")


def split_sentences(sentences, num_dev, num_test, rng):
    order = list(range(len(sentences)))
    rng.shuffle(order)
    test = sorted(order[:num_test])
    dev = sorted(order[num_test:num_test + num_dev])
    train = sorted(order[num_test + num_dev:])
    return {"train": train, "dev": dev, "test": test}


def assign_speakers(split, sentence_ids, rng, speakers=tuple(VOICES)):
    """[(sentence_id, speaker)]: one reader each for dev/test, one or two for train (one
    when there is a single speaker)."""
    speakers = list(speakers)
    pairs = []
    for i, sid in enumerate(sentence_ids):
        first = speakers[i % len(speakers)]
        pairs.append((sid, first))
        if split == "train" and len(speakers) > 1 and rng.random() < 0.6:
            second = rng.choice([s for s in speakers if s != first])
            pairs.append((sid, second))
    return pairs


def synthesise(speaker, text, workdir: Path, name: str) -> np.ndarray:
    """Run the voice, resample to 24 kHz mono with sox, return float32 samples."""
    raw = workdir / f"{name}.raw.wav"
    out = workdir / f"{name}.24k.wav"
    cmd = [a.format(text=text, out=raw) for a in VOICES[speaker]]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out)],
                   check=True, stderr=subprocess.PIPE)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == SAMPLE_RATE, (out, rate)
    raw.unlink()
    out.unlink()
    return audio


def make_cut(cut_id, reco_id, source, start, duration, num_samples, text, speaker):
    return {
        "id": cut_id,
        "start": round(start, 4),
        "duration": round(duration, 4),
        "channel": 0,
        "supervisions": [{
            "id": cut_id, "recording_id": reco_id, "start": 0.0,
            "duration": round(duration, 4), "channel": 0, "text": text,
            "language": "English", "speaker": speaker,
        }],
        "recording": {
            "id": reco_id,
            "sources": [{"type": "file", "channels": [0], "source": source}],
            "sampling_rate": SAMPLE_RATE, "num_samples": num_samples,
            "duration": round(num_samples / SAMPLE_RATE, 6), "channel_ids": [0],
        },
        "type": "MonoCut",
    }


def build_split(split, pairs, sentences, out_dir: Path, workdir: Path, rng, jobs):
    # synthesise every utterance (in parallel: each is a subprocess)
    def job(item):
        k, (sid, spk) = item
        return synthesise(spk, sentences[sid], workdir, f"{split}_{k}")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        audios = list(pool.map(job, enumerate(pairs)))

    by_speaker = {}
    for (sid, spk), audio in zip(pairs, audios):
        by_speaker.setdefault(spk, []).append((sid, audio))
    cuts = []
    for spk in sorted(by_speaker):
        items = by_speaker[spk]
        rec_index = 0
        pos = 0
        while pos < len(items):
            group = items[pos:pos + rng.randint(1, 6)]
            pos += len(group)
            reco_id = f"mini/{spk}/{split}{rec_index:03d}"
            source = f"audio/{split}/{spk}/{split}{rec_index:03d}.flac"
            pieces = [np.zeros(int(SAMPLE_RATE * rng.uniform(0.1, 0.4)), np.float32)]
            spans = []
            offset = len(pieces[0])
            for sid, audio in group:
                spans.append((sid, offset, len(audio)))
                pieces.append(audio)
                gap = np.zeros(int(SAMPLE_RATE * rng.uniform(0.25, 0.6)), np.float32)
                pieces.append(gap)
                offset += len(audio) + len(gap)
            signal = np.concatenate(pieces)
            path = out_dir / source
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, signal, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            for k, (sid, start, length) in enumerate(spans):
                cuts.append(make_cut(f"{reco_id}_{k}", reco_id, source, start / SAMPLE_RATE,
                                     length / SAMPLE_RATE, len(signal), sentences[sid], spk))
            rec_index += 1
    return cuts


def read_librivox_transcripts(folder: Path):
    """{stem: text} from <stem>.txt files, else the sphinx 'transcription' file
    ("<s> words </s> (stem)" lines). The transcripts are lower case without punctuation;
    the first letter is capitalised and a full stop added to match the corpus style."""
    texts = {}
    for trans in [*folder.glob("transcription"), *folder.glob("*.transcription")]:
        for line in trans.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^(.*)\((\S+)\)\s*$", line.strip())
            if m:
                words = [w for w in m.group(1).split() if w not in ("<s>", "</s>")]
                texts[Path(m.group(2)).name] = " ".join(words)
    for txt in folder.glob("*.txt"):
        texts[txt.stem] = " ".join(txt.read_text(encoding="utf-8").split())
    return {k: (v[0].upper() + v[1:] + ("" if v[-1] in ".!?" else ".")) for k, v in texts.items() if v}


def build_librivox(out_dir: Path, folder: Path):
    if not folder.is_dir():
        print(f"make_mini_corpus: {folder} not found (Debian package pocketsphinx-testdata); "
              "skipping the LibriVox test set", file=sys.stderr)
        return []
    texts = read_librivox_transcripts(folder)
    cuts = []
    for wav in sorted(folder.glob("*.wav")):
        text = texts.get(wav.stem, "").strip()
        if not text:
            print(f"make_mini_corpus: no transcript for {wav}; skipped", file=sys.stderr)
            continue
        source = f"audio/librivox/{wav.stem}.flac"
        dest = out_dir / source
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["sox", "-D", str(wav), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(dest)],
                       check=True, stderr=subprocess.PIPE)
        n = sf.info(dest).frames
        reco_id = f"librivox/{wav.stem}"
        cuts.append(make_cut(f"{reco_id}_0", reco_id, source, 0.0, n / SAMPLE_RATE, n,
                             text, "librivox_reader"))
    return cuts


def write_manifest(path: Path, cuts):
    opener = gzip.open if path.suffix == ".gz" else open
    # mtime=0 keeps the gzip bytes identical across runs
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            for c in cuts:
                f.write((json.dumps(c, ensure_ascii=False) + "\n").encode("utf-8"))
        return
    with opener(path, "wt", encoding="utf-8") as f:
        for c in cuts:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--sentences", type=Path,
                        default=Path(__file__).resolve().parent / "mini_sentences.txt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_dev", type=int, default=20)
    parser.add_argument("--num_test", type=int, default=25)
    parser.add_argument("--generated_train", type=int, default=0,
                        help="add this many training-only sentences from local/generate_sentences.py")
    parser.add_argument("--voices", default=",".join(VOICES),
                        help=f"comma-separated speakers to use, of: {', '.join(VOICES)}")
    parser.add_argument("--prefix", default="mini",
                        help="manifests are named libriheavy_cuts_<prefix>_{train,dev,test}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--librivox_dir", type=Path, default=LIBRIVOX_DIR,
                        help="real read speech (<stem>.wav + <stem>.txt) for the librivox_test set")
    args = parser.parse_args()

    voices = [v for v in args.voices.split(",") if v]
    unknown = [v for v in voices if v not in VOICES]
    if unknown or not voices:
        sys.exit(f"make_mini_corpus: unknown voice(s) {unknown or args.voices!r} in --voices; "
                 f"known: {', '.join(VOICES)}")
    if not re.fullmatch(r"[A-Za-z0-9]+", args.prefix):
        sys.exit(f"make_mini_corpus: --prefix must be letters and digits (got {args.prefix!r})")
    for tool in ("flite", "espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"make_mini_corpus: '{tool}' is not installed (apt-get install {tool})")
    sentences = [" ".join(s.split()) for s in args.sentences.read_text(encoding="utf-8").splitlines()]
    sentences = [s for s in sentences if s]
    if len(set(sentences)) != len(sentences):
        sys.exit(f"make_mini_corpus: {args.sentences} has duplicate sentences")

    t0 = time.time()
    rng = random.Random(args.seed)
    splits = split_sentences(sentences, args.num_dev, args.num_test, rng)
    if args.generated_train > 0:
        from generate_sentences import generate

        extra = generate(args.generated_train, seed=args.seed, exclude=sentences)
        splits["train"] += list(range(len(sentences), len(sentences) + len(extra)))
        sentences = sentences + extra
    tmp = args.out_dir.with_name(args.out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "manifests").mkdir(parents=True)
    summary = []
    with tempfile.TemporaryDirectory() as work:
        for split in ("train", "dev", "test"):
            pairs = assign_speakers(split, splits[split], rng, voices)
            cuts = build_split(split, pairs, sentences, tmp, Path(work), rng, args.jobs)
            suffix = ".jsonl.gz" if split == "train" else ".jsonl"
            write_manifest(tmp / "manifests" / f"libriheavy_cuts_{args.prefix}_{split}{suffix}", cuts)
            hours = sum(c["duration"] for c in cuts) / 3600
            summary.append(f"{args.prefix}_{split}: {len(cuts)} utts, {len(splits[split])} sentences, "
                           f"{hours * 60:.1f} min")
    lv = build_librivox(tmp, args.librivox_dir)
    if lv:
        write_manifest(tmp / "manifests" / "libriheavy_cuts_librivox_test.jsonl", lv)
        summary.append(f"librivox_test: {len(lv)} utts")
    if args.out_dir.exists():
        shutil.rmtree(args.out_dir)
    os.replace(tmp, args.out_dir)
    print(f"make_mini_corpus: wrote {args.out_dir} in {time.time() - t0:.1f} s: "
          + "; ".join(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
