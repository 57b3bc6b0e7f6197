"""Issue 11 item 2: utterances over the position limit are dropped *before* stage 4 collects
stats (collect_stats, like training, refuses them, so one over-long cut used to stop the
stage), the count is printed, and the model-side check is still the last guard."""

import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from espnet2_sled.tasks.sled import SLEDInputCheck

REPO = Path(__file__).resolve().parents[2]
LONG = {"u007": 600, "u031": 530}  # frames: over tts_conf.max_positions (512) of conf/debug.yaml


@pytest.fixture
def recipe_with_latents(recipe_dir, tmp_path):
    """The real recipe scripts; data/tiny/text and stage-2-style latents of 8 dims."""
    for name in ("sled.sh", "run.sh", "path.sh", "cmd.sh", "db.sh", "utils", "local", "conf"):
        (tmp_path / name).symlink_to(recipe_dir / name)
    text = tmp_path / "data" / "tiny" / "text"
    text.parent.mkdir(parents=True)
    words = "the cat sat on a mat while dogs ran to big red barns near old green hills".split()
    keys = [f"u{i:03d}" for i in range(40)]
    text.write_text("".join(f"{k} {' '.join(words[i % 7:i % 7 + 6]).capitalize()}.\n" for i, k in enumerate(keys)))
    latents = tmp_path / "dump" / "latents" / "tiny"
    latents.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = {k: LONG.get(k, 20 + i % 9) for i, k in enumerate(keys)}
    with kaldiio.WriteHelper(f"ark,scp:{latents}/feats.ark,{latents}/feats.scp") as writer:
        for k in keys:
            writer[k] = rng.normal(size=(frames[k], 8)).astype(np.float32)
    (latents / "speech_shape").write_text("".join(f"{k} {frames[k]},8\n" for k in keys))
    return tmp_path


def test_stage4_filters_over_long_utterances_before_collecting_stats(recipe_with_latents):
    cwd = recipe_with_latents
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"], OMP_NUM_THREADS="4")
    r = subprocess.run(["./sled.sh", "--python", sys.executable, "--train_set", "tiny", "--valid_set", "tiny",
                        "--stage", "3", "--stop_stage", "4", "--nbpe", "40", "--nj", "2",
                        "--train_config", str(REPO / "conf" / "debug.yaml")],
                       cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "nltk" not in r.stderr.lower(), [line for line in r.stderr.splitlines() if "nltk" in line.lower()][:5]
    # the count, printed for train and for valid, before stats (and 0 dropped after)
    assert r.stderr.count("filter_by_length: kept 38 of 40 utterances; dropped 2 longer than 512 positions") == 2
    assert r.stderr.count("filter_by_length: kept 38 of 38 utterances; dropped 0 longer") == 2
    stats = cwd / "exp" / "sled_stats_encodec_bpe_unigram40"
    for name in ("train", "valid"):
        collected = [line.split()[0] for line in (stats / name / "text_shape").read_text().splitlines()]
        assert len(collected) == 38 and not set(LONG) & set(collected)
        for shape in ("text_shape.bpe", "speech_shape.filtered"):
            assert len((stats / name / shape).read_text().splitlines()) == 38
    replay = (cwd / "exp/run_logs/stage4.run.sh").read_text()
    assert "local/count_tokens.py" in replay
    # two stats jobs share the cores: each gets cores / 2 threads (at least 1, at most the 4 set)
    threads = min(4, max(1, len(os.sched_getaffinity(0)) // 2))
    assert f"env OMP_NUM_THREADS={threads} run.pl JOB=1:2 " in replay, [x for x in replay.splitlines() if "run.pl" in x]


def test_model_side_check_is_still_the_last_guard():
    check = SLEDInputCheck(None, 8, max_positions=512)
    with pytest.raises(
        ValueError, match="utterance 'u007': 5 tokens \\+ 2 markers \\+ 600 frames exceed max_positions 512"
    ):
        check("u007", {"text": np.arange(5), "speech": np.zeros((600, 8), dtype=np.float32)})
