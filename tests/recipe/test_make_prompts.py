"""local/make_prompts.py: clone prompts come from another utterance of the same speaker with
edge silence trimmed; continuation prompts are the first seconds of the utterance itself."""

import subprocess
import sys

import numpy as np
import soundfile as sf


def write_data(root, rate=16000):
    """Two speakers; utterances are 0.5 s silence + 1 s tone + 0.8 s silence."""
    root.mkdir()
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)
    audio = np.concatenate([np.zeros(rate // 2), tone, np.zeros(int(0.8 * rate))]).astype(np.float32)
    rows = {"a1": "A", "a2": "A", "b1": "B"}
    for utt in rows:
        sf.write(root / f"{utt}.wav", audio, rate)
    (root / "wav.scp").write_text("".join(f"{u} {root / u}.wav\n" for u in rows))
    (root / "text").write_text("".join(f"{u} Words of {u}.\n" for u in rows))
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in rows.items()))


def run(recipe_dir, *args):
    return subprocess.run([sys.executable, str(recipe_dir / "local" / "make_prompts.py"), *map(str, args)],
                          capture_output=True, text=True)


def table(path):
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines())


def test_clone_prompts_are_trimmed_and_from_the_same_speaker(recipe_dir, tmp_path):
    write_data(tmp_path / "data")
    out = tmp_path / "clone"
    proc = run(recipe_dir, "--mode", "clone", tmp_path / "data", out)
    assert proc.returncode == 0, proc.stderr
    assert table(out / "prompt_utt") == {"a1": "a2", "a2": "a1"}  # b1's speaker has one utterance
    assert table(out / "prompt_text")["a1"] == "Words of a2."
    audio, rate = sf.read(table(out / "prompt_wav.scp")["a1"])
    assert rate == 16000 and abs(len(audio) / rate - 1.1) < 0.03  # 1 s of tone + 2 x 0.05 s margin

    untrimmed = tmp_path / "untrimmed"
    assert run(recipe_dir, "--mode", "clone", "--trim_db", "0", tmp_path / "data", untrimmed).returncode == 0
    audio, _ = sf.read(table(untrimmed / "prompt_wav.scp")["a1"])
    assert len(audio) == int(2.3 * 16000)


def test_continuation_prompt_is_the_start_of_the_utterance(recipe_dir, tmp_path):
    write_data(tmp_path / "data")
    out = tmp_path / "cont"
    assert run(recipe_dir, "--mode", "continuation", "--seconds", "1.0", tmp_path / "data", out).returncode == 0
    assert table(out / "prompt_utt") == {"a1": "a1", "a2": "a2", "b1": "b1"}
    audio, _ = sf.read(table(out / "prompt_wav.scp")["b1"])
    assert len(audio) == 16000
    proc = run(recipe_dir, "--mode", "continuation", "--seconds", "5", tmp_path / "data", tmp_path / "none")
    assert proc.returncode != 0 and "shorter than 5.0" in proc.stderr
