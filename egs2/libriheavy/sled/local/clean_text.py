#!/usr/bin/env python3
"""Clean the text column of a Kaldi text file with the recipe's text cleaner (stage 3).

    clean_text.py --cleaner sled_english data/train/text OUT   (OUT '-': stdout)

The cleaner is ``espnet2_sled/text_frontend.py``, the one training and decoding use (the
``cleaner`` in config.yaml). It is loaded by file, so that this step does not pay for
importing ESPnet's TTS task (~10 s) through the ``espnet2_sled`` package.
"""

import importlib.util
import sys
from pathlib import Path


def load_text_frontend():
    """``espnet2_sled.text_frontend`` without importing the package (nothing is registered)."""
    package = importlib.util.find_spec("espnet2_sled")
    if package is None or package.origin is None:
        sys.exit("clean_text: espnet2_sled is not importable; source path.sh (it puts the repository on PYTHONPATH)")
    spec = importlib.util.spec_from_file_location(
        "_sled_text_frontend", Path(package.origin).parent / "text_frontend.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    load_text_frontend().main(sys.argv[1:])
