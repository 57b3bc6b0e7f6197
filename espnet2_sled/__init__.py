"""espnet2_sled: SLED-TTS for ESPnet. Importing this package registers ``tts: sled``."""

from espnet2.tasks.tts import tts_choices
from espnet2.tts.abs_tts import AbsTTS

from espnet2_sled.tts.sled import SLED
from espnet2_sled.text_frontend import install_text_cleaner
from espnet2_sled.upstream.tokenizer import install_token_type

# ClassChoices type-checks only at construction, so check here before adding the key.
assert issubclass(SLED, AbsTTS)
tts_choices.classes.setdefault("sled", SLED)
# ESPnet has no hook for token types: teach its preprocessor the released checkpoints'
# byte-level BPE (token_type: byte_bpe); every other type is left to ESPnet unchanged.
install_token_type()
# ... and the English text front end (cleaner: sled_english, espnet2_sled/text_frontend.py).
install_text_cleaner()

__version__ = "0.1.0"
__all__ = ["SLED"]
