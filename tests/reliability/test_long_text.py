"""Long text (issue #11, item 6): cut at sentences, spoken piece by piece and joined, in the
Python API, the decoding CLI and the streaming session; output cut at the position limit warns."""

import warnings

import numpy as np
import pytest
import torch
from tiny_models import HOP, load

SENTENCES = [
    "The kettle clicked off just as the phone rang, and we missed the last bus home.",
    "Mr. Smith keeps his buttons in an old biscuit tin by the back door.",
    "Could you pass me the salt, please?",
    "Rain fell on the green hills all night; by morning the river had risen.",
]
SHORT = "the cat sat on the mat."
TINY = "the cat."  # fits 64 positions: 8 tokens + 2 + 54 frames


def paragraph(chars: int) -> str:
    out, i = [], 0
    while sum(len(s) + 1 for s in out) < chars:
        out.append(SENTENCES[i % len(SENTENCES)])
        i += 1
    return " ".join(out)


# ---------------------------------------------------------------- the splitter
def test_split_text_prefers_sentences_then_clauses_then_words():
    from espnet2_sled.text_split import split_text

    text = "  One. Two, three four. Mr. Smith said: no!  Five\n"
    assert split_text(text, lambda p: True) == [text.strip()]
    assert split_text(text, lambda p: len(p) <= 12) == ["One.", "Two,", "three four.", "Mr. Smith", "said:", "no!",
                                                         "Five"]
    assert split_text(text, lambda p: len(p) <= 25) == ["One. Two, three four.", "Mr. Smith said: no!  Five"]
    long_sentence = "alpha beta gamma, delta epsilon zeta eta theta iota, kappa."
    pieces = split_text(long_sentence, lambda p: len(p) <= 20)
    assert pieces == ["alpha beta gamma,", "delta epsilon zeta", "eta theta iota,", "kappa."]
    with pytest.raises(ValueError, match="the word 'https://example.com/a/very/long/url' alone does not fit"):
        split_text("see https://example.com/a/very/long/url now", lambda p: len(p) <= 20)
    assert split_text(" \n ", lambda p: True) == []


def test_pieces_fit_and_cover_the_text(offline_exp):
    _, exp = offline_exp
    t2s = load(exp)
    text = paragraph(5000)
    pieces = t2s.split_text(text)
    fits = t2s.piece_fits()
    assert len(pieces) > 20 and all(fits(p) for p in pieces)
    assert " ".join(pieces).split() == text.split()  # every word once, in order
    assert all(p.endswith((".", "?")) for p in pieces)  # these sentences fit alone: cut only at sentence ends
    assert t2s.split_text(SHORT) == [SHORT]


# ---------------------------------------------------------------- offline API and CLI
def test_api_speaks_a_5000_character_paragraph_whole(offline_exp):
    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)
    text = paragraph(5000)
    assert len(text) >= 5000
    pieces = t2s.split_text(text)
    out = t2s(text, seed=0, max_frames=3)
    assert out["piece_frames"].tolist() == [3] * len(pieces)
    assert out["feat_gen"].shape == (3 * len(pieces), 8) and out["wav"].shape == (3 * len(pieces) * HOP,)
    assert torch.isfinite(out["wav"]).all()
    # Each piece is what the model makes of that piece alone (batched rows are independent).
    alone = t2s(pieces[1], noise=torch.Generator().manual_seed(5), max_frames=3)["feat_gen"]
    assert alone.shape == (3, 8)
    # Voice-prompted: every piece is read after the prompt's transcript.
    prompt = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    cloned = t2s(text[:1000], prompt_text="a low hum.", prompt_latents=prompt, seed=0, max_frames=2)
    assert cloned["feat_gen"].shape[0] == 2 * len(t2s.split_text(text[:1000], "a low hum.", 10))


def test_short_text_decodes_exactly_as_before(offline_exp):
    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)
    out = t2s(SHORT, seed=3, max_frames=8)
    direct = t2s.tts.inference(t2s.tokenize(SHORT), seed=3, max_frames=8, stop_threshold=1.5)  # the model, no splitting
    assert "piece_frames" not in out and torch.equal(out["feat_gen"], direct["feat_gen"])


def test_output_at_the_position_limit_warns(offline_exp):
    from espnet2_sled.long_text import CutOffWarning

    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5, max_positions=64)  # never stops: runs until the positions are used up
    with pytest.warns(CutOffWarning, match=r"text: output ended after 54 frames because the model's 64 positions"):
        out = t2s(TINY, seed=0)
    assert out["feat_gen"].shape[0] == 64 - (len(t2s.tokenize(TINY)) + 2) == 54
    with warnings.catch_warnings():
        warnings.simplefilter("error", CutOffWarning)
        t2s(TINY, seed=0, max_frames=5)  # the user's cap is not a cut-off
        # stopped by the stop head (at its first frame, kept: no frame at all is an error, issue #21)
        load(exp, stop_threshold=0.0, max_positions=64)(TINY, seed=0, keep_stop_frame=True)


def test_cli_decodes_long_and_short_lines_in_one_batch(offline_exp, tmp_path, caplog):
    import json

    from espnet2.fileio.npy_scp import NpyScpReader

    from espnet2_sled.bin import sled_inference

    _, exp = offline_exp
    text = paragraph(2000)
    (tmp_path / "text").write_text(f"u1 {text}\nu2 {SHORT}\n")
    sled_inference.main([
        "--output_dir", str(tmp_path / "out"), "--train_config", str(exp / "config.yaml"),
        "--model_file", str(exp / "1epoch.pth"), "--data_path_and_name_and_type", f"{tmp_path}/text,text,text",
        "--max_frames", "3", "--stop_threshold", "1.5", "--batch_size", "2",
    ])
    timing = {t["utt_id"]: t for t in map(json.loads, (tmp_path / "out/timing.jsonl").read_text().splitlines())}
    t2s = load(exp, stop_threshold=1.5)
    n = len(t2s.split_text(text))
    assert n > 1 and timing["u1"]["pieces"] == n and timing["u1"]["frames"] == 3 * n
    assert timing["u2"]["frames"] == 3 and "pieces" not in timing["u2"]
    # The short row is decoded as it was before: its own noise stream (seed 0 + index 1).
    feats = NpyScpReader(tmp_path / "out/norm/feats.scp")
    noise = torch.randn(3, t2s.tts.lm.noise_dim, generator=torch.Generator().manual_seed(1))[None]
    assert np.allclose(feats["u2"], t2s(SHORT, noise=noise, max_frames=3)["feat_gen"].numpy(), atol=1e-6)

    # --streaming true: the same pieces, through stream()
    (tmp_path / "text_s").write_text(f"u1 {text[:500]}\n")
    sled_inference.main([
        "--output_dir", str(tmp_path / "out_s"), "--train_config", str(exp / "config.yaml"),
        "--model_file", str(exp / "1epoch.pth"), "--data_path_and_name_and_type", f"{tmp_path}/text_s,text,text",
        "--max_frames", "2", "--stop_threshold", "1.5", "--streaming", "true", "--stream_text_by", "word",
    ])
    timing = json.loads((tmp_path / "out_s/timing.jsonl").read_text())
    n = len(t2s.split_text(text[:500]))
    assert n > 1 and timing["pieces"] == n and timing["frames"] == 2 * n
    assert timing["tokens_read"] == timing["tokens_total"] and not timing["stopped_early"]


def test_cli_logs_output_cut_at_the_position_limit(offline_exp, tmp_path, caplog):
    from espnet2_sled.bin import sled_inference

    _, exp = offline_exp
    load(exp, max_positions=64)  # writes config_64.yaml: the model with 64 positions
    (tmp_path / "text").write_text(f"u1 {TINY}\n")
    sled_inference.main([
        "--output_dir", str(tmp_path / "out"), "--train_config", str(exp / "config_64.yaml"),
        "--model_file", str(exp / "1epoch.pth"), "--data_path_and_name_and_type", f"{tmp_path}/text,text,text",
        "--stop_threshold", "1.5",
    ])
    assert "u1: text: output ended after 54 frames because the model's 64 positions were used up" in caplog.text


# ---------------------------------------------------------------- streaming
def test_streaming_speaks_long_text_in_pieces(offline_exp):
    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)
    text = paragraph(800)
    session = t2s.stream(seed=0, max_frames=3)
    chunks = []
    for word in text.split(" "):
        chunks += list(session.push_text(word + " "))
    chunks += list(session.end_text())
    n = len(t2s.split_text(text))
    assert n > 1 and session.pieces == n and session.finished
    assert session.tokens_read == session.tokens_total  # all text read, in every piece
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert sum(c.frames.shape[0] for c in chunks) == 3 * n
    assert sum(c.audio.shape[0] for c in chunks) == 3 * n * HOP
    # Pushed character by character or whole: the same pieces, the same frames.
    frames = {}
    for how, pushes in (("chars", list(text[:400])), ("whole", [text[:400]])):
        session = t2s.stream(seed=1, max_frames=2)
        out = [c for piece in pushes for c in session.push_text(piece)] + list(session.end_text())
        frames[how] = torch.cat([c.frames for c in out])
        assert session.pieces == len(t2s.split_text(text[:400])) > 1
    assert torch.equal(frames["chars"], frames["whole"])
    # With a voice prompt, every piece is read after the prompt (which is not emitted).
    prompt = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    session = t2s.stream(voice_prompt=prompt, prompt_text="a low hum.", seed=0, max_frames=2)
    out = list(session.push_text(text[:400])) + list(session.end_text())
    n = len(t2s.split_text(text[:400], "a low hum.", 6))
    assert session.pieces == n > 1 and sum(c.frames.shape[0] for c in out) == 2 * n


def test_streaming_short_text_is_unchanged(offline_exp):
    """Short text through stream() gives the frames of one StreamingSession, as before."""
    from espnet2_sled.streaming import StreamingSession

    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5)
    text = "the cat sat. on the mat, then slept."
    session = t2s.stream(noise=torch.Generator().manual_seed(4), max_frames=9)
    ours = [c for w in text.split(" ") for c in session.push_text(w + " ")] + list(session.end_text())
    raw = StreamingSession(t2s.tts, lambda s: t2s.tokenize(s).tolist(), 2.0, 1.5, False, 9,
                           torch.Generator().manual_seed(4))
    before = list(raw.push_text(text)) + list(raw.end_text())
    assert session.pieces == 1
    assert torch.equal(torch.cat([c.frames for c in ours]), torch.cat([c.frames for c in before]))


def test_streaming_ends_at_the_position_limit_with_a_warning(offline_exp):
    from espnet2_sled.long_text import CutOffWarning

    _, exp = offline_exp
    t2s = load(exp, stop_threshold=1.5, max_positions=64)
    session = t2s.stream(seed=0)
    with pytest.warns(CutOffWarning, match="streaming piece 1: output ended after 54 frames"):
        chunks = list(session.push_text(TINY)) + list(session.end_text())
    frames = sum(c.frames.shape[0] for c in chunks)
    assert session.pieces == 1 and session.hit_position_limit and frames == 54  # as many as offline
