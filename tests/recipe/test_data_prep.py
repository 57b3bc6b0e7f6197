"""Stage 1: LibriHeavy manifests -> Kaldi dirs, and the synthetic mini corpus."""

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from recipe_helpers import need


def cut(cut_id, reco, source, start, duration, text, speaker="100", rate=16000):
    return {
        "id": cut_id, "start": start, "duration": duration, "channel": 0,
        "supervisions": [{"id": cut_id, "recording_id": reco, "start": 0.0, "duration": duration,
                          "text": text, "speaker": speaker}],
        "recording": {"id": reco, "sources": [{"type": "file", "channels": [0], "source": source}],
                      "sampling_rate": rate},
        "type": "MonoCut",
    }


def prepare(recipe_dir, manifest, audio_root, out, check_audio="true"):
    return subprocess.run([sys.executable, str(recipe_dir / "local/prepare_libriheavy.py"),
                           "--check_audio", check_audio, str(manifest), str(audio_root), str(out)],
                          capture_output=True, text=True)


def test_manifest_to_kaldi_dir(recipe_dir, tmp_path):
    root = tmp_path / "librilight"
    (root / "small/100/book").mkdir(parents=True)
    sf.write(root / "small/100/book/ch1.flac", np.zeros(16000 * 6, np.float32), 16000)
    sf.write(root / "small/200/book.flac" if False else root / "small/100/book/ch2.flac",
             np.zeros(16000 * 3, np.float32), 16000)
    cuts = [
        cut("small/100/book/ch1_1", "small/100/book/ch1", "small/100/book/ch1.flac", 2.5, 1.25,
            "Hello,  \"world\"!\nSecond line."),
        cut("small/100/book/ch1_0", "small/100/book/ch1", "small/100/book/ch1.flac", 0.0, 2.0,
            "It was a Dark and stormy night."),
        cut("small/200/book/ch2_0", "small/200/book/ch2", "small/100/book/ch2.flac", 0.5, 2.0,
            "Another speaker.", speaker="200"),
        cut("small/300/gone_0", "small/300/gone", "small/300/gone.flac", 0.0, 1.0, "Missing audio."),
    ]
    manifest = tmp_path / "libriheavy_cuts_small.jsonl.gz"
    with gzip.open(manifest, "wt") as f:
        f.writelines(json.dumps(c) + "\n" for c in cuts)
    out = tmp_path / "data" / "small"
    r = prepare(recipe_dir, manifest, root, out)
    assert r.returncode == 0, r.stderr
    assert "dropped 1 cuts whose audio is missing" in r.stderr
    assert (out / "text").read_text() == (
        "small-100-book-ch1_0 It was a Dark and stormy night.\n"
        "small-100-book-ch1_1 Hello, \"world\"! Second line.\n"
        "small-200-book-ch2_0 Another speaker.\n")
    assert (out / "segments").read_text() == (
        "small-100-book-ch1_0 small-100-book-ch1 0.000 2.000\n"
        "small-100-book-ch1_1 small-100-book-ch1 2.500 3.750\n"
        "small-200-book-ch2_0 small-200-book-ch2 0.500 2.500\n")
    wav = dict(line.split() for line in (out / "wav.scp").read_text().splitlines())
    assert wav == {"small-100-book-ch1": str(root / "small/100/book/ch1.flac"),
                   "small-200-book-ch2": str(root / "small/100/book/ch2.flac")}
    assert (out / "spk2utt").read_text() == "100 small-100-book-ch1_0 small-100-book-ch1_1\n200 small-200-book-ch2_0\n"
    assert not (tmp_path / "data" / "small.tmp").exists()
    v = subprocess.run([str(recipe_dir / "utils/validate_data_dir.sh"), str(out)], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


def test_malformed_manifest_names_the_line(recipe_dir, tmp_path):
    good = json.dumps(cut("a/1_0", "a/1", "a/1.flac", 0.0, 1.0, "Fine."))
    cases = {
        "not valid JSON": "{\"id\": \"x\", ",
        "missing field 'supervisions[0].text'": json.dumps(
            {**cut("a/1_1", "a/1", "a/1.flac", 0.0, 1.0, "x"), "supervisions": [{"speaker": "1"}]}),
        "text is empty for cut 'a/1_2'": json.dumps(cut("a/1_2", "a/1", "a/1.flac", 0.0, 1.0, "   ")),
        "need start >= 0 and duration > 0": json.dumps(cut("a/1_3", "a/1", "a/1.flac", 0.0, -1.0, "x")),
        "missing field 'recording'": json.dumps({k: v for k, v in cut("a/1_4", "a/1", "a/1.flac", 0, 1, "x").items()
                                                 if k != "recording"}),
    }
    for expected, bad in cases.items():
        manifest = tmp_path / "m.jsonl"
        manifest.write_text(good + "\n" + good.replace("1_0", "1_9") + "\n" + bad + "\n")
        r = prepare(recipe_dir, manifest, tmp_path, tmp_path / "out", check_audio="false")
        assert r.returncode != 0
        assert f"{manifest}:3:" in r.stderr, r.stderr
        assert expected in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@need("flite", "espeak-ng", "sox")
def test_mini_corpus_small_is_deterministic_and_split_by_sentence(recipe_dir, tmp_path):
    sentences = [f"Sentence number {w}, said the {c} cat." for w, c in
                 zip("one two three four five six seven eight nine ten eleven twelve".split(),
                     "red blue green black white grey brown pink gold tan plum teal".split())]
    (tmp_path / "s.txt").write_text("\n".join(sentences) + "\n")
    # a stand-in for pocketsphinx-testdata's librivox folder: <stem>.wav (16 kHz) + <stem>.txt
    librivox = tmp_path / "librivox"
    librivox.mkdir()
    for stem, text in (("book-0880", "he was not an ill disposed young man"),
                       ("book-0930", "he might even have been made amiable himself")):
        subprocess.run(["flite", "-voice", "rms", "-t", text, "-o", str(librivox / f"{stem}.wav")], check=True)
        (librivox / f"{stem}.txt").write_text(text + "\n")
    outs = []
    for name in ("a", "b"):
        r = subprocess.run([sys.executable, str(recipe_dir / "local/make_mini_corpus.py"), str(tmp_path / name),
                            "--sentences", str(tmp_path / "s.txt"), "--num_dev", "2", "--num_test", "3",
                            "--generated_train", "3", "--librivox_dir", str(librivox)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append(tmp_path / name)
    assert tree_digest(outs[0]) == tree_digest(outs[1])

    manifests = outs[0] / "manifests"
    texts = {}
    for split in ("train", "dev", "test"):
        path = manifests / f"libriheavy_cuts_mini_{split}.jsonl{'.gz' if split == 'train' else ''}"
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            cuts = [json.loads(line) for line in f]
        texts[split] = {c["supervisions"][0]["text"] for c in cuts}
        for c in cuts:
            audio = outs[0] / c["recording"]["sources"][0]["source"]
            info = sf.info(audio)
            assert info.samplerate == 24000 == c["recording"]["sampling_rate"]
            assert c["start"] + c["duration"] <= info.frames / 24000 + 1e-3
    assert len(texts["dev"]) == 2 and len(texts["test"]) == 3
    # the 3 generated sentences are training-only, next to the 7 hand-written ones
    generated = texts["train"] - set(sentences)
    assert len(generated) == 3 and len(texts["train"] & set(sentences)) == 7
    assert not (texts["train"] & texts["dev"]) and not (texts["train"] & texts["test"]) \
        and not (texts["dev"] & texts["test"])

    lv = [json.loads(line) for line in (manifests / "libriheavy_cuts_librivox_test.jsonl").read_text().splitlines()]
    assert [c["supervisions"][0]["text"] for c in lv] == ["He was not an ill disposed young man.",
                                                          "He might even have been made amiable himself."]
    assert sf.info(outs[0] / lv[0]["recording"]["sources"][0]["source"]).samplerate == 24000

    # the converter reads it; recordings hold several cuts (segments is exercised)
    out = tmp_path / "data_train"
    r = prepare(recipe_dir, manifests / "libriheavy_cuts_mini_train.jsonl.gz", outs[0], out)
    assert r.returncode == 0, r.stderr
    n_utts = len((out / "segments").read_text().splitlines())
    n_recos = len((out / "wav.scp").read_text().splitlines())
    assert n_recos < n_utts
