"""The package and its math import without ESPnet; ESPnet learns ``tts: sled`` from
``espnet2_sled.registry`` (each case in a fresh interpreter, as a user's process starts)."""

import subprocess
import sys

import pytest

from factory import REPO


def run_python(code: str) -> subprocess.CompletedProcess:
    env_path = f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
    return subprocess.run([sys.executable, "-c", env_path + code], capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("module", ["espnet2_sled", "espnet2_sled.modules.sled_lm", "espnet2_sled.streaming"])
def test_import_does_not_import_espnet(module):
    result = run_python(
        f"import {module}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('espnet', 'espnet2')))\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"importing {module} imported ESPnet: {result.stdout[:500]}"


def test_registry_registers_sled_and_byte_bpe():
    result = run_python(
        "import espnet2_sled.registry\n"
        "from espnet2.tasks.tts import tts_choices\n"
        "from espnet2.train.preprocessor import build_tokenizer\n"
        "from espnet2_sled.tts.sled import SLED\n"
        "assert tts_choices.get_class('sled') is SLED\n"
        "assert build_tokenizer.knows_byte_bpe\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
