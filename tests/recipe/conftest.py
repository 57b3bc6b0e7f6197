from pathlib import Path

import pytest

from recipe_helpers import RECIPE


@pytest.fixture(scope="session")
def recipe_dir() -> Path:
    return RECIPE
