"""Small Kaldi-style file helpers shared by the CLIs."""

from pathlib import Path
from typing import Dict, Union


def read_table(path: Union[str, Path]) -> Dict[str, str]:
    """Kaldi-style ``key value...`` file -> {key: value}; a repeated key is an error naming the line."""
    table = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split(maxsplit=1)
            if not parts:
                continue
            if parts[0] in table:
                raise ValueError(f"{path}:{lineno}: key '{parts[0]}' appears twice")
            table[parts[0]] = parts[1] if len(parts) > 1 else ""
    return table
