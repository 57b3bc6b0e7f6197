"""Import ``espnet2_sled`` on a machine with torch but without ESPnet's task stack (a GPU image).

The package ``__init__`` registers ``tts: sled`` with ESPnet's task registry, which pulls in
all of ESPnet's TTS task. The model code itself needs only torch plus two small ESPnet
modules (``espnet2.tts.abs_tts``, ``espnet2.torch_utils.device_funcs``). When the task stack
is missing, the package is entered without running its ``__init__``; with ESPnet installed
nothing changes. On such an image, provide those two modules by installing ESPnet's wheel
without its dependencies (``pip install --no-deps espnet==202511``; it is pure Python) or by
putting copies of them (with the ``espnet``/``espnet2`` package ``__init__`` files and
``espnet/version.txt``) on ``PYTHONPATH``, which is what the H200 runs in ``bench/results`` did.
"""

import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_importable() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        import espnet2.tasks.tts  # noqa: F401
    except ModuleNotFoundError:
        if "espnet2_sled" not in sys.modules:
            pkg = types.ModuleType("espnet2_sled")
            pkg.__path__ = [str(REPO / "espnet2_sled")]
            sys.modules["espnet2_sled"] = pkg
        print("note: ESPnet's task stack is not installed; espnet2_sled entered without registering with it")
