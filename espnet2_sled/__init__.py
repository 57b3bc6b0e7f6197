"""espnet2_sled: SLED-TTS for ESPnet. Importing this package registers ``tts: sled``."""

from espnet2.tasks.tts import tts_choices
from espnet2.tts.abs_tts import AbsTTS

from espnet2_sled.tts.sled import SLED

# ClassChoices type-checks only at construction, so check here before adding the key.
assert issubclass(SLED, AbsTTS)
tts_choices.classes.setdefault("sled", SLED)

__version__ = "0.1.0"
__all__ = ["SLED"]
