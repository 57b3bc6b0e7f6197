"""SLED as an ESPnet TTS model: ``forward`` returns the training losses, ``inference`` decodes.

ESPnet hands us token ids without sentence markers and precomputed latent frames as
``feats`` (``--odim <latent width>``, ``feats_extract`` None); ``feats`` is ESPnet's name on
the ``AbsTTS`` signatures only, they are ``frames`` from there down. We wrap the text as
``<s> text </s>`` (``bos_id`` / ``eos_id``; ESPnet token lists end with ``<sos/eos>``,
which is the default for both) and leave the math to ``SLEDLM``.

A latent space (``latent: encodec | mel``) can be attached for waveform decoding and
prompt encoding; its weights live in this module's state dict (frozen), so a packed
model decodes offline.
"""

import inspect
from typing import Any, Dict, Optional

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.tts.abs_tts import AbsTTS

from espnet2_sled.modules.config import SLEDConfig, tts_conf_defaults
from espnet2_sled.modules.generation import generate
from espnet2_sled.modules.sled_lm import SLEDLM


class SLED(AbsTTS):
    """``SLED(idim, odim, **tts_conf)``: the keys are the fields of ``SLEDConfig`` and
    ``LossConfig`` (``modules/config.py``, with their defaults and meaning); they are read
    into one ``self.config`` here and checked there, once."""

    def __init__(self, idim: int, odim: int, **tts_conf):
        super().__init__()
        self.config = config = SLEDConfig.from_tts_conf(idim, odim, tts_conf)
        self.idim, self.odim = idim, odim
        self.lm = SLEDLM(config)
        self.latent_space = None
        if config.latent is not None:
            from espnet2_sled.latent import build_latent_space

            conf = dict(config.latent_conf or {})
            if config.latent == "encodec" and conf.get("weights") != "random":
                # Codec weights come from the checkpoint when one is loaded; from the file only
                # when training starts (SLEDTask.build_model -> load_latent_weights). So a
                # packed model decodes on a machine that has no codec file.
                conf["defer"] = True
            self.latent_space = build_latent_space(config.latent, **conf)
            if self.latent_space.latent_dim != odim:
                raise ValueError(
                    f"latent space '{config.latent}' has width {self.latent_space.latent_dim} but the data "
                    f"(odim) has {odim}; extract the latents with the same latent_conf"
                )
            self.latent_space.requires_grad_(False)

    # Read-only views of the config for callers (one value, one name: set them on ``config``).
    bos_id = property(lambda self: self.config.bos_id)
    eos_id = property(lambda self: self.config.eos_id)
    max_positions = property(lambda self: self.config.max_positions)
    layout = property(lambda self: self.config.layout)
    tokens_per_chunk = property(lambda self: self.config.tokens_per_chunk)
    frames_per_chunk = property(lambda self: self.config.frames_per_chunk)

    def load_latent_weights(self) -> None:
        """Fill a codec still empty from its weights file (or the usual caches when None);
        where the weights come from is the codec's ``provenance`` (``latent/provenance.py``)."""
        provenance = getattr(self.latent_space, "provenance", None)
        if provenance is not None and not provenance.loaded:
            self.latent_space.load_weights()

    # ESPnet's Text2Speech reads these.
    spks = None
    langs = None
    spk_embed_dim = None

    @property
    def require_vocoder(self) -> bool:
        return False

    @property
    def fs(self) -> Optional[int]:
        return None if self.latent_space is None else self.latent_space.sample_rate

    @property
    def latent_frame_rate(self) -> float:
        """Frames per second of the latents (75 for every shipped latent space)."""
        return 75.0 if self.latent_space is None else self.latent_space.frame_rate

    def train(self, mode: bool = True):
        super().train(mode)
        if self.latent_space is not None:
            self.latent_space.eval()  # frozen codec: no dropout / norm updates ever
        return self

    # ------------------------------------------------------------------ text
    def wrap_text(self, text: torch.Tensor, text_lengths: torch.Tensor):
        """``[B, N]`` ids (right-padded) -> ``[B, N+2]`` as ``<s> ids </s>``, lengths + 2."""
        B, N = text.shape
        out = torch.full((B, N + 2), self.eos_id, dtype=torch.long, device=text.device)
        out[:, 0] = self.bos_id
        out[:, 1 : N + 1] = text
        ends = (text_lengths + 1)[:, None]
        cols = torch.arange(N + 2, device=text.device)[None]
        out = torch.where(cols == ends, torch.full_like(out, self.eos_id), out)
        return out, text_lengths + 2

    def check_batch(self, text_lengths, frames, frame_lengths, names=None):
        def who(b):
            return f"utterance '{names[b]}'" if names is not None else f"batch row {b}"

        if frames.shape[-1] != self.odim:
            raise ValueError(f"latent width {frames.shape[-1]} != model odim {self.odim}; re-extract or fix --odim")
        for b in range(len(text_lengths)):
            if int(text_lengths[b]) == 0:
                raise ValueError(f"text is empty for {who(b)}")
            total = int(text_lengths[b]) + 2 + int(frame_lengths[b])
            if total > self.max_positions:
                raise ValueError(
                    f"{who(b)}: {int(text_lengths[b])} text tokens + 2 markers + {int(frame_lengths[b])} "
                    f"frames = {total} exceeds max_positions {self.max_positions}; filter it out (recipe stage 4)"
                )
        if not bool(torch.isfinite(frames).all()):
            rows = [b for b in range(frames.shape[0]) if not bool(torch.isfinite(frames[b]).all())]
            raise ValueError(f"latents contain NaN/Inf for {', '.join(who(b) for b in rows)}")

    # ------------------------------------------------------------------ training
    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        text_dropout: Optional[torch.Tensor] = None,
        noise: Optional[torch.Tensor] = None,
        utt_id=None,
        **kwargs,
    ):
        """text ``[B, N]``, feats ``[B, T, odim]`` -> (loss, stats, weight).

        ``text_dropout [B]`` (CFG rows) and loss noise (``[M, F, noise_dim]`` over the F real
        frames in (b, t) order, or upstream's padded grid ``[M, B, T, noise_dim]``) may be
        given to make the loss deterministic; otherwise they are drawn (dropout only in training).
        """
        frames, frame_lengths = feats, feats_lengths
        self.check_batch(text_lengths, frames, frame_lengths, utt_id)
        frames = frames[:, : int(frame_lengths.max())]
        text = text[:, : int(text_lengths.max())]
        wrapped, wrapped_lengths = self.wrap_text(text, text_lengths)
        if text_dropout is None:
            text_dropout = torch.rand(text.shape[0]) < (self.config.loss.cfg_dropout if self.training else 0.0)
        loss, stats = self.lm.loss(wrapped, wrapped_lengths, frames, frame_lengths, self.config.loss,
                                   text_dropout, noise)
        loss, stats, weight = force_gatherable((loss, stats, text.shape[0]), loss.device)
        return loss, stats, weight

    # ------------------------------------------------------------------ decoding
    def decode_options(self, **overrides) -> Dict[str, Any]:
        config = self.config
        options = dict(cfg_scale=config.cfg_scale, stop_threshold=config.stop_threshold,
                       keep_stop_frame=config.keep_stop_frame)
        options.update({k: v for k, v in overrides.items() if v is not None})
        return options

    @torch.no_grad()
    def generate_batch(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        prompt: Optional[torch.Tensor] = None,
        prompt_lengths: Optional[torch.Tensor] = None,
        max_frames: Optional[int] = None,
        noise=None,
        seed: Optional[int] = None,
        **options,
    ):
        """Batched decoding. text ``[B, N]`` right-padded ids; prompt ``[B, P, odim]``.

        Returns ``espnet2_sled.modules.generation.Generated`` (frames ``[B, T, odim]``).
        """
        if int(text_lengths.min()) == 0:
            raise ValueError("text is empty (after tokenization) for at least one input")
        options = self.decode_options(**options)
        if noise is None and seed is not None:
            noise = torch.Generator(device=text.device).manual_seed(int(seed))
        wrapped, wrapped_lengths = self.wrap_text(text, text_lengths)
        return generate(
            self.lm, wrapped, wrapped_lengths, self.eos_id, prompt, prompt_lengths,
            options["cfg_scale"], options["stop_threshold"], max_frames, self.max_positions,
            noise, options["keep_stop_frame"], decode_graph=options.get("decode_graph"),
        )

    @torch.no_grad()
    def inference(
        self,
        text: torch.Tensor,
        feats: Optional[torch.Tensor] = None,
        prompt_latents: Optional[torch.Tensor] = None,
        use_teacher_forcing: bool = False,
        cfg_scale: Optional[float] = None,
        stop_threshold: Optional[float] = None,
        max_frames: Optional[int] = None,
        seed: Optional[int] = None,
        noise=None,
        keep_stop_frame: Optional[bool] = None,
        decode_wav: bool = True,
        decode_graph: Optional[bool] = None,
        **kwargs,
    ) -> Dict[str, torch.Tensor]:
        """text ``[N]`` ids -> ``feat_gen [T, odim]`` (+ ``wav [T * hop]`` with a latent space).

        prompt_latents ``[P, odim]``: voice prompt (its text must be part of ``text``);
        the prompt is decoded together with the new frames and its audio cut off.
        ``use_teacher_forcing``: return ``feats`` resynthesised (the latent-space upper bound).
        ``decode_graph``: replay the decode step as a CUDA graph (None: on CUDA only).
        """
        if use_teacher_forcing:
            if feats is None:
                raise ValueError("use_teacher_forcing needs feats (the reference latents)")
            return self.outputs_for(feats, None, decode_wav)
        prompt = None if prompt_latents is None else prompt_latents[None].to(text.device)
        out = self.generate_batch(
            text[None], torch.tensor([text.shape[0]], device=text.device), prompt, None,
            max_frames, noise, seed, cfg_scale=cfg_scale, stop_threshold=stop_threshold,
            keep_stop_frame=keep_stop_frame, decode_graph=decode_graph,
        )
        frames = out.frames[0, : int(out.lengths[0])]
        result = self.outputs_for(frames, prompt_latents, decode_wav)
        result["stop_probs"] = out.stop_probs[0]
        return result

    def outputs_for(self, frames, prompt_latents=None, decode_wav=True) -> Dict[str, torch.Tensor]:
        """frames ``[T, odim]`` -> dict(feat_gen, and wav when a latent space is attached)."""
        result = dict(feat_gen=frames)
        if self.latent_space is not None and decode_wav:
            result["wav"] = self.frames_to_wav(frames, prompt_latents)
        return result

    def frames_to_wav(self, frames: torch.Tensor, prompt_latents: Optional[torch.Tensor] = None) -> torch.Tensor:
        """frames ``[T, odim]`` -> ``[T * hop]``; a prompt is decoded in front for context, then cut."""
        if self.latent_space is None:
            raise RuntimeError("this model has no latent space attached (tts_conf.latent); cannot make audio")
        if prompt_latents is None or prompt_latents.shape[0] == 0:
            return self.latent_space.decode(frames[None].float())[0]
        joint = torch.cat([prompt_latents.to(frames), frames], 0)[None].float()
        return self.latent_space.decode(joint)[0, prompt_latents.shape[0] * self.latent_space.hop_length :]


# ESPnet reads the defaults of ``tts_conf`` from this signature (``--print_config``).
SLED.__init__.__signature__ = inspect.Signature([
    inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    inspect.Parameter("idim", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int),
    inspect.Parameter("odim", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int),
    *(inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in tts_conf_defaults().items()),
])
