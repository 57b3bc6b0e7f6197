"""SLEDTask: ESPnet's TTSTask with SLED's input checks; the only place that knows task machinery.

Importing ``espnet2_sled.registry`` here matters: ESPnet's multi-GPU launch spawns workers
that unpickle ``SLEDTask.main_worker`` and so import this module, which registers ``sled``
(and token type ``byte_bpe``, which ESPnet's Text2Speech also looks up through TTSTask).
"""

import argparse
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from espnet2.tasks.tts import TTSTask
from espnet2.train.trainer import Trainer

import espnet2_sled.registry  # noqa: F401  (registers tts: sled and byte_bpe, also in spawned workers)
from espnet2_sled.checkpoint import load_init_param, load_model_file, load_state_strictly, read_resume_file
from espnet2_sled.modules.config import tts_conf_defaults
from espnet2_sled.text_frontend import CLEANER
from espnet2_sled.upstream.tokenizer import BYTE_BPE


class LongTextWarningOnce(logging.Filter):
    """ESPnet's preprocessor warns "The length of the text output exceeds 500, which may cause
    OOM on the GPU" on every text of 500+ tokens: a long text is tokenized once per piece and
    per fit test, so one text printed it 4-6 times. Said once per process here (ESPnet's
    code is left alone; the filter is on the root logger only while our preprocessor runs)."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("The length of the text output exceeds 500"):
            return True
        if LongTextWarningOnce.said:
            return False
        LongTextWarningOnce.said = True
        return True


class SLEDInputCheck:
    """Wraps ESPnet's preprocessor; rejects bad utterances by name at load time."""

    long_text_once = LongTextWarningOnce()

    def __init__(self, inner: Optional[Callable], odim: Optional[int], max_positions: int):
        self.inner, self.odim, self.max_positions = inner, odim, max_positions

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raw_text = data.get("text")
        if isinstance(raw_text, str) and not raw_text.strip():
            raise ValueError(f"text is empty for utterance '{uid}'")
        if self.inner is not None:
            root = logging.getLogger()
            root.addFilter(self.long_text_once)
            try:
                data = self.inner(uid, data)
            finally:
                root.removeFilter(self.long_text_once)
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


class SLEDTrainer(Trainer):
    """ESPnet's trainer, resuming from ``checkpoint.pth`` without unpickling code."""

    @staticmethod
    def resume(checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu: int = 0, strict: bool = True):
        device = f"cuda:{torch.cuda.current_device()}" if ngpu > 0 else "cpu"
        states = read_resume_file(checkpoint, device)
        if strict:
            load_state_strictly(model, states["model"], str(checkpoint))
        else:  # ESPnet's adapters save only their own weights
            model.load_state_dict(states["model"], strict=False)
        reporter.load_state_dict(states["reporter"])
        for optimizer, state in zip(optimizers, states["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(schedulers, states["schedulers"]):
            if scheduler is not None:
                scheduler.load_state_dict(state)
        if scaler is not None and states["scaler"] is not None:
            scaler.load_state_dict(states["scaler"])
        logging.info(f"The training was resumed using {checkpoint}")


class SLEDTask(TTSTask):
    trainer = SLEDTrainer
    _building_from_checkpoint = False
    _init_param: List[str] = []

    @classmethod
    def get_parser(cls):
        """ESPnet's parser, refusing options shortened to a prefix (``--max_epo 3`` is an error)."""
        parser = super().get_parser()
        parser.allow_abbrev = False
        return parser

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        # ESPnet reads --init_param after build_model by unpickling the whole file (any object) and a
        # lax key check; build_model reads it here instead (weights only, every key checked)
        # and leaves ESPnet's loop nothing to load.
        cls._init_param, args.init_param = list(getattr(args, "init_param", None) or []), []
        if getattr(args, "use_deepspeed", False):
            cls.trainer = Trainer  # ESPnet swaps in its DeepSpeedTrainer only for the plain one
        try:
            super().main_worker(args)
        finally:
            cls._init_param = []

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        model = super().build_model(args)
        if not cls._building_from_checkpoint:
            model.tts.load_latent_weights()  # training: the codec file; decoding: the checkpoint
        if cls._init_param and not getattr(args, "collect_stats", False):
            for init_param in cls._init_param:
                logging.info(f"Loading pretrained params from {init_param} (weights only, keys checked)")
                # the frozen latent space may be absent (e.g. an import with --latent none):
                # training filled it from its codec file above
                load_init_param(model, init_param, getattr(args, "ignore_init_mismatch", False),
                                allow_missing=("tts.latent_space.",))
        return model

    @classmethod
    def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
        """ESPnet's, except that the weights are read by ``espnet2_sled.checkpoint``: tensors
        only (a pickle with code is refused), every key and shape checked."""
        if config_file is None:
            if model_file is None:
                raise ValueError("give the model's config.yaml, its model file, or both")
            config_file = Path(model_file).parent / "config.yaml"
        cls._building_from_checkpoint = model_file is not None
        try:
            model, args = super().build_model_from_file(config_file, None, device)
        finally:
            cls._building_from_checkpoint = False
        if model_file is not None:
            load_model_file(model, model_file)
        return model, args

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
        max_positions = tts_conf.get("max_positions", tts_conf_defaults()["max_positions"])
        return SLEDInputCheck(inner, getattr(args, "odim", None), int(max_positions))
