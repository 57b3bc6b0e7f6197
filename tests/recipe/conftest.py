import shutil
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "libriheavy" / "sled"


@pytest.fixture(scope="session")
def recipe_dir() -> Path:
    return RECIPE


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")
