"""Never silent (issue #21): output that looks like success but is empty or cut short, text
with nothing to say, budget errors that blame the wrong input, config values of the wrong
type, abbreviated options -- through the API, ``stream()`` and the decoding CLI.

The model that stops at once is real: the tiny trained offline model with its stop head
zeroed (p(stop) = 0.5 at every frame) and ``tts_conf.stop_threshold: 0.5``, so with its own
defaults it stops at its first frame for every seed and every prompt. With
``keep_stop_frame`` it returns exactly that one frame: output implausibly short for any text.
"""

import json
import logging
import re
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from test_decoding_inputs import cli, cli_subprocess
from tiny_models import load

from espnet2_sled.decode_report import EmptyOutputError, ShortOutputWarning

TEXT = "the cat sat on the mat."  # 23 tokens (characters)
LONG = " ".join(["the cat sat on the mat."] * 6)  # 6 pieces with 120 positions


@pytest.fixture(scope="module")
def stopper(offline_exp, tmp_path_factory) -> Path:
    _, exp = offline_exp
    root = tmp_path_factory.mktemp("stopper")
    state = torch.load(exp / "1epoch.pth", weights_only=True)
    state["tts.lm.stop_head.weight"].zero_()
    torch.save(state, root / "model.pth")
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    conf["tts_conf"]["stop_threshold"] = 0.5
    (root / "config.yaml").write_text(yaml.safe_dump(conf))
    conf["tts_conf"]["max_positions"] = 120  # a decoding-time limit: long text comes in pieces
    (root / "config_120.yaml").write_text(yaml.safe_dump(conf))
    return root


def synthesizer(root: Path, config: str = "config.yaml", **options):
    from espnet2_sled.text2speech import SLEDText2Speech

    return SLEDText2Speech(root / config, root / "model.pth", **options)


def hum(path: Path, seconds: float) -> Path:
    audio = 0.1 * np.sin(np.arange(int(seconds * 24000)) / 24000 * 2 * np.pi * 220)
    sf.write(path, audio.astype(np.float32), 24000)
    return path


# ---------------------------------------------------------------- item 1: nothing at all
def test_api_and_stream_refuse_an_empty_result_naming_text_and_fix(stopper, tmp_path):
    t2s = synthesizer(stopper)
    prompt = hum(tmp_path / "prompt.wav", 1.0)
    for seed in (0, 1):
        with pytest.raises(EmptyOutputError) as error:
            t2s(TEXT, prompt_text="a hum.", prompt_audio=prompt, seed=seed)
        message = str(error.value)
        assert message.startswith(f"text {TEXT!r}: the model produced no audio (0 frames for 23 text tokens")
        assert "try another seed, or a higher stop_threshold (now 0.5), or another voice prompt" in message
    with pytest.raises(EmptyOutputError, match=re.escape(f"text {TEXT!r}: the model produced no audio")):
        t2s(TEXT, seed=0)
    session = t2s.stream(seed=0)
    with pytest.raises(EmptyOutputError, match=re.escape(f"streamed text {TEXT!r}: the model produced no audio "
                                                         "(0 frames for 23 text tokens")):
        list(session.push_text(TEXT)) + list(session.end_text())
    # One frame is not nothing, but it is implausibly short: a named warning with the numbers.
    with pytest.warns(ShortOutputWarning, match=re.escape(
            f"text {TEXT!r}: output is implausibly short, the model stopped early: 1 frames for 23 text tokens")):
        out = t2s(TEXT, seed=0, keep_stop_frame=True)
    report = out["report"]
    assert (report.frames, report.text_tokens, report.short_pieces) == (1, 23, [1]) == (len(out["feat_gen"]), 23, [1])
    # A decode the caller capped with max_frames is as long as asked: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortOutputWarning)
        assert t2s(TEXT, seed=0, keep_stop_frame=True, stop_threshold=1.5, max_frames=3)["report"].short_pieces == []


def test_cli_writes_no_file_for_an_empty_result_and_exits_1(stopper, tmp_path):
    text, prompts, prompt_text = tmp_path / "text", tmp_path / "wav.scp", tmp_path / "prompt_text"
    prompt = hum(tmp_path / "prompt.wav", 1.0)
    text.write_text(f"u1 {TEXT}\nu2 a dog ran.\n")
    prompts.write_text(f"u1 {prompt}\nu2 {prompt}\n")
    prompt_text.write_text("u1 a hum.\nu2 a hum.\n")
    out = tmp_path / "out"
    r = cli_subprocess(stopper, out, text, "--prompt_wav_scp", prompts, "--prompt_text", prompt_text,
                       model_file="model.pth")
    assert r.returncode == 1, r.stderr[-3000:]
    assert f"u1: text {TEXT!r}: the model produced no audio" in r.stderr
    assert "another voice prompt" in r.stderr and "; no output written for it" in r.stderr
    assert "2 utterance(s) produced no audio and have no output files: u1, u2" in r.stderr
    assert not list((out / "wav").glob("*.wav")) and (out / "wav/wav.scp").read_text() == ""
    records = [json.loads(line) for line in (out / "timing.jsonl").read_text().splitlines()]
    assert [(r["utt_id"], r["error"], r["report"]["frames"]) for r in records] == [("u1", "empty_output", 0),
                                                                                   ("u2", "empty_output", 0)]


# ---------------------------------------------------------------- item 2: long text cut short
def test_long_text_with_short_pieces_is_named_by_api_and_cli(stopper, tmp_path, caplog):
    t2s = synthesizer(stopper, "config_120.yaml")
    with pytest.warns(ShortOutputWarning, match=r"6 of 6 pieces are implausibly short, the model stopped early: "
                                                r"piece 1 of 6: 1 frames for 23 text tokens") as caught:
        out = t2s(LONG, seed=0, keep_stop_frame=True)
    assert "this model's floor is 1.25 frames/token (the fallback" in str(caught[0].message)
    assert out["report"].short_pieces == [1, 2, 3, 4, 5, 6] and out["report"].frames == 6
    text = tmp_path / "text"
    text.write_text(f"u1 {LONG}\n")
    (tmp_path / "config.yaml").write_text((stopper / "config_120.yaml").read_text())
    (tmp_path / "model.pth").symlink_to(stopper / "model.pth")
    with caplog.at_level(logging.WARNING):
        cli(tmp_path, tmp_path / "out", text, "--keep_stop_frame", "true", model_file="model.pth")
    assert "u1: text 'the cat sat on the mat. the cat sat on the mat. the cat s...': 6 of 6 pieces are " \
           "implausibly short" in caplog.text
    timing = json.loads((tmp_path / "out/timing.jsonl").read_text())
    assert timing["report"]["short_pieces"] == [1, 2, 3, 4, 5, 6] and timing["report"]["text_tokens"] == 6 * 23
    assert (tmp_path / "out/wav/u1.wav").is_file()  # short output is written, and named


# ---------------------------------------------------------------- item 3: nothing the model knows, streamed
def test_streaming_refuses_text_with_no_known_token(offline_exp, tmp_path):
    _, exp = offline_exp
    t2s = load(exp)
    session = t2s.stream(seed=0)
    with pytest.raises(ValueError, match=re.escape("streamed text '☃☃☃' is empty after tokenization: none of its "
                                                   "characters are in the model's token list; write it in words")):
        list(session.push_text("☃☃☃")) + list(session.end_text())
    text = tmp_path / "text"
    text.write_text("u1 ☃☃☃\n")
    with pytest.raises(ValueError, match=r"text is empty after tokenization for 1 utterance\(s\) of .*: "
                                         r"'u1' \('☃☃☃'\); none of their characters"):
        cli(exp, tmp_path / "out", text, "--streaming", "true")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- item 4: every text checked first
def test_batched_cli_checks_every_text_before_the_first_decode(offline_exp, tmp_path):
    _, exp = offline_exp
    text = tmp_path / "text"
    text.write_text("".join(f"u{i} {TEXT}\n" for i in range(1, 5)) + "u5 ☃☃☃\n")
    r = cli_subprocess(exp, tmp_path / "out", text, "--batch_size", "2")
    assert r.returncode == 1
    assert "'u5' ('☃☃☃'); none of their characters are in the model's token list: write them in words " \
           "the model knows or remove those lines (nothing was decoded)" in r.stderr
    assert not (tmp_path / "out").exists()  # no partial output folder


# ---------------------------------------------------------------- item 5: the prompt is what does not fit
def test_budget_error_blames_a_too_long_prompt(offline_exp, tmp_path):
    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)  # 512 positions, 37.5 frames per second
    long_prompt = hum(tmp_path / "long.wav", 20.0)
    expected = re.escape("the voice prompt takes 756 of the model's 512 positions (750 frames = 20.0 s of audio + "
                         "6 tokens of its transcript), leaving no room for the text (not even ") + ".*" + \
        re.escape("); use a voice prompt of at most ") + r"(\d+\.\d) s"
    with pytest.raises(ValueError, match=expected) as error:
        t2s("Say it.", prompt_text="a hum.", prompt_audio=long_prompt, seed=0)
    assert "its first word 'Say'" in str(error.value)
    with pytest.raises(ValueError, match=expected.replace(".*", "a one-letter word")):
        t2s.stream(voice_prompt=long_prompt, prompt_text="a hum.")
    # The limit it names is right: a prompt that long works.
    longest = float(re.search(expected, str(error.value)).group(1))
    out = t2s("Say it.", prompt_text="a hum.", prompt_audio=hum(tmp_path / "ok.wav", longest), seed=0, max_frames=2)
    assert out["feat_gen"].shape[0] == 2 * len(out["piece_frames"])  # a word per piece, 2 frames each


# ---------------------------------------------------------------- item 6: config values of the wrong type
def test_config_value_of_the_wrong_type_names_key_value_and_type(offline_exp, tmp_path):
    _, exp = offline_exp
    conf = yaml.safe_load((exp / "config.yaml").read_text())
    conf["tts_conf"]["dim"] = "big"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    from espnet2_sled.text2speech import SLEDText2Speech

    with pytest.raises(TypeError, match=re.escape("tts_conf.dim is 'big' (str); expected an integer, e.g. 1024 "
                                                  "(fix it in the model's config.yaml)")):
        SLEDText2Speech(tmp_path / "config.yaml", exp / "1epoch.pth")


# ---------------------------------------------------------------- item 8: the smaller ones
def test_cli_refuses_an_abbreviated_option(offline_exp, tmp_path, capsys):
    _, exp = offline_exp
    text = tmp_path / "text"
    text.write_text(f"u1 {TEXT}\n")
    with pytest.raises(SystemExit) as exit_info:  # the CLI's main(), in this process (saves its start-up)
        cli(exp, tmp_path / "out", text, "--cfg_scal", "3.0")
    assert exit_info.value.code == 2 and "unrecognized arguments: --cfg_scal 3.0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_espnet_long_text_warning_is_said_at_most_once(offline_exp, caplog):
    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)
    text = " ".join(["the cat sat on the mat, and the dog sat on the log."] * 12)  # 600+ tokens, several pieces
    with caplog.at_level(logging.WARNING):
        out = t2s(text, seed=0, max_frames=1)
    assert len(out["piece_frames"]) > 2
    assert caplog.text.count("The length of the text output exceeds 500") <= 1


def test_frames_per_token_is_measured_by_stage_4_and_stored_with_the_model(tmp_path):
    """local/frames_per_token.py on a data dir's shapes -> the 1st percentile -> the training
    option -> tts_conf.min_frames_per_token in the model's config -> the decoding floor."""
    import sys

    from factory import REPO, write_dataset

    write_dataset(tmp_path / "data", n=8)
    script = REPO / "egs2/libriheavy/sled/local/frames_per_token.py"
    out = tmp_path / "frames_per_token.json"
    subprocess.run([sys.executable, script, tmp_path / "data/text_shape", tmp_path / "data/speech_shape", out],
                   check=True, capture_output=True)
    stats = json.loads(out.read_text())
    text_lengths = [int(line.split()[1]) for line in (tmp_path / "data/text_shape").read_text().splitlines()]
    frames = [int(line.split()[1].split(",")[0]) for line in (tmp_path / "data/speech_shape").read_text().splitlines()]
    ratios = np.array(frames) / np.array(text_lengths)
    assert stats == dict(p01=round(float(np.percentile(ratios, 1)), 4), median=round(float(np.median(ratios)), 4),
                         utterances=8)
    opts = subprocess.run([sys.executable, script, "--opts", out], check=True, capture_output=True, text=True)
    assert opts.stdout.split() == ["--tts_conf", f"min_frames_per_token={stats['p01']}"]
    from espnet2_sled.decode_report import frames_per_token_floor
    from espnet2_sled.tasks.sled import SLEDTask
    from espnet2_sled.tts.sled import SLED
    from factory import TINY

    args = SLEDTask.get_parser().parse_args(["--tts", "sled", *opts.stdout.split()])
    model = SLED(20, 8, **TINY, **args.tts_conf)  # as stage 5 builds it: the value lands in its config
    assert model.config.min_frames_per_token == stats["p01"]
    assert frames_per_token_floor(model.config.min_frames_per_token, 75.0) == (
        0.5 * stats["p01"], f"half the 1st percentile of its training data, {stats['p01']:.2f}")
