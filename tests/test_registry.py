"""The package and its math import without ESPnet (each case in a fresh interpreter, as a
user's process starts). That ESPnet's own tools know ``tts: sled`` once ``espnet2_sled.registry``
is imported is tested in tests/bin/test_train_and_decode.py (training CLI, pack, Text2Speech)."""

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

