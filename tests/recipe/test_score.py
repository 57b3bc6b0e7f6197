"""Stage 8 scorer on a few flite utterances: numbers that would be wrong if it were broken."""

import json
import subprocess

import pytest

from recipe_helpers import need

pytestmark = need("flite")

SENTENCES = {
    "u1": "The kettle clicked off just as the phone rang.",
    "u2": "Please leave your muddy boots by the back door.",
}
OTHER = {  # wrong transcripts for the same audio
    "u1": "Seven green bottles are standing on the wall today.",
    "u2": "My neighbour sold his bicycle to buy a piano.",
}


@pytest.fixture(scope="module")
def flite_wavs(tmp_path_factory):
    """{voice: {utt: path}} for slt (female) and awb (male), 16 kHz."""
    root = tmp_path_factory.mktemp("flite")
    wavs = {}
    for voice in ("slt", "awb"):
        for utt, text in SENTENCES.items():
            path = root / f"{voice}_{utt}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(path)], check=True)
            wavs.setdefault(voice, {})[utt] = str(path)
    return wavs


@pytest.fixture(scope="module")
def score_module():
    from espnet2_sled.bin import score

    return score


def entries(paths):
    return {utt: (p, 0.0, None) for utt, p in paths.items()}


def test_normalize_text(score_module):
    assert score_module.normalize_text("Don't STOP, \u201cHenry\u201d -- it's 'fine'!") == "don't stop henry it's fine"


def test_wer_low_for_matching_text_high_for_mismatched(score_module, flite_wavs):
    hyp = entries(flite_wavs["slt"])
    right, _ = score_module.score(hyp, SENTENCES, metrics=("wer",), progress=False)
    wrong, _ = score_module.score(hyp, OTHER, metrics=("wer",), progress=False)
    assert right["wer"]["n"] == 2 and right["wer"]["words"] == 18
    assert right["wer"]["value"] < 0.35
    assert wrong["wer"]["value"] > 0.75


def test_speaker_similarity_same_voice_above_different_voice(score_module, flite_wavs):
    hyp = entries({"u1": flite_wavs["slt"]["u1"]})
    same, per_utt = score_module.score(hyp, ref_audio=entries({"u1": flite_wavs["slt"]["u2"]}),
                                       metrics=("spk_sim",), progress=False)
    other, _ = score_module.score(hyp, ref_audio=entries({"u1": flite_wavs["awb"]["u2"]}),
                                  metrics=("spk_sim",), progress=False)
    assert same["spk_sim"]["value"] > 0.75
    assert same["spk_sim"]["value"] > other["spk_sim"]["value"] + 0.15
    assert per_utt["u1"]["spk_sim"] == pytest.approx(same["spk_sim"]["value"])


def test_cli_writes_reports_with_dnsmos_and_rtf(score_module, flite_wavs, tmp_path):
    wav_scp = tmp_path / "wav.scp"
    wav_scp.write_text(f"u1 {flite_wavs['slt']['u1']}\n")
    text = tmp_path / "text"
    text.write_text(f"u1 {SENTENCES['u1']}\n")
    timing = tmp_path / "timing.jsonl"
    # u2 produced no audio (sled_inference --allow_empty_output logs it with its error): no
    # audio to time, so it leaves the RTF alone (its missing wav is scored as deleted words)
    timing.write_text(json.dumps(dict(utt_id="u1", audio_seconds=2.0, compute_seconds=1.0,
                                      first_audio_seconds=0.25)) + "\n"
                      + json.dumps(dict(utt_id="u2", error="empty_output", message="no audio",
                                        report=dict(frames=0))) + "\n")
    out = tmp_path / "scores"
    score_module.main(["--wav_scp", str(wav_scp), "--text", str(text), "--timing", str(timing),
                       "--metrics", "wer,dnsmos,rtf", "--output_dir", str(out)])
    summary = json.loads((out / "scores.json").read_text())
    assert summary["rtf"]["value"] == pytest.approx(0.5)
    assert summary["first_audio_seconds"]["value"] == pytest.approx(0.25)
    assert 1.0 <= summary["dnsmos_ovrl"]["value"] <= 5.0
    md = (out / "scores.md").read_text()
    assert "| metric | value | n |" in md and "real-time factor" in md
    assert (out / "utt_scores.tsv").read_text().startswith("utt_id\t")


def test_segments_select_the_slice(score_module, flite_wavs, tmp_path):
    """Scoring ground truth from a long recording reads only the segment's samples."""
    import numpy as np
    import soundfile as sf

    a, rate = sf.read(flite_wavs["slt"]["u1"], dtype="float32")
    b, _ = sf.read(flite_wavs["slt"]["u2"], dtype="float32")
    gap = np.zeros(rate // 2, np.float32)
    sf.write(tmp_path / "long.wav", np.concatenate([a, gap, b]), rate)
    (tmp_path / "wav.scp").write_text(f"rec {tmp_path / 'long.wav'}\n")
    start = (len(a) + len(gap)) / rate
    (tmp_path / "segments").write_text(f"u2 rec {start!r} {start + len(b) / rate!r}\n")
    table = score_module.read_audio_table(tmp_path / "wav.scp", None, tmp_path / "segments")
    audio = score_module.load_audio(table["u2"])
    np.testing.assert_array_equal(audio, score_module.load_audio((flite_wavs["slt"]["u2"], 0.0, None)))
    _, from_slice = score_module.score(table, SENTENCES, metrics=("wer",), progress=False)
    _, from_file = score_module.score(entries({"u2": flite_wavs["slt"]["u2"]}), SENTENCES, metrics=("wer",),
                                      progress=False)
    assert from_slice["u2"]["hyp"] == from_file["u2"]["hyp"]


def test_missing_audio_counts_as_deleted_words(score_module, flite_wavs):
    hyp = entries({"u1": flite_wavs["slt"]["u1"]})
    alone, _ = score_module.score(hyp, SENTENCES, metrics=("wer",), progress=False)
    with_missing, per_utt = score_module.score(hyp, SENTENCES, metrics=("wer",), progress=False, missing=["u2"])
    assert with_missing["missing_audio"] == {"value": 1.0, "n": 2}
    assert with_missing["wer"]["words"] == 18
    errors_u1 = alone["wer"]["value"] * 9
    assert with_missing["wer"]["value"] == pytest.approx((errors_u1 + 9) / 18)
    assert per_utt["u2"]["wer"] == 1.0


def test_empty_audio_counts_as_missing(score_module, flite_wavs, tmp_path):
    import soundfile as sf

    empty = tmp_path / "empty.wav"
    sf.write(empty, [], 24000)
    hyp = entries({"u1": flite_wavs["slt"]["u1"], "u2": str(empty)})
    summary, per_utt = score_module.score(hyp, SENTENCES, metrics=("wer", "dnsmos"), progress=False)
    assert summary["missing_audio"] == {"value": 1.0, "n": 2}
    assert per_utt["u2"] == {"wer": 1.0, "hyp": ""}
    assert summary["dnsmos_ovrl"]["n"] == 1
