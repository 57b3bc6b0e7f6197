"""SLEDTask: ESPnet's TTSTask with SLED's input checks; the only place that knows task machinery.

Importing ``espnet2_sled`` first matters: ESPnet's multi-GPU launch spawns workers that
unpickle ``SLEDTask.main_worker`` and so import this module, which registers ``sled``.
"""

import argparse
from typing import Callable, Dict, Optional

import numpy as np

import espnet2_sled  # noqa: F401  (registers tts: sled, also in spawned workers)
from espnet2.tasks.tts import TTSTask

from espnet2_sled.text_frontend import CLEANER
from espnet2_sled.upstream.tokenizer import BYTE_BPE, install_token_type

# token_type byte_bpe (the released checkpoints' RoBERTa BPE): ESPnet's Text2Speech builds
# its preprocessor through TTSTask, so the token type is made known where ESPnet looks it up.
install_token_type()


class SLEDInputCheck:
    """Wraps ESPnet's preprocessor; rejects bad utterances by name at load time."""

    def __init__(self, inner: Optional[Callable], odim: Optional[int], max_positions: int):
        self.inner, self.odim, self.max_positions = inner, odim, max_positions

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raw_text = data.get("text")
        if isinstance(raw_text, str) and not raw_text.strip():
            raise ValueError(f"text is empty for utterance '{uid}'")
        if self.inner is not None:
            data = self.inner(uid, data)
        text, speech = data.get("text"), data.get("speech")
        if text is not None and len(text) == 0:
            raise ValueError(f"text is empty after tokenization for utterance '{uid}' (text: {raw_text!r})")
        if speech is not None and speech.ndim == 2:
            if self.odim is not None and speech.shape[1] != self.odim:
                raise ValueError(
                    f"latents of utterance '{uid}' are {speech.shape[1]} wide but --odim is {self.odim}; "
                    "extract all latents with the same latent space"
                )
            if speech.shape[0] == 0:
                raise ValueError(f"latents of utterance '{uid}' have no frames")
            if not np.isfinite(speech).all():
                raise ValueError(f"latents of utterance '{uid}' contain NaN or Inf; re-extract them")
            if text is not None and len(text) + 2 + speech.shape[0] > self.max_positions:
                raise ValueError(
                    f"utterance '{uid}': {len(text)} tokens + 2 markers + {speech.shape[0]} frames exceed "
                    f"max_positions {self.max_positions}; filter it out (recipe stage 4)"
                )
        return data


class SLEDTask(TTSTask):
    _building_from_checkpoint = False

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        model = super().build_model(args)
        if not cls._building_from_checkpoint:
            model.tts.load_latent_weights()  # training: the codec file; decoding: the checkpoint
        return model

    @classmethod
    def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
        cls._building_from_checkpoint = model_file is not None
        try:
            return super().build_model_from_file(config_file, model_file, device)
        finally:
            cls._building_from_checkpoint = False

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        for action in parser._actions:
            if action.dest == "token_type" and action.choices is not None and BYTE_BPE not in action.choices:
                action.choices = [*action.choices, BYTE_BPE]
                action.help += f"; {BYTE_BPE}: byte-level BPE from the tokenizer.json given as --bpemodel"
            if action.dest == "cleaner" and action.choices is not None and CLEANER not in action.choices:
                action.choices = [*action.choices, CLEANER]  # espnet2_sled/text_frontend.py

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        inner = super().build_preprocess_fn(args, train)
        tts_conf = getattr(args, "tts_conf", None) or {}
        return SLEDInputCheck(inner, getattr(args, "odim", None), int(tts_conf.get("max_positions", 2048)))
