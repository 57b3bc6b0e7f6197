"""Latent spaces SLED models: audio <-> continuous frames (Encodec: 75 Hz, 24 kHz, hop 320).

``build_latent_space("encodec", weights=...)`` or ``build_latent_space("mel", n_mels=80, stack=3)``.
No ESPnet imports here: this package is usable on its own.
"""

from .base import LatentSpace, StreamingLatentDecoder
from .encodec import EncodecLatent, EncodecStreamingDecoder
from .mel import MelLatent, MelStreamingDecoder

LATENT_SPACES = {"encodec": EncodecLatent, "mel": MelLatent}


def build_latent_space(name: str, **conf) -> LatentSpace:
    """``name`` in ``LATENT_SPACES`` plus its constructor keywords, e.g.
    ``build_latent_space("encodec", weights="random")``."""
    if name not in LATENT_SPACES:
        raise ValueError(f"unknown latent space {name!r}; expected one of {sorted(LATENT_SPACES)}")
    return LATENT_SPACES[name](**conf)


__all__ = ["LatentSpace", "StreamingLatentDecoder", "EncodecLatent", "EncodecStreamingDecoder",
           "MelLatent", "MelStreamingDecoder", "LATENT_SPACES", "build_latent_space"]
