"""Shared helpers for the recipe tests (a plain module: 'conftest' names clash across folders)."""

import shutil
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "egs2" / "libriheavy" / "sled"


def need(*tools):
    """Skip unless the command-line tools are installed."""
    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")
