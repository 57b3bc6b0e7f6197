"""``SLEDText2Speech``: ESPnet's Text2Speech for SLED, with its options, voice prompts and streaming.

ESPnet's ``Text2Speech`` forwards only a few options to model classes it does not know,
so SLED's (cfg_scale, stop_threshold, max_frames, seed, ...) would be dropped silently.
This subclass carries them, adds voice prompts and ``stream()``, and ``from_pretrained``
returns itself.

    >>> from espnet2_sled.text2speech import SLEDText2Speech
    >>> tts = SLEDText2Speech.from_pretrained("exp/sled/sled.zip", cfg_scale=2.0)
    >>> out = tts("Hello there.", seed=0)      # {"feat_gen": [T, D], "wav": [T * 320]}

Speed options: ``decode_graph`` (replay the decode step as a CUDA graph; default on for
CUDA, off for CPU), ``quantize="int8"`` (CPU) and ``decode_dtype="bfloat16"`` (GPU): both
opt-in, their gap to fp32 in ``espnet2_sled/modules/precision.py``.
"""

from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import soundfile as sf
import torch
from espnet2.bin.tts_inference import Text2Speech

import espnet2_sled  # noqa: F401  (registers tts: sled before ESPnet builds the model)
from espnet2_sled.modules.precision import prepare_for_decoding

DECODE_OPTIONS = ("cfg_scale", "stop_threshold", "max_frames", "seed", "keep_stop_frame", "decode_graph")


class SLEDText2Speech(Text2Speech):
    def __init__(
        self,
        train_config: Union[Path, str, None] = None,
        model_file: Union[Path, str, None] = None,
        cfg_scale: Optional[float] = None,
        stop_threshold: Optional[float] = None,
        max_frames: Optional[int] = None,
        seed: Optional[int] = None,
        keep_stop_frame: Optional[bool] = None,
        use_teacher_forcing: bool = False,
        device: str = "cpu",
        dtype: str = "float32",
        decode_graph: Optional[bool] = None,
        quantize: Optional[str] = None,
        decode_dtype: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(train_config, model_file, use_teacher_forcing=use_teacher_forcing, device=device, dtype=dtype, **kwargs)
        if type(self.tts).__name__ != "SLED":
            raise ValueError(f"{train_config} holds a '{type(self.tts).__name__}' model, not tts: sled")
        self.decode_conf.update(
            {k: v for k, v in dict(
                cfg_scale=cfg_scale, stop_threshold=stop_threshold, max_frames=max_frames,
                seed=seed, keep_stop_frame=keep_stop_frame, decode_graph=decode_graph,
            ).items() if v is not None}
        )
        prepare_for_decoding(self.tts.lm, quantize, decode_dtype)  # the latent decoder is never converted

    @classmethod
    def from_pretrained(cls, model_tag: Optional[str] = None, cachedir: Optional[str] = None, **kwargs):
        """model_tag: a packed ``.zip`` (``espnet2.bin.pack``), an HF repo id, or a model-zoo name."""
        if model_tag is not None:
            from espnet_model_zoo.downloader import ModelDownloader

            kwargs.update(ModelDownloader(cachedir).download_and_unpack(model_tag))
        return cls(**kwargs)

    def tokenize(self, text: str) -> torch.Tensor:
        ids = self.preprocess_fn("<input>", dict(text=text))["text"]
        return torch.as_tensor(ids, dtype=torch.long)

    def encode_prompt(self, prompt_audio: Union[str, Path, np.ndarray, torch.Tensor], sample_rate: Optional[int] = None) -> torch.Tensor:
        """Prompt audio (a path, or samples at ``sample_rate``) -> latents ``[P, D]``."""
        latent = self.tts.latent_space
        if latent is None:
            raise ValueError("this model has no latent space (tts_conf.latent); pass prompt_latents instead of audio")
        if isinstance(prompt_audio, (str, Path)):
            path = Path(prompt_audio)
            if not path.is_file():
                raise FileNotFoundError(f"prompt audio '{path}' does not exist")
            audio, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
            prompt_audio = audio.T  # [C, S]
        elif sample_rate is None:
            raise ValueError("pass sample_rate with prompt audio given as samples")
        audio = torch.as_tensor(np.asarray(prompt_audio), dtype=torch.float32)
        audio = audio[None] if audio.dim() == 1 else audio
        return latent.encode(audio[None] if audio.dim() == 2 else audio, sample_rate)[0].to(self.device)

    def stream(
        self,
        voice_prompt: Union[str, Path, np.ndarray, torch.Tensor, None] = None,
        prompt_text: Optional[str] = None,
        prompt_sample_rate: Optional[int] = None,
        noise=None,
        allow_early_stop: bool = True,
        **options,
    ):
        """Start a ``StreamingSession``: ``push_text`` any number of times, then ``end_text``.

        voice_prompt: audio path / samples (or latents ``[P, D]`` as a tensor with
        ``prompt_sample_rate=None``); its transcript ``prompt_text`` is read first.
        """
        from espnet2_sled.streaming import StreamingSession

        cfg = dict(self.decode_conf)
        cfg.update({k: v for k, v in options.items() if v is not None})
        unknown = set(cfg) - set(DECODE_OPTIONS) - {"use_teacher_forcing"}
        if unknown:
            raise TypeError(f"unknown SLED decoding option(s) {sorted(unknown)}; known: {DECODE_OPTIONS}")
        opts = self.tts.decode_options(**{k: cfg.get(k) for k in ("cfg_scale", "stop_threshold", "keep_stop_frame")})
        if noise is None and cfg.get("seed") is not None:
            noise = torch.Generator(device=self.device).manual_seed(int(cfg["seed"]))
        prompt_latents = None
        if voice_prompt is not None:
            if not prompt_text or not prompt_text.strip():
                raise ValueError("prompt_text is empty: a voice prompt needs its transcript")
            is_latents = isinstance(voice_prompt, torch.Tensor) and prompt_sample_rate is None and voice_prompt.dim() == 2
            prompt_latents = voice_prompt if is_latents else self.encode_prompt(voice_prompt, prompt_sample_rate)
        with torch.no_grad():
            session = StreamingSession(
                self.tts, lambda text: self.tokenize(text).tolist(), opts["cfg_scale"], opts["stop_threshold"],
                opts["keep_stop_frame"], cfg.get("max_frames"), noise, prompt_latents, allow_early_stop,
                decode_graph=cfg.get("decode_graph"),
            )
        if prompt_latents is not None:
            session.push_text(prompt_text.strip() + " ")  # read lazily, with the first text
        return session

    @torch.no_grad()
    def __call__(
        self,
        text: Union[str, torch.Tensor, np.ndarray],
        prompt_text: Optional[str] = None,
        prompt_audio: Union[str, Path, np.ndarray, torch.Tensor, None] = None,
        prompt_sample_rate: Optional[int] = None,
        prompt_latents: Optional[torch.Tensor] = None,
        speech: Optional[torch.Tensor] = None,
        decode_conf: Optional[Dict[str, Any]] = None,
        noise=None,
        **options,
    ) -> Dict[str, torch.Tensor]:
        """text -> dict(feat_gen ``[T, D]``, wav ``[T * hop]``, stop_probs ``[T]``).

        Voice cloning: ``prompt_text`` + ``prompt_audio`` (or ``prompt_latents [P, D]``);
        the model reads ``<s> prompt_text text </s>`` followed by the prompt frames.
        """
        cfg = dict(self.decode_conf)
        cfg.update(decode_conf or {})
        cfg.update({k: v for k, v in options.items() if v is not None})
        unknown = set(cfg) - set(DECODE_OPTIONS) - {"use_teacher_forcing"}
        if unknown:
            raise TypeError(f"unknown SLED decoding option(s) {sorted(unknown)}; known: {DECODE_OPTIONS}")
        if prompt_audio is not None:
            prompt_latents = self.encode_prompt(prompt_audio, prompt_sample_rate)
        if prompt_latents is not None:
            if not prompt_text or not prompt_text.strip():
                raise ValueError("prompt_text is empty: voice cloning needs the transcript of the prompt audio")
            if not isinstance(text, str):
                raise ValueError("with a voice prompt, give the text as a string (it is joined to prompt_text)")
            text = prompt_text.strip() + " " + text
        if isinstance(text, str):
            if not text.strip():
                raise ValueError("text is empty")
            text = self.tokenize(text)
        text = torch.as_tensor(text, dtype=torch.long).to(self.device)
        feats = None if speech is None else torch.as_tensor(speech).to(self.device)
        return self.tts.inference(text, feats=feats, prompt_latents=prompt_latents, noise=noise, **cfg)
