"""espnet2_sled: SLED-TTS for ESPnet.

Importing the package is cheap and imports no ESPnet: the math lives in
``espnet2_sled.modules``, the latent spaces in ``espnet2_sled.latent``. ESPnet learns
``tts: sled`` (and token type ``byte_bpe``) from ``espnet2_sled.registry``, which every
ESPnet-facing entry point imports (``tasks``, ``text2speech``, ``bin``).
"""

from espnet2_sled.no_downloads import defer_downloading_imports

# Before anything imports ESPnet (whose g2p_en import would call nltk.download); cheap.
defer_downloading_imports()

__version__ = "0.1.0"
__all__ = ["SLED"]


def __getattr__(name):
    # ``espnet2_sled.SLED`` still works, but loads the ESPnet glue only when asked for.
    if name == "SLED":
        from espnet2_sled.tts.sled import SLED

        return SLED
    raise AttributeError(f"module 'espnet2_sled' has no attribute {name!r}")
