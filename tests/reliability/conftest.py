import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import offline_exp  # noqa: F401  (fixture: a tiny trained mel model, decoding-input tests)

from espnet2_sled.bin import sled_train
from factory import train_args, write_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A debug-config model trained for one step through ESPnet's trainer: (data dir, exp dir)."""
    root = tmp_path_factory.mktemp("reliability")
    data, exp = root / "data", root / "exp"
    write_dataset(data)
    sled_train.main(train_args(data, exp, extra=["--max_epoch", "1", "--num_iters_per_epoch", "1"]))
    return data, exp


@pytest.fixture
def run_cli(tmp_path):
    """``python -m MODULE ARGS`` in a fresh process, launched the way a user would (no NLTK_DATA,
    a HOME without nltk_data): returns the CompletedProcess."""
    def run(module, *args):
        env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
        env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=600)
    return run
