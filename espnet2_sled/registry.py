"""Registers SLED with ESPnet: ``tts: sled``, token type ``byte_bpe`` and cleaner ``sled_english``.

Importing this module is what makes ESPnet's own machinery know SLED; it imports ESPnet's
TTS task stack (seconds), so only the ESPnet-facing entry points import it: ``tasks/sled.py``
(also in the workers a multi-GPU launch spawns), ``text2speech.py`` and ``bin/``. To use
ESPnet's tools directly with a SLED model, import it first::

    import espnet2_sled.registry  # noqa: F401
    from espnet2.bin.tts_inference import Text2Speech
    tts = Text2Speech.from_pretrained("exp/sled/sled.zip")

``import espnet2_sled`` and its math (``espnet2_sled.modules``, ``espnet2_sled.latent``,
``espnet2_sled.streaming``) never import ESPnet. Importing this module twice is harmless.
"""

from espnet2.tasks.tts import tts_choices
from espnet2.tts.abs_tts import AbsTTS

from espnet2_sled.text_frontend import install_text_cleaner
from espnet2_sled.tts.sled import SLED
from espnet2_sled.upstream.tokenizer import install_token_type

# ClassChoices type-checks only at construction, so check here before adding the key.
assert issubclass(SLED, AbsTTS)
tts_choices.classes.setdefault("sled", SLED)
# ESPnet has no hook for token types: teach its preprocessor (built through TTSTask, also by
# ESPnet's Text2Speech) the released checkpoints' byte-level BPE (token_type: byte_bpe);
# every other type is left to ESPnet unchanged.
install_token_type()
# ... and the English text front end (cleaner: sled_english, espnet2_sled/text_frontend.py).
install_text_cleaner()
