"""local/generate_sentences.py: the grammar that adds training text to the mini corpus."""

import re
import subprocess
import sys

import pytest


@pytest.fixture()
def gen(recipe_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(recipe_dir / "local"))
    import generate_sentences

    return generate_sentences


def test_distinct_deterministic_cased_punctuated(gen):
    a = gen.generate(300, seed=3)
    assert a == gen.generate(300, seed=3) and a != gen.generate(300, seed=4)
    assert len(set(a)) == 300
    for s in a:
        assert re.fullmatch(r"[A-Z][A-Za-z ,']*[a-z][.?]", s), s
        assert "  " not in s


def test_exclude_is_respected(gen):
    first = gen.generate(50, seed=0)
    again = gen.generate(50, seed=0, exclude=first[:25])
    assert not set(again) & set(first[:25]) and len(set(again)) == 50


def test_cli_writes_lines_and_honours_exclude(recipe_dir, tmp_path):
    script = recipe_dir / "local" / "generate_sentences.py"
    first = subprocess.run([sys.executable, str(script), "5", "--seed", "1"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(first) == 5
    (tmp_path / "ex.txt").write_text("\n".join(first[:2]) + "\n")
    again = subprocess.run([sys.executable, str(script), "5", "--seed", "1", "--exclude", str(tmp_path / "ex.txt")],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(again) == 5 and not set(again) & set(first[:2])


def test_a_count_beyond_the_grammar_is_a_clear_error(gen, monkeypatch):
    for name in ("SUBJECTS", "PLACES", "TIMES", "ENDINGS"):
        monkeypatch.setattr(gen, name, getattr(gen, name)[:1])
    monkeypatch.setattr(gen, "PREDICATES", gen.PREDICATES[:1])
    possible = set(gen.generate(6, seed=0))  # 6 sentence forms x 1 choice each
    assert len(possible) == 6
    with pytest.raises(ValueError, match="cannot give 7"):
        gen.generate(7, seed=0)
