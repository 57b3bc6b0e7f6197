"""sled.sh stage plumbing on a tiny data dir: token list (stage 3), replay log, resume, errors."""

import os
import subprocess
import sys

import pytest


@pytest.fixture
def recipe_copy(recipe_dir, tmp_path):
    """A recipe dir whose scripts are the real ones and whose outputs land in tmp_path."""
    for name in ("sled.sh", "run.sh", "path.sh", "cmd.sh", "db.sh", "utils", "local", "conf"):
        (tmp_path / name).symlink_to(recipe_dir / name)
    text = tmp_path / "data" / "tiny" / "text"
    text.parent.mkdir(parents=True)
    words = "the cat sat on a mat while dogs ran to big red barns near old green hills".split()
    text.write_text("".join(f"u{i:03d} {' '.join(words[i % 7:i % 7 + 6]).capitalize()}.\n" for i in range(60)))
    return tmp_path


def sled(cwd, *args):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return subprocess.run(["./sled.sh", "--python", sys.executable, "--train_set", "tiny", "--valid_set", "tiny",
                           *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_stage3_token_list_replay_and_resume(recipe_copy):
    r = sled(recipe_copy, "--stage", "3", "--stop_stage", "3", "--nbpe", "40")
    assert r.returncode == 0, r.stderr
    tokens = (recipe_copy / "dump/token_list/bpe_unigram40/tokens.txt").read_text().split("\n")[:-1]
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    assert len(tokens) == len(set(tokens)) and "<s>" not in tokens and "</s>" not in tokens
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(recipe_copy / "dump/token_list/bpe_unigram40/bpe.model"))
    assert set(sp.encode("The cat sat on a mat.", out_type=str)) <= set(tokens)

    replay = (recipe_copy / "exp/run_logs/stage3.run.sh").read_text()
    assert (
        "local/train_bpe.py --vocab_size 40 --model_type unigram dump/token_list/bpe_unigram40 data/tiny/text" in replay
    )
    mtime = (recipe_copy / "dump/token_list/bpe_unigram40/bpe.model").stat().st_mtime_ns
    r = sled(recipe_copy, "--stage", "3", "--stop_stage", "3", "--nbpe", "40")
    assert r.returncode == 0 and "exists; skipping" in r.stderr
    assert (recipe_copy / "dump/token_list/bpe_unigram40/bpe.model").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("args, folder, expect", [
    (["--token_type", "char"], "char", {"c", "a", "<space>", "."}),
    (["--token_type", "phn", "--g2p", "espeak_ng_english_us_vits"], "phn_espeak_ng_english_us_vits",
     {"æ", "k", "<space>"}),
])
def test_stage3_char_and_phoneme_token_lists(recipe_copy, args, folder, expect):
    """ESPnet's tokenize_text makes the list (phonemes from espeak-ng via phonemizer, offline)."""
    r = sled(recipe_copy, "--stage", "3", "--stop_stage", "3", *args)
    assert r.returncode == 0, r.stderr
    tokens = (recipe_copy / "dump/token_list" / folder / "tokens.txt").read_text().split("\n")[:-1]
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>" and expect <= set(tokens)
    assert "espnet2.bin.tokenize_text" in (recipe_copy / "exp/run_logs/stage3.run.sh").read_text()
    r = sled(recipe_copy, "--stage", "3", "--stop_stage", "3", *args)
    assert r.returncode == 0 and "exists; skipping" in r.stderr


def test_phonemes_need_a_g2p(recipe_copy):
    r = sled(recipe_copy, "--stage", "3", "--stop_stage", "3", "--token_type", "phn")
    assert r.returncode != 0 and "--token_type phn needs --g2p" in r.stderr


def test_given_token_list_is_passed_through(recipe_copy):
    r = sled(recipe_copy, "--stage", "3", "--stop_stage", "3", "--token_list", "nope/tokens.txt",
             "--bpemodel", "nope/bpe.model")
    assert r.returncode != 0 and "nope/tokens.txt does not exist" in r.stderr


def test_errors_name_the_fix(recipe_copy):
    r = sled(recipe_copy, "--stage", "4", "--stop_stage", "4")
    assert r.returncode != 0 and "--train_config" in r.stderr
    r = sled(recipe_copy, "--stgae", "4")
    assert r.returncode != 0 and "unknown option '--stgae'" in r.stderr
    r = subprocess.run(["./sled.sh", "--stage", "1"], cwd=recipe_copy, capture_output=True, text=True)
    assert r.returncode != 0 and "--train_set is required" in r.stderr
