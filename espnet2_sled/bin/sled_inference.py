#!/usr/bin/env python3
"""Decode with SLED: ``SLEDText2Speech`` (Python API) and the ``sled_inference`` CLI.

ESPnet's ``Text2Speech`` forwards only a few options to model classes it does not know,
so SLED's (cfg_scale, stop_threshold, max_frames, seed, ...) would be dropped silently.
This subclass carries them, adds voice prompts, and ``from_pretrained`` returns itself.

    >>> from espnet2_sled.bin.sled_inference import SLEDText2Speech
    >>> tts = SLEDText2Speech.from_pretrained("exp/sled/sled.zip", cfg_scale=2.0)
    >>> out = tts("Hello there.", seed=0)      # {"feat_gen": [T, D], "wav": [T * 320]}
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch
from espnet2.bin.tts_inference import Text2Speech
from espnet2.fileio.npy_scp import NpyScpWriter
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none

from espnet2_sled.tasks.sled import SLEDTask

DECODE_OPTIONS = ("cfg_scale", "stop_threshold", "max_frames", "seed", "keep_stop_frame")


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
        **kwargs,
    ):
        super().__init__(train_config, model_file, use_teacher_forcing=use_teacher_forcing, device=device, dtype=dtype, **kwargs)
        if type(self.tts).__name__ != "SLED":
            raise ValueError(f"{train_config} holds a '{type(self.tts).__name__}' model, not tts: sled")
        self.decode_conf.update(
            {k: v for k, v in dict(
                cfg_scale=cfg_scale, stop_threshold=stop_threshold, max_frames=max_frames,
                seed=seed, keep_stop_frame=keep_stop_frame,
            ).items() if v is not None}
        )

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


def get_parser() -> argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description="SLED decoding (ESPnet tts_inference options + SLED's)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", default="INFO", choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"))
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=1, help="utterances decoded together (padded)")
    group = parser.add_argument_group("Input data")
    group.add_argument("--data_path_and_name_and_type", type=str2triple_str, required=True, action="append")
    group.add_argument("--key_file", type=str_or_none)
    group = parser.add_argument_group("Model")
    group.add_argument("--train_config", type=str_or_none)
    group.add_argument("--model_file", type=str_or_none)
    group.add_argument("--model_tag", type=str_or_none, help="packed zip / model zoo tag instead of the two above")
    group = parser.add_argument_group("SLED decoding")
    group.add_argument("--cfg_scale", type=float, default=None, help="guidance scale (model default 2.0; 1 = off)")
    group.add_argument("--stop_threshold", type=float, default=None, help="stop when p(stop) >= this (default 0.8)")
    group.add_argument("--max_frames", type=int, default=None, help="cap on generated frames per utterance")
    group.add_argument("--seed", type=int, default=0, help="noise seed; each utterance uses seed + its index")
    group.add_argument("--keep_stop_frame", type=str2bool, default=None)
    group.add_argument("--use_teacher_forcing", type=str2bool, default=False, help="resynthesise the 'speech' input latents")
    return parser


def inference(args: argparse.Namespace) -> None:
    device = "cuda" if args.ngpu > 0 else "cpu"
    t2s_kwargs = dict(
        train_config=args.train_config, model_file=args.model_file, cfg_scale=args.cfg_scale,
        stop_threshold=args.stop_threshold, max_frames=args.max_frames, keep_stop_frame=args.keep_stop_frame,
        use_teacher_forcing=args.use_teacher_forcing, device=device, dtype=args.dtype,
    )
    t2s = SLEDText2Speech.from_pretrained(args.model_tag, **t2s_kwargs)
    names = [name for _, name, _ in args.data_path_and_name_and_type]
    if args.use_teacher_forcing and "speech" not in names:
        raise ValueError("--use_teacher_forcing needs a 'speech' input (--data_path_and_name_and_type feats.scp,speech,kaldi_ark)")
    loader = SLEDTask.build_streaming_iterator(
        args.data_path_and_name_and_type, dtype=args.dtype, batch_size=args.batch_size, key_file=args.key_file,
        num_workers=args.num_workers, preprocess_fn=SLEDTask.build_preprocess_fn(t2s.train_args, False),
        collate_fn=SLEDTask.build_collate_fn(t2s.train_args, False), allow_variable_data_keys=False, inference=True,
    )
    out = Path(args.output_dir)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "speech_shape").mkdir(parents=True, exist_ok=True)
    feats_writer = NpyScpWriter(out / "norm", out / "norm/feats.scp")
    index = 0
    with feats_writer, open(out / "speech_shape/speech_shape", "w") as shape_f, open(out / "timing.jsonl", "w") as timing_f:
        for keys, batch in loader:
            start = time.perf_counter()
            results = decode_batch(t2s, keys, batch, args, index)
            elapsed = (time.perf_counter() - start) / len(keys)
            for key, result in zip(keys, results):
                feat = result["feat_gen"].float().cpu().numpy()
                feats_writer[key] = feat
                shape_f.write(f"{key} {','.join(map(str, feat.shape))}\n")
                seconds = 0.0
                if "wav" in result:
                    wav = result["wav"].float().cpu().numpy()
                    sf.write(out / "wav" / f"{key}.wav", wav, t2s.fs, "PCM_16")
                    seconds = len(wav) / t2s.fs
                timing_f.write(json.dumps(dict(utt_id=key, frames=int(feat.shape[0]), audio_seconds=seconds, compute_seconds=elapsed)) + "\n")
                logging.info(f"{key}: {feat.shape[0]} frames, {elapsed:.2f} s")
            index += len(keys)
    wavs = sorted((out / "wav").glob("*.wav"))
    with open(out / "wav/wav.scp", "w") as f:
        for w in wavs:
            f.write(f"{w.stem} {w.resolve()}\n")


def decode_batch(t2s: SLEDText2Speech, keys: Sequence[str], batch: Dict[str, torch.Tensor], args, index: int):
    tts = t2s.tts
    text, text_lengths = batch["text"].to(t2s.device), batch["text_lengths"].to(t2s.device)
    if args.use_teacher_forcing:
        return [tts.inference(text[b, : text_lengths[b]], feats=batch["speech"][b, : batch["speech_lengths"][b]],
                              use_teacher_forcing=True) for b in range(len(keys))]
    # Per-utterance noise streams (seed + utterance index): a row's audio does not depend
    # on the batch it happens to be decoded in.
    max_frames = t2s.decode_conf.get("max_frames") or (tts.max_positions - int(text_lengths.max()) - 2)
    noise = torch.stack([
        torch.randn(max_frames, tts.lm.noise_dim, generator=torch.Generator().manual_seed(args.seed + index + b))
        for b in range(len(keys))
    ]).to(t2s.device)
    options = {k: v for k, v in t2s.decode_conf.items() if k in ("cfg_scale", "stop_threshold", "keep_stop_frame")}
    gen = tts.generate_batch(text, text_lengths, max_frames=max_frames, noise=noise, **options)
    results = []
    for b in range(len(keys)):
        frames = gen.frames[b, : int(gen.lengths[b])]
        results.append(tts.outputs_for(frames, None, True))
    return results


def main(cmd=None):
    print(" ".join(sys.argv), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    inference(args)


if __name__ == "__main__":
    main()
