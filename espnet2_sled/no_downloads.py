"""Importing ESPnet must not reach for the network.

``espnet2.tasks.tts`` imports ``espnet2.text.phoneme_tokenizer``, which imports ``g2p_en``;
``g2p_en`` calls ``nltk.download`` at import time when its NLTK data (cmudict, the
perceptron tagger) is not installed. Every SLED entry point imports ESPnet, so every decode
tried to download at start-up, wherever and however it was launched.

ESPnet touches ``g2p_en`` only when a ``g2p_en`` phonemizer is actually used (``--g2p
g2p_en``), so until then ``g2p_en`` is a stand-in module: ``import g2p_en`` binds it, and the
first access to a public name (``g2p_en.G2p``) imports the real package and fills the
stand-in from it. Dunder look-ups (``__file__``, which ``inspect`` and others read on every
module in ``sys.modules``) are answered without importing. Nothing is patched; a config that
really uses ``g2p_en`` gets the real module as before.
"""

import importlib
import importlib.util
import sys
import types


def defer_import(name: str) -> None:
    """Make ``import name`` side-effect free until a public attribute of it is first used."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = types.ModuleType(name, f"stand-in for {name}; imported on first use (espnet2_sled.no_downloads)")
    stand_in.__spec__, stand_in.__loader__, stand_in.__file__ = spec, spec.loader, spec.origin
    if spec.submodule_search_locations is not None:
        stand_in.__path__ = list(spec.submodule_search_locations)

    def __getattr__(attr: str):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        real = importlib.import_module(name)
        stand_in.__dict__.update({k: v for k, v in real.__dict__.items() if k != "__getattr__"})
        return getattr(real, attr)

    stand_in.__getattr__ = __getattr__
    sys.modules[name] = stand_in


def defer_downloading_imports() -> None:
    defer_import("g2p_en")  # nltk.download at import time
