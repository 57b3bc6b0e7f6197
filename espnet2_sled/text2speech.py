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
opt-in, their gap to fp32 in ``espnet2_sled/modules/precision.py``. ``decode_backend=
"onnxruntime"``: the decode step through the CPU decode engine (``espnet2_sled/engine``,
``quantize`` none | int8 | int4), for ``__call__`` and ``stream()`` alike.
"""

import math
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import soundfile as sf
import torch
from espnet2.bin.tts_inference import Text2Speech

import espnet2_sled.registry  # noqa: F401  (registers tts: sled before ESPnet builds the model)
from espnet2_sled.checkpoint import load_model_file
from espnet2_sled.decode_report import DecodeReport, PieceReport, frames_per_token_floor, quote
from espnet2_sled.engine.session import use_decode_backend

DECODE_OPTIONS = ("cfg_scale", "stop_threshold", "max_frames", "seed", "keep_stop_frame", "decode_graph")
# A slow English speaking rate (characters per second, spaces included; read speech is
# about 15): long text is cut into pieces whose audio at this rate fits max_positions.
SLOW_CHARS_PER_SECOND = 12.0


class UnknownCharactersWarning(UserWarning):
    """Text characters the model's token list does not have were read as <unk>."""


def check_finite_prompt(values: torch.Tensor, what: str) -> None:
    if values.numel() == 0:
        raise ValueError(f"{what} is empty (0 samples / frames); give a few seconds of speech as the voice prompt")
    if not bool(torch.isfinite(values).all()):
        bad = int((~torch.isfinite(values)).sum())
        raise ValueError(f"{what} contains NaN/Inf ({bad} of {values.numel()} values); "
                         "give clean audio as the voice prompt")


def read_prompt_audio(path: Union[str, Path]):
    """Prompt audio file -> (samples ``[C, S]`` float32, sample rate); refuses a missing,
    empty (0 samples) or non-finite (NaN/Inf) file by name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt audio '{path}' does not exist")
    audio, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    check_finite_prompt(torch.from_numpy(audio), f"prompt audio '{path}'")
    return audio.T, sample_rate


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
        decode_backend: Optional[str] = None,
        **kwargs,
    ):
        if train_config is None and model_file is not None:
            train_config = Path(model_file).parent / "config.yaml"
        # ESPnet's loader unpickles the whole file (any object) and loads non-strictly: build the
        # model from its config, then read the weights safely and strictly (checkpoint.py).
        super().__init__(
            train_config, None, use_teacher_forcing=use_teacher_forcing, device=device, dtype=dtype, **kwargs
        )
        if type(self.tts).__name__ != "SLED":
            raise ValueError(f"{train_config} holds a '{type(self.tts).__name__}' model, not tts: sled")
        if model_file is not None:
            load_model_file(self.model, model_file)
        self.decode_conf.update(
            {k: v for k, v in dict(
                cfg_scale=cfg_scale, stop_threshold=stop_threshold, max_frames=max_frames,
                seed=seed, keep_stop_frame=keep_stop_frame, decode_graph=decode_graph,
            ).items() if v is not None}
        )
        # the latent decoder is never converted; engine exports are cached beside the model file
        use_decode_backend(self.tts.lm, decode_backend, quantize, decode_dtype,
                           Path(model_file).parent / "engine" if model_file is not None else None)

    @classmethod
    def from_pretrained(cls, model_tag: Optional[str] = None, cachedir: Optional[str] = None, **kwargs):
        """model_tag: a packed ``.zip`` (``espnet2.bin.pack``), an HF repo id, or a model-zoo name."""
        if model_tag is not None:
            from espnet_model_zoo.downloader import ModelDownloader

            kwargs.update(ModelDownloader(cachedir).download_and_unpack(model_tag))
        return cls(**kwargs)

    def tokenize(self, text: str, name: str = "text", warn: bool = True) -> torch.Tensor:
        """Text -> ids ``[N]`` through the training preprocessor (its cleaner and tokenizer);
        warns (``UnknownCharactersWarning``) naming the characters read as ``<unk>``."""
        ids = torch.as_tensor(self.preprocess_fn("<input>", dict(text=text))["text"], dtype=torch.long)
        if not warn:
            return ids
        inner = getattr(self.preprocess_fn, "inner", self.preprocess_fn)  # SLEDInputCheck wraps ESPnet's
        converter = getattr(inner, "token_id_converter", None)
        unk_id = getattr(converter, "unk_id", None)
        if unk_id is not None and bool((ids == unk_id).any()):
            from espnet2_sled.text_frontend import unknown_tokens

            tokens = inner.tokenizer.text2tokens(inner.text_cleaner(text))
            unknown = unknown_tokens(tokens, converter.tokens2ids(tokens), unk_id)
            cleaner = getattr(self.train_args, "cleaner", None)
            warnings.warn(
                f"{name}: {int((ids == unk_id).sum())} of {len(ids)} tokens are <unk>, from {unknown} "
                f"(not in the model's token list, cleaner: {cleaner}); write them out in words"
                + ("" if cleaner else ", or train with cleaner: sled_english (numbers, currency, symbols)"),
                UnknownCharactersWarning, stacklevel=2,
            )
        return ids

    def piece_fits(self, prompt_text: Optional[str] = None, prompt_frames: int = 0) -> Callable[[str], bool]:
        """The test ``split_text`` cuts long text with: do ``<s> prompt_text piece </s>``, the
        prompt frames and the piece's audio at ``SLOW_CHARS_PER_SECOND`` fit max_positions?"""
        frames_per_char = self.tts.latent_frame_rate / SLOW_CHARS_PER_SECOND
        prefix = prompt_text.strip() + " " if prompt_text else ""

        def fits(piece: str) -> bool:
            tokens = len(self.preprocess_fn("<input>", dict(text=prefix + piece))["text"])
            return tokens + 2 + prompt_frames + math.ceil(len(piece) * frames_per_char) <= self.tts.max_positions

        return fits

    def check_prompt_room(self, prompt_text: str, prompt_frames: int, word: Optional[str] = None) -> None:
        """Refuses a voice prompt that leaves no room for ``word`` (the text's first; None: a
        one-letter word), by its positions and the longest prompt that would fit; a word too
        long on its own is left to ``split_text``, which names it."""
        named = f"its first word {word.strip()[:40]!r}" if word and word.strip() else "a one-letter word"
        word = word.strip() if word and word.strip() else "a"
        if self.piece_fits(prompt_text, prompt_frames)(word) or not self.piece_fits()(word):
            return
        positions, rate = self.tts.max_positions, self.tts.latent_frame_rate
        frames_per_char = rate / SLOW_CHARS_PER_SECOND
        transcript = len(self.tokenize(prompt_text.strip(), warn=False))

        def longest_prompt(text: str) -> float:  # seconds of prompt with which ``text`` still fits
            tokens = len(self.preprocess_fn("<input>", dict(text=prompt_text.strip() + " " + text))["text"])
            frames = positions - tokens - 2 - math.ceil(len(text) * frames_per_char)
            return math.floor((frames - 1) / rate * 10) / 10  # one frame spare: the encoder rounds up

        sentence = ("the quick brown fox jumps over the lazy dog " * 3)[: int(10 * SLOW_CHARS_PER_SECOND)].strip()
        longest = longest_prompt(sentence)
        for_sentence = f", or {longest:.1f} s to leave room for a 10-second sentence" if longest > 0 else ""
        raise ValueError(
            f"the voice prompt takes {prompt_frames + transcript} of the model's {positions} positions "
            f"({prompt_frames} frames = {prompt_frames / rate:.1f} s of audio + {transcript} tokens of its "
            f"transcript), leaving no room for the text (not even {named}); use a voice "
            f"prompt of at most {max(0.0, longest_prompt(word)):.1f} s{for_sentence}"
        )

    def new_report(self, what: str, stop_threshold: Optional[float], voice_prompt: bool) -> DecodeReport:
        """An empty ``DecodeReport`` with this model's frames-per-token floor (decode_report.py)."""
        floor, source = frames_per_token_floor(self.tts.config.min_frames_per_token, self.tts.latent_frame_rate)
        threshold = self.tts.decode_options(stop_threshold=stop_threshold)["stop_threshold"]
        return DecodeReport(what, floor, source, threshold, voice_prompt)

    def report_one_piece(self, what: str, frames: int, text_tokens: int, stop_threshold: Optional[float],
                         voice_prompt: bool, capped: bool) -> DecodeReport:
        """The rule applied to one decoded piece (``EmptyOutputError`` / ``ShortOutputWarning``);
        ``capped``: it ended at the caller's max_frames (not short). Returns the applied report."""
        report = self.new_report(what, stop_threshold, voice_prompt)
        report.pieces.append(PieceReport(frames, text_tokens, text_tokens, capped))
        return report.apply(stacklevel=4)  # the warning points at the caller of our caller, as before

    def split_text(self, text: str, prompt_text: Optional[str] = None, prompt_frames: int = 0) -> List[str]:
        """Text -> the pieces it is spoken as (one piece, ``[text.strip()]``, when it fits)."""
        from espnet2_sled.text_split import split_text

        return split_text(text, self.piece_fits(prompt_text, prompt_frames))

    def encode_prompt(
        self, prompt_audio: Union[str, Path, np.ndarray, torch.Tensor], sample_rate: Optional[int] = None
    ) -> torch.Tensor:
        """Prompt audio (a path, or samples at ``sample_rate``) -> latents ``[P, D]``."""
        latent = self.tts.latent_space
        if latent is None:
            raise ValueError("this model has no latent space (tts_conf.latent); pass prompt_latents instead of audio")
        what = "prompt audio (samples)"
        if isinstance(prompt_audio, (str, Path)):
            what = f"prompt audio '{prompt_audio}'"
            prompt_audio, sample_rate = read_prompt_audio(prompt_audio)
        elif sample_rate is None:
            raise ValueError("pass sample_rate with prompt audio given as samples")
        audio = torch.as_tensor(np.asarray(prompt_audio), dtype=torch.float32)
        check_finite_prompt(audio, what)
        audio = audio[None] if audio.dim() == 1 else audio
        latents = latent.encode(audio[None] if audio.dim() == 2 else audio, sample_rate)[0].to(self.device)
        if latents.shape[0] == 0:
            raise ValueError(f"{what} is too short: {audio.shape[-1]} samples at {sample_rate} Hz give no latent frame")
        check_finite_prompt(latents, f"the latents of {what}")
        return latents

    def stream(
        self,
        voice_prompt: Union[str, Path, np.ndarray, torch.Tensor, None] = None,
        prompt_text: Optional[str] = None,
        prompt_sample_rate: Optional[int] = None,
        noise=None,
        allow_early_stop: bool = True,
        **options,
    ):
        """Start a streaming session: ``push_text`` any number of times, then ``end_text``.

        voice_prompt: audio path / samples (or latents ``[P, D]`` as a tensor with
        ``prompt_sample_rate=None``); its transcript ``prompt_text`` is read first.
        Text of any length: a ``PiecewiseSession`` (espnet2_sled/long_text.py) speaks it as
        one ``StreamingSession`` per piece that fits the model's positions.
        """
        from espnet2_sled.long_text import PiecewiseSession
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
            is_latents = (
                isinstance(voice_prompt, torch.Tensor) and prompt_sample_rate is None and voice_prompt.dim() == 2
            )
            prompt_latents = voice_prompt if is_latents else self.encode_prompt(voice_prompt, prompt_sample_rate)
            if is_latents:
                check_finite_prompt(prompt_latents, "voice_prompt (latents)")
            self.check_prompt_room(prompt_text, prompt_latents.shape[0])

        def new_session() -> StreamingSession:
            with torch.no_grad():
                session = StreamingSession(
                    self.tts, lambda text: self.tokenize(text, warn=False).tolist(), opts["cfg_scale"],
                    opts["stop_threshold"], opts["keep_stop_frame"], cfg.get("max_frames"), noise, prompt_latents,
                    allow_early_stop, decode_graph=cfg.get("decode_graph"),
                )
            if prompt_latents is not None:
                session.push_text(prompt_text.strip() + " ")  # read lazily, with the first text
            return session

        prompt_frames = 0 if prompt_latents is None else prompt_latents.shape[0]
        report = self.new_report("streamed text", opts["stop_threshold"], prompt_latents is not None)
        return PiecewiseSession(new_session, self.piece_fits(prompt_text if prompt_latents is not None else None,
                                                             prompt_frames),
                                check_text=lambda piece: self.tokenize(piece, name="streamed text"),
                                report=report, max_frames=cfg.get("max_frames"))

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
        """text -> dict(feat_gen ``[T, D]``, wav ``[T * hop]``, stop_probs ``[T]``, report).

        ``report``: a ``DecodeReport`` (frames per text token, pieces); no frames at all raises
        ``EmptyOutputError``, implausibly short output warns ``ShortOutputWarning``.

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
        elif prompt_latents is not None:
            check_finite_prompt(torch.as_tensor(prompt_latents), "prompt_latents")
        if isinstance(text, str) and not text.strip():
            raise ValueError("text is empty")
        if prompt_latents is not None:
            if not prompt_text or not prompt_text.strip():
                raise ValueError("prompt_text is empty: voice cloning needs the transcript of the prompt audio")
            if not isinstance(text, str):
                raise ValueError("with a voice prompt, give the text as a string (it is joined to prompt_text)")
        if isinstance(text, str) and prompt_latents is not None:
            self.check_prompt_room(prompt_text, prompt_latents.shape[0], text.split()[0])
        if isinstance(text, str) and not cfg.get("use_teacher_forcing"):
            pieces = self.split_text(text, prompt_text if prompt_latents is not None else None,
                                     0 if prompt_latents is None else prompt_latents.shape[0])
            if len(pieces) > 1:
                from espnet2_sled.long_text import decode_pieces

                return decode_pieces(self, pieces, prompt_text, prompt_latents, noise, cfg)
        what = f"text {quote(text)}" if isinstance(text, str) else "text (token ids)"
        text_tokens = len(self.tokenize(text, warn=False)) if prompt_latents is not None else None
        if prompt_latents is not None:
            text = prompt_text.strip() + " " + text
        if isinstance(text, str):
            text = self.tokenize(text)
        text = torch.as_tensor(text, dtype=torch.long).to(self.device)
        text_tokens = len(text) if text_tokens is None else text_tokens
        feats = None if speech is None else torch.as_tensor(speech).to(self.device)
        result = self.tts.inference(text, feats=feats, prompt_latents=prompt_latents, noise=noise, **cfg)
        if "stop_probs" in result:
            from espnet2_sled.long_text import stopped_at_head, warn_cut_off

            prompt_frames = 0 if prompt_latents is None else prompt_latents.shape[0]
            budget = self.tts.max_positions - (len(text) + 2) - prompt_frames
            threshold = self.tts.decode_options(stop_threshold=cfg.get("stop_threshold"))["stop_threshold"]
            if len(result["stop_probs"]) == budget and not stopped_at_head(result["stop_probs"], threshold):
                warn_cut_off("text", len(result["feat_gen"]), self.tts.max_positions)
        if not cfg.get("use_teacher_forcing"):
            frames = len(result["feat_gen"])
            result["report"] = self.report_one_piece(what, frames, text_tokens, cfg.get("stop_threshold"),
                                                     prompt_latents is not None, frames >= frame_cap(cfg, noise))
        return result


def frame_cap(decode_conf: Dict[str, Any], noise) -> float:
    """The frames the caller allowed a piece (``max_frames``, or an explicit noise tensor's steps)."""
    caps = [decode_conf.get("max_frames"), noise.shape[-2] if isinstance(noise, torch.Tensor) else None]
    return min([c for c in caps if c is not None], default=math.inf)
