"""SLEDTask: ESPnet's TTSTask with SLED's input checks; the only place that knows task machinery.

Importing ``espnet2_sled.registry`` here matters: ESPnet's multi-GPU launch spawns workers
that unpickle ``SLEDTask.main_worker`` and so import this module, which registers ``sled``
(and token type ``byte_bpe``, which ESPnet's Text2Speech also looks up through TTSTask).
"""

import argparse
import logging
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch
import yaml
from espnet2.layers.create_adapter import create_adapter
from espnet2.tasks.tts import TTSTask
from espnet2.train.trainer import Trainer

import espnet2_sled.registry  # noqa: F401  (registers tts: sled and byte_bpe, also in spawned workers)
from espnet2_sled.checkpoint import load_init_param, load_model_file, load_state_strictly, read_resume_file
from espnet2_sled.modules.config import tts_conf_defaults
from espnet2_sled.tasks.extra_choices import extra_choices
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
    """Where the codec's weights come from is the codec's ``provenance``
    (``latent/provenance.py``): ``build_model`` (training) fills it from its file,
    ``build_model_from_file`` (decoding) from the checkpoint; no state is kept on the class."""

    trainer = SLEDTrainer

    @classmethod
    def get_parser(cls):
        """ESPnet's parser, refusing options shortened to a prefix (``--max_epo 3`` is an error)."""
        parser = super().get_parser()
        parser.allow_abbrev = False
        return parser

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        if getattr(args, "use_deepspeed", False):
            cls.trainer = Trainer  # ESPnet swaps in its DeepSpeedTrainer only for the plain one
        super().main_worker(args)

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        """Training's model (ESPnet's main_worker calls this): the codec from its file, then
        ``--init_param``. ESPnet would read --init_param after this by unpickling the whole file
        (any object) with a lax key check; it is read here instead (weights only, every key
        checked) and taken out of ``args``, so ESPnet's loop has nothing left to load."""
        model = super().build_model(args)
        model.tts.load_latent_weights()
        init_params, args.init_param = list(getattr(args, "init_param", None) or []), []
        if init_params and not getattr(args, "collect_stats", False):
            for init_param in init_params:
                logging.info(f"Loading pretrained params from {init_param} (weights only, keys checked)")
                # the frozen latent space may be absent (e.g. an import with --latent none):
                # training filled it from its codec file above
                load_init_param(model, init_param, getattr(args, "ignore_init_mismatch", False),
                                allow_missing=("tts.latent_space.",))
        return model

    @classmethod
    def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
        """ESPnet's, except that the weights are read by ``espnet2_sled.checkpoint``: tensors
        only (a pickle with code is refused), every key and shape checked; the codec's too,
        so its file is read only when no model file is given."""
        if config_file is None:
            if model_file is None:
                raise ValueError("give the model's config.yaml, its model file, or both")
            config_file = Path(model_file).parent / "config.yaml"
        logging.info(f"config file: {config_file}")
        with Path(config_file).open("r", encoding="utf-8") as f:
            args = argparse.Namespace(**yaml.safe_load(f))
        model = super().build_model(args)  # TTSTask's: the codec stays empty for the checkpoint
        if device != "mps":
            model.to(device)
        if getattr(args, "use_adapter", False):
            create_adapter(model, args.adapter, args.adapter_conf)
        if model_file is not None:
            load_model_file(model, model_file)
        else:
            model.tts.load_latent_weights()
        return model, args

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        byte_bpe_help = f"; {BYTE_BPE}: byte-level BPE from the tokenizer.json given as --bpemodel"
        extra = {"--token_type": (BYTE_BPE, byte_bpe_help),
                 "--cleaner": (CLEANER, "")}  # espnet2_sled/text_frontend.py
        with extra_choices(parser, extra):
            super().add_task_arguments(parser)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        inner = super().build_preprocess_fn(args, train)
        tts_conf = getattr(args, "tts_conf", None) or {}
        max_positions = tts_conf.get("max_positions", tts_conf_defaults()["max_positions"])
        return SLEDInputCheck(inner, getattr(args, "odim", None), int(max_positions))
