"""Bad decoding inputs through the public entry points (issue #11, items 3, 4, 5, 8, 10, 11):
the Python API (``SLEDText2Speech``, its ``stream()``) and the decoding CLI in a subprocess."""

import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_models import HOP, load, train_tiny

from factory import REPO

TEXT = "the cat sat on the mat."


def cli_args(exp: Path, out: Path, text_file: Path, *extra, model_file: str = "1epoch.pth"):
    return [
        "--output_dir", str(out), "--train_config", str(exp / "config.yaml"), "--model_file", str(exp / model_file),
        "--data_path_and_name_and_type", f"{text_file},text,text", "--max_frames", "6", *extra,
    ]


def cli(*args, **kwargs):
    """The decoding CLI's main() in this process (what ``python -m`` runs; saves its start-up)."""
    from espnet2_sled.bin import sled_inference

    sled_inference.main(cli_args(*args, **kwargs))


def cli_subprocess(*args, **kwargs) -> subprocess.CompletedProcess:
    """python -m espnet2_sled.bin.sled_inference in a subprocess."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "espnet2_sled.bin.sled_inference", *cli_args(*args, **kwargs)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def prompt_files(root: Path):
    good = 0.1 * np.sin(np.arange(4800) / 24000 * 2 * np.pi * 220).astype(np.float32)
    files = {}
    for name, audio in [("good", good), ("nan", np.where(np.arange(4800) == 100, np.nan, good)),
                        ("inf", np.where(np.arange(4800) == 7, np.inf, good)), ("empty", np.zeros(0))]:
        files[name] = root / f"{name}.wav"
        sf.write(files[name], audio.astype(np.float32), 24000, subtype="FLOAT")
    return files


# ---------------------------------------------------------------- items 3 and 5: prompts
def test_non_finite_or_empty_prompt_is_refused_by_name(offline_exp, tmp_path):
    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)
    files = prompt_files(tmp_path)
    assert t2s(TEXT, prompt_text="a hum.", prompt_audio=files["good"], seed=0, max_frames=3)["feat_gen"].shape[0] == 3
    for name, message in [("nan", "contains NaN/Inf"), ("inf", "contains NaN/Inf"), ("empty", "is empty")]:
        path = str(files[name])
        with pytest.raises(ValueError, match=re.escape(f"prompt audio '{path}' {message}")):
            t2s(TEXT, prompt_text="a hum.", prompt_audio=path, seed=0, max_frames=3)
        with pytest.raises(ValueError, match=re.escape(f"prompt audio '{path}' {message}")):
            t2s.stream(voice_prompt=path, prompt_text="a hum.")
    latents = t2s.encode_prompt(files["good"])
    bad = latents.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="prompt_latents contains NaN/Inf"):
        t2s(TEXT, prompt_text="a hum.", prompt_latents=bad, max_frames=3)
    with pytest.raises(ValueError, match=r"voice_prompt \(latents\) contains NaN/Inf"):
        t2s.stream(voice_prompt=bad, prompt_text="a hum.")
    with pytest.raises(ValueError, match="prompt_latents is empty"):
        t2s(TEXT, prompt_text="a hum.", prompt_latents=latents[:0], max_frames=3)
    samples = np.full(2400, np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match=r"prompt audio \(samples\) contains NaN/Inf"):
        t2s(TEXT, prompt_text="a hum.", prompt_audio=samples, prompt_sample_rate=24000)


def test_cli_checks_every_prompt_before_decoding(offline_exp, tmp_path):
    root, exp = offline_exp
    files = prompt_files(tmp_path)
    keys = [line.split()[0] for line in (root / "data/text").read_text().splitlines()]
    (tmp_path / "prompt_text").write_text("".join(f"{k} a low hum.\n" for k in keys))
    for name, message in [("nan", "contains NaN/Inf"), ("empty", "is empty")]:
        scp = tmp_path / f"{name}.scp"  # only the last utterance has the bad prompt
        scp.write_text("".join(f"{k} {files['good' if k != keys[-1] else name]}\n" for k in keys))
        out = tmp_path / f"out_{name}"
        with pytest.raises(ValueError, match=re.escape(f"prompt audio '{files[name]}' {message}")):
            cli(exp, out, root / "data/text", "--prompt_wav_scp", str(scp),
                "--prompt_text", str(tmp_path / "prompt_text"))
        assert not list((out / "wav").glob("*.wav"))  # refused before the first utterance was decoded


# ---------------------------------------------------------------- item 4: empty text
def test_empty_text_is_refused_offline_and_streaming(offline_exp):
    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)
    for text in ["", "   ", "\n\t "]:
        with pytest.raises(ValueError, match="text is empty"):
            t2s(text, max_frames=3)
        with pytest.raises(ValueError, match="text is empty"):
            t2s(text, prompt_text="a hum.", prompt_latents=torch.zeros(4, 8), max_frames=3)
        session = t2s.stream(max_frames=3)
        assert list(session.push_text(text)) == []
        with pytest.raises(ValueError, match="text is empty"):
            list(session.end_text())
    session = t2s.stream(max_frames=3, seed=0)  # a session that was given text still works
    chunks = list(session.push_text("  ")) + list(session.push_text(TEXT)) + list(session.end_text())
    assert sum(c.frames.shape[0] for c in chunks) == 3


def test_cli_names_the_empty_line(offline_exp, tmp_path):
    _, exp = offline_exp
    text = tmp_path / "text"
    text.write_text(f"u1 {TEXT}\nu2 hello world.\nu3   \nu4 birds sing.\n")
    run = cli_subprocess(exp, tmp_path / "out", text)
    assert run.returncode != 0
    assert f"text is empty for utterance 'u3' ({text}:3)" in run.stderr
    assert "doesn't include a space" not in run.stderr
    assert not list((tmp_path / "out/wav").glob("*.wav"))
    with pytest.raises(ValueError, match=re.escape(f"text is empty for utterance 'u3' ({text}:3)")):
        cli(exp, tmp_path / "out_streaming", text, "--streaming", "true")


# ---------------------------------------------------------------- item 8: text front end
def test_numbers_symbols_and_control_characters_are_read(offline_exp):
    from espnet2_sled.tasks.sled import SLEDTask
    from espnet2_sled.text2speech import UnknownCharactersWarning

    _, exp = offline_exp
    t2s = load(exp)
    assert t2s.train_args.cleaner == "sled_english"
    unk_id = t2s.preprocess_fn.token_id_converter.unk_id
    text = "In 1999, 3.5% of $2,000,000\x07 went to Zo\u00eb & \u00a33\u200b."
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownCharactersWarning)
        ids = t2s.tokenize(text)
    assert unk_id not in ids.tolist()
    spoken = "".join(t2s.preprocess_fn.token_id_converter.ids2tokens(ids.tolist())).replace("<space>", " ")
    assert spoken == ("In nineteen ninety-nine, three point five percent of two million dollars went to Zoe "
                      "and three pounds.")
    # Training reads the text through the same preprocessor (the cleaner in config.yaml).
    train_fn = SLEDTask.build_preprocess_fn(t2s.train_args, True)
    assert train_fn("u", dict(text=text))["text"].tolist() == ids.tolist()
    worker_copy = pickle.loads(pickle.dumps(train_fn))  # what data-loader workers get
    assert worker_copy("u", dict(text=text))["text"].tolist() == ids.tolist()
    # Text without such characters gives the same ids as without the cleaner.
    plain = "The kettle clicked off, just as the phone rang!  Didn't it?"
    args = type(t2s.train_args)(**vars(t2s.train_args))
    args.cleaner = None
    none_fn = SLEDTask.build_preprocess_fn(args, False)
    assert none_fn("u", dict(text=plain))["text"].tolist() == t2s.tokenize(plain).tolist()
    assert none_fn("u", dict(text=text))["text"].tolist() != ids.tolist()


def test_unknown_characters_are_named_for_a_model_without_the_front_end(offline_exp, tmp_path):
    from espnet2_sled.text2speech import SLEDText2Speech, UnknownCharactersWarning

    _, exp = offline_exp  # the same weights, configured as trained with cleaner: none
    config = (exp / "config.yaml").read_text()
    assert "cleaner: sled_english" in config
    (tmp_path / "config.yaml").write_text(config.replace("cleaner: sled_english", "cleaner: null"))
    t2s = SLEDText2Speech(tmp_path / "config.yaml", exp / "1epoch.pth")
    assert t2s.train_args.cleaner is None
    with pytest.warns(UnknownCharactersWarning, match=r"2 of 12 tokens are <unk>, from \['\\x07', '\u20ac'\]"
                                                      r".*train with cleaner: sled_english"):
        ids = t2s.tokenize("pay 7\x07 \u20ac now")
    assert (ids == t2s.preprocess_fn.token_id_converter.unk_id).sum() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownCharactersWarning)
        t2s.tokenize("pay 7 now")


def test_recipe_token_list_is_made_from_the_cleaned_text(tmp_path, monkeypatch):
    """Stage 3 (local/train_bpe.py, as sled.sh runs it) reads the training text through the
    cleaner that training and decoding use."""
    import runpy

    import sentencepiece as spm

    recipe = REPO / "egs2/libriheavy/sled"
    assert '--cleaner "${cleaner}"' in (recipe / "sled.sh").read_text()
    lines = ["In 1999 it cost $5.", "A 50% share\x07 of it.", "The cat sat on the mat.", "Birds sing at dawn."]
    (tmp_path / "text").write_text("".join(f"u{i} {line}\n" for i, line in enumerate(lines * 5)))
    monkeypatch.syspath_prepend(str(recipe / "local"))  # as when run as a script from the recipe
    monkeypatch.setattr(sys, "argv", ["train_bpe.py", "--vocab_size", "40", "--model_type", "char",
                                      str(tmp_path / "bpe"), str(tmp_path / "text"), "--cleaner", "sled_english"])
    runpy.run_path(str(recipe / "local/train_bpe.py"), run_name="__main__")
    tokens = set((tmp_path / "bpe/tokens.txt").read_text().split("\n"))
    assert {"n", "t", "d", "p", "I"} <= tokens and not tokens & {"1", "9", "5", "$", "%", "\x07"}
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "bpe/bpe.model"))
    from espnet2_sled.text_frontend import clean_english

    assert sp.unk_id() not in sp.encode(clean_english("A 1999 cat at 50%."), out_type=int)
    assert sp.unk_id() in sp.encode("A 1999 cat at 50%.", out_type=int)  # digits were never seen


# ---------------------------------------------------------------- item 10: early stop in streaming
@pytest.fixture(scope="module")
def eager_stopper(tmp_path_factory):
    """A streaming (packed) model whose stop head always says 0.5: with stop_threshold 0.5 it
    stops at its first frame, after reading one chunk of text."""
    root = tmp_path_factory.mktemp("eager")
    exp = train_tiny(root, layout="packed")
    state = torch.load(exp / "1epoch.pth", weights_only=True)
    state["tts.lm.stop_head.weight"].zero_()
    torch.save(state, exp / "eager.pth")
    return root, exp


def test_streaming_early_stop_warns_with_token_counts(eager_stopper):
    from espnet2_sled.decode_report import EmptyOutputError
    from espnet2_sled.long_text import EarlyStopWarning

    _, exp = eager_stopper
    from espnet2_sled.text2speech import SLEDText2Speech

    t2s = SLEDText2Speech(exp / "config.yaml", exp / "eager.pth", stop_threshold=0.5)
    total, first_read = len(t2s.tokenize(TEXT)) + 2, t2s.tts.tokens_per_chunk  # <s> text </s>
    session = t2s.stream(seed=0)
    # the stop frame is dropped: no frames at all, an error (issue #21) after the early-stop warning
    with pytest.raises(EmptyOutputError, match=re.escape(f"streamed text {TEXT!r}: the model produced no audio")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            list(session.push_text(TEXT)) + list(session.end_text())
    assert any(issubclass(w.category, EarlyStopWarning) and
               f"stopped after reading {first_read} of {total} text tokens" in str(w.message) for w in caught)
    assert session.stopped_early and (session.tokens_read, session.tokens_total) == (first_read, total)
    late = t2s.stream(seed=0, allow_early_stop=False, max_frames=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EarlyStopWarning)
        list(late.push_text(TEXT)) + list(late.end_text())
    assert not late.stopped_early and late.tokens_read == late.tokens_total == total


def test_cli_logs_the_early_stop_beside_the_utterance(eager_stopper, tmp_path, caplog):
    root, exp = eager_stopper
    text = tmp_path / "text"
    text.write_text(f"u1 {TEXT}\n")
    with pytest.raises(SystemExit) as exit_info:  # no frames: no output for u1, exit 1 (issue #21)
        cli(exp, tmp_path / "out", text, "--streaming", "true", "--stop_threshold", "0.5", model_file="eager.pth")
    assert exit_info.value.code == 1
    assert re.search(r"u1: streaming piece 1: the model stopped after reading \d+ of 25 text tokens", caplog.text)
    assert "u1: streamed text 'the cat sat on the mat.': the model produced no audio" in caplog.text
    timing = json.loads((tmp_path / "out/timing.jsonl").read_text())
    assert timing["error"] == "empty_output" and not list((tmp_path / "out/wav").glob("*.wav"))
    assert timing["report"]["tokens_read"] < timing["report"]["text_tokens"] == 23  # <s> and </s> not counted


# ---------------------------------------------------------------- item 11: peaks
def test_write_wav_scales_peaks_instead_of_clipping(tmp_path):
    from espnet2_sled.fileio import write_wav

    wav = 1.7 * np.sin(np.arange(2400) / 24000 * 2 * np.pi * 440).astype(np.float32)
    wav[100] = -2.5
    gain = write_wav(tmp_path / "a.wav", wav, 24000)
    back, fs = sf.read(tmp_path / "a.wav")
    assert fs == 24000 and sf.info(tmp_path / "a.wav").subtype == "PCM_16"
    assert gain == pytest.approx(0.99 / 2.5) and np.abs(back).max() <= 0.99 + 1 / 32768
    assert np.abs(back - gain * wav).max() <= 1 / 32768  # a scaled copy, not clipped
    quiet = 0.5 * wav / 2.5
    assert write_wav(tmp_path / "q.wav", quiet, 24000) == 1.0
    assert np.abs(sf.read(tmp_path / "q.wav")[0] - quiet).max() <= 1 / 32768  # left alone
    with pytest.raises(ValueError, match="NaN/Inf; not writing"):
        write_wav(tmp_path / "n.wav", np.array([0.1, np.nan], dtype=np.float32), 24000)
    assert not (tmp_path / "n.wav").exists()


def test_cli_writes_loud_model_output_without_clipping(offline_exp, tmp_path):
    root, exp = offline_exp
    state = torch.load(exp / "1epoch.pth", weights_only=True)
    state["tts.lm.generator.output.linear.bias"] += 1.0  # log-mel + 1: peaks at about 3x full scale
    torch.save(state, tmp_path / "loud.pth")
    (tmp_path / "config.yaml").write_text((exp / "config.yaml").read_text())
    text = tmp_path / "text"
    text.write_text(f"u1 {TEXT}\n")
    cli(tmp_path, tmp_path / "out", text, "--stop_threshold", "1.5", model_file="loud.pth")
    written, _ = sf.read(tmp_path / "out/wav/u1.wav")
    from espnet2_sled.text2speech import SLEDText2Speech

    t2s = SLEDText2Speech(tmp_path / "config.yaml", tmp_path / "loud.pth", stop_threshold=1.5)
    noise = torch.randn(6, t2s.tts.lm.noise_dim, generator=torch.Generator().manual_seed(0))[None]
    model_wav = t2s(TEXT, noise=noise, max_frames=6)["wav"].numpy()
    assert len(written) == len(model_wav) == 6 * HOP and np.abs(model_wav).max() > 1.5
    timing = json.loads((tmp_path / "out/timing.jsonl").read_text())
    gain = timing["peak_gain"]
    assert gain == pytest.approx(0.99 / np.abs(model_wav).max(), rel=1e-4)
    assert np.abs(written).max() <= 0.99 + 1 / 32768
    assert np.abs(written - gain * model_wav).max() <= 2 / 32768
