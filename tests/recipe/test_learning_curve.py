"""The long run's pieces (run.sh --long true): resume loses nothing, each learning-curve row
scores the model and the ground truth with the recipe's scorer, the report turns rows into
a table, a plot and the best-WER line."""

import subprocess
import sys

import torch
import yaml

from espnet2_sled.bin import sled_train
from factory import DEBUG_CONF, train_args, write_dataset
from recipe_helpers import need


def run(recipe_dir, script, *args):
    return subprocess.run([sys.executable, str(recipe_dir / "local" / script), *map(str, args)],
                          capture_output=True, text=True)


@need("flite")
def test_resume_then_rows_then_report(recipe_dir, tmp_path):
    data = tmp_path / "data"
    keys, _ = write_dataset(data, odim=8)
    # ground-truth audio: flite reading each utterance's text (scored as the model is)
    texts = dict(line.split(" ", 1) for line in (data / "text").read_text().splitlines())
    with open(data / "wav.scp", "w") as f:
        for key in keys:
            wav = tmp_path / f"{key}.wav"
            subprocess.run(["flite", "-voice", "slt", "-t", texts[key], "-o", str(wav)], check=True)
            f.write(f"{key} {wav}\n")
    conf = yaml.safe_load(DEBUG_CONF.read_text())
    conf["tts_conf"].update(latent="mel", latent_conf=dict(n_mels=4, stack=2, griffin_lim_iters=2))
    conf.update(max_epoch=2, num_iters_per_epoch=4)
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(conf))

    # killed after epoch 1 and restarted (sled.sh's chunks: --max_epoch 1, then 2, --resume
    # true) == trained in one go: a restart loses nothing that a finished epoch holds
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    sled_train.main(train_args(data, whole, config=tmp_path / "conf.yaml"))
    for epoch in (1, 2):
        sled_train.main(train_args(data, chunked, config=tmp_path / "conf.yaml",
                                   extra=["--resume", "true", "--max_epoch", str(epoch)]))
        assert (chunked / f"{epoch}epoch.pth").exists()
    a, b = torch.load(whole / "2epoch.pth", weights_only=True), torch.load(chunked / "2epoch.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    exp = chunked
    assert run(recipe_dir, "learning_curve.py", "--exp", exp, "--has_row", 2).returncode == 1
    r = run(recipe_dir, "learning_curve.py", "--exp", exp, "--epoch", 2, "--data", data,
            "--latents", data / "feats.scp", "--max_utts", 3, "--max_frames", 12)
    assert r.returncode == 0, r.stderr
    assert run(recipe_dir, "learning_curve.py", "--exp", exp, "--has_row", 2).returncode == 0
    table = exp / "learning_curve.tsv"
    header, line = table.read_text().splitlines()
    row = dict(zip(header.split("\t"), line.split("\t")))
    assert row["epoch"] == "2" and row["updates"] == "8"  # epoch x num_iters_per_epoch
    assert float(row["ed_own"]) > 0 and 0 <= float(row["wer"]) and float(row["frames_ratio"]) > 0
    assert float(row["wer_groundtruth"]) < 0.5  # flite read by pocketsphinx: mostly right
    assert 0 <= float(row["tf_wer_own"]) and 0 <= float(row["tf_wer_other"])
    for name in ("own", "other"):
        assert len(list((exp / "learning_curve" / "epoch2" / f"teacher_forced_{name}").glob("*.wav"))) == 3
    assert len(list((exp / "learning_curve" / "epoch2").glob("*.wav"))) == 3
    assert len((exp / "learning_curve" / "epoch2" / "hyps.tsv").read_text().splitlines()) == 3
    # an earlier row with a lower WER, appended later (rows are sorted by updates)
    earlier = dict(row, epoch="1", updates="4", wer="0.0100")
    with open(table, "a") as f:
        f.write("\t".join(earlier[c] for c in header.split("\t")) + "\n")

    md, png = tmp_path / "report" / "curve.md", tmp_path / "report" / "curve.png"
    r = run(recipe_dir, "report_learning_curve.py", exp / "learning_curve.tsv", "--md", md, "--png", png)
    assert r.returncode == 0, r.stderr
    assert f"best held-out WER: 0.010 (ground truth: {float(row['wer_groundtruth']):.3f}), at 4 updates" in r.stdout
    lines = md.read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:4]] == ["| 4", "| 8"]
    assert png.read_bytes()[:4] == b"\x89PNG"

    # diagnostic: fed-back frames hidden at decoding too; its own table, the curve untouched
    before = table.read_text()
    r = run(recipe_dir, "learning_curve.py", "--exp", exp, "--epoch", 2, "--data", data, "--latents",
            data / "feats.scp", "--max_utts", 3, "--max_frames", 12, "--decode_frame_drop", 0.9)
    assert r.returncode == 0, r.stderr
    assert table.read_text() == before
    header, line = (exp / "learning_curve_decode_drop0.9.tsv").read_text().splitlines()
    dropped = dict(zip(header.split("\t"), line.split("\t")))
    assert dropped["updates"] == "8" and dropped["ed_own"] != row["ed_own"]  # the frames were hidden
    assert len(list((exp / "learning_curve" / "decode_drop0.9" / "epoch2").glob("*.wav"))) == 3
    r = run(recipe_dir, "learning_curve.py", "--exp", exp, "--epoch", 2, "--data", data, "--latents",
            data / "feats.scp", "--decode_frame_drop", 1)
    assert r.returncode == 2 and "--decode_frame_drop must lie in [0, 1) (got 1.0)" in r.stderr


def test_report_without_rows_says_so(recipe_dir, tmp_path):
    (tmp_path / "empty.tsv").write_text("epoch\tupdates\n")
    r = run(recipe_dir, "report_learning_curve.py", tmp_path / "empty.tsv")
    assert r.returncode != 0 and "no learning-curve rows" in r.stderr


@need("flite", "espeak-ng", "sox")
def test_one_voice_corpus_reads_each_sentence_once(recipe_dir, tmp_path):
    import gzip
    import json

    sentences = [f"Line {w} is here." for w in "one two three four five six seven".split()]
    (tmp_path / "s.txt").write_text("\n".join(sentences) + "\n")
    r = run(recipe_dir, "make_mini_corpus.py", tmp_path / "c", "--sentences", tmp_path / "s.txt",
            "--num_dev", 1, "--num_test", 2, "--generated_train", 2, "--voices", "flite_slt",
            "--prefix", "long", "--librivox_dir", tmp_path / "none")
    assert r.returncode == 0, r.stderr
    cuts = {}
    for split in ("train", "dev", "test"):
        path = tmp_path / "c" / "manifests" / f"libriheavy_cuts_long_{split}.jsonl{'.gz' if split == 'train' else ''}"
        with (gzip.open if split == "train" else open)(path, "rt") as f:
            cuts[split] = [json.loads(line)["supervisions"][0] for line in f]
    assert [len(cuts[s]) for s in ("train", "dev", "test")] == [4 + 2, 1, 2]  # one reading each
    assert {s["speaker"] for c in cuts.values() for s in c} == {"flite_slt"}
    bad = run(recipe_dir, "make_mini_corpus.py", tmp_path / "d", "--voices", "flite_nobody")
    assert bad.returncode != 0 and "flite_nobody" in bad.stderr and "flite_slt" in bad.stderr


def test_run_sh_long_needs_mini(recipe_dir):
    for args in (["--long", "true"], ["--mini", "true", "--long", "maybe"]):
        r = subprocess.run(["./run.sh", *args], cwd=recipe_dir, capture_output=True, text=True)
        assert r.returncode == 1 and "--long true goes with --mini true" in r.stderr, r.stderr


def test_rows_of_an_older_file_are_kept_when_new_columns_arrive(recipe_dir, tmp_path, monkeypatch):
    """A learning_curve.tsv written before the teacher-forced columns existed: the next row
    rewrites it with the new header, its rows keep every value, and the report marks what
    they lack."""
    monkeypatch.syspath_prepend(str(recipe_dir / "local"))
    from learning_curve import COLUMNS, MISSING, append_row, read_rows

    old_columns = [c for c in COLUMNS if not c.startswith("tf_")]
    old = dict(epoch="1", updates="200", ed_own="5.5", ed_other="5.6", ed_none="5.7", wer="2.0",
               wer_groundtruth="0.2", frames_ratio="2.1", eval_seconds="30", time="t")
    table = tmp_path / "learning_curve.tsv"
    table.write_text("\t".join(old_columns) + "\n" + "\t".join(old[c] for c in old_columns) + "\n")
    new = dict(old, epoch="2", updates="400", wer="1.0", tf_wer_own="0.3", tf_wer_other="0.9")
    append_row(table, new)
    assert table.read_text().splitlines()[0].split("\t") == COLUMNS
    first, second = read_rows(table)
    assert first == {**old, "tf_wer_own": MISSING, "tf_wer_other": MISSING} and second == new
    r = run(recipe_dir, "report_learning_curve.py", table)
    assert r.returncode == 0, r.stderr
    assert "| 200 | 1 |" in r.stdout and r.stdout.count("– / –") == 1 and "0.300 / 0.900" in r.stdout
