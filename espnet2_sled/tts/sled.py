"""SLED as an ESPnet TTS model: ``forward`` returns the training losses, ``inference`` decodes.

ESPnet hands us token ids without sentence markers and precomputed latent frames as
``feats`` (``--odim <latent width>``, ``feats_extract`` None). We wrap the text as
``<s> text </s>`` (``bos_id`` / ``eos_id``; ESPnet token lists end with ``<sos/eos>``,
which is the default for both) and leave the math to ``SLEDLM``.

A latent space (``latent: encodec | mel``) can be attached for waveform decoding and
prompt encoding; its weights live in this module's state dict (frozen), so a packed
model decodes offline.
"""

from typing import Any, Dict, Optional, Sequence

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.tts.abs_tts import AbsTTS

from espnet2_sled.modules.generation import generate
from espnet2_sled.modules.sled_lm import SLEDLM


class SLED(AbsTTS):
    def __init__(
        self,
        idim: int,
        odim: int,
        # backbone (paper: 1024 wide, 12 layers, 16 heads, SwiGLU 2752)
        dim: int = 1024,
        layers: int = 12,
        heads: int = 16,
        ffn_dim: int = 2752,
        rope_theta: float = 10000.0,
        norm_eps: float = 1e-6,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.1,
        frame_dropout: float = 0.0,  # dropout on fed-back frame embeddings (training; 0 = upstream)
        frame_noise: float = 0.0,  # std of Gaussian noise on fed-back frames (training; 0 = upstream)
        self_feed: float = 0.0,  # fraction of input frames replaced by the model's own samples (training)
        max_positions: int = 2048,
        # per-frame generator
        generator_width: int = 1024,
        generator_depth: int = 6,
        noise_dim: int = 128,
        # loss
        energy_beta: float = 1.0,
        energy_samples: int = 2,
        stop_pos_weight: float = 100.0,
        cfg_dropout: float = 0.1,
        # guided attention (training only; 0 = off, as the paper): see modules/guided_attention.py
        guided_attention_weight: float = 0.0,
        guided_attention_layers: Sequence[int] = (1,),
        guided_attention_heads: int = 2,
        guided_attention_sigma: float = 0.4,
        # sequence layout
        layout: str = "offline",
        tokens_per_chunk: int = 5,
        frames_per_chunk: int = 45,
        bos_id: Optional[int] = None,
        eos_id: Optional[int] = None,
        # waveform side (None: frames only)
        latent: Optional[str] = None,
        latent_conf: Optional[Dict[str, Any]] = None,
        # decoding defaults (overridable per call)
        cfg_scale: float = 2.0,
        stop_threshold: float = 0.8,
        keep_stop_frame: bool = False,
    ):
        super().__init__()
        if layout not in ("offline", "packed", "upstream"):
            raise ValueError(f"tts_conf.layout must be offline, packed or upstream, got '{layout}'")
        if not 0.0 <= frame_dropout < 1.0:
            raise ValueError(f"tts_conf.frame_dropout must lie in [0, 1) (got {frame_dropout})")
        if not frame_noise >= 0.0:
            raise ValueError(f"tts_conf.frame_noise must be >= 0 (got {frame_noise})")
        if not 0.0 <= self_feed <= 1.0:
            raise ValueError(f"tts_conf.self_feed must lie in [0, 1] (got {self_feed})")
        if energy_samples < 2:
            raise ValueError(f"tts_conf.energy_samples must be >= 2 (got {energy_samples})")
        if not 0.0 < energy_beta < 2.0:
            raise ValueError(f"tts_conf.energy_beta must lie in (0, 2) (got {energy_beta})")
        if guided_attention_weight < 0 or guided_attention_sigma <= 0:
            raise ValueError("tts_conf.guided_attention_weight must be >= 0 and guided_attention_sigma > 0 "
                             f"(got {guided_attention_weight}, {guided_attention_sigma})")
        if guided_attention_weight > 0:
            bad = [i for i in guided_attention_layers if not 0 <= int(i) < layers]
            if bad or not 0 < guided_attention_heads <= heads:
                raise ValueError(
                    f"tts_conf.guided_attention_layers={list(guided_attention_layers)} / guided_attention_heads="
                    f"{guided_attention_heads} do not fit a decoder of {layers} layers x {heads} heads")
        self.self_feed = self_feed
        self.guided = dict(guided_weight=guided_attention_weight, guided_layers=tuple(int(i) for i in guided_attention_layers),
                           guided_heads=guided_attention_heads, guided_sigma=guided_attention_sigma)
        self.idim, self.odim = idim, odim
        self.bos_id = idim - 1 if bos_id is None else bos_id
        self.eos_id = idim - 1 if eos_id is None else eos_id
        self.max_positions = max_positions
        self.energy_beta, self.energy_samples = energy_beta, energy_samples
        self.stop_pos_weight, self.cfg_dropout = stop_pos_weight, cfg_dropout
        self.layout, self.tokens_per_chunk, self.frames_per_chunk = layout, tokens_per_chunk, frames_per_chunk
        self.decode_defaults = dict(cfg_scale=cfg_scale, stop_threshold=stop_threshold, keep_stop_frame=keep_stop_frame)
        self.lm = SLEDLM(
            idim, odim, dim, layers, heads, ffn_dim, rope_theta, norm_eps, dropout,
            attention_dropout, activation_dropout, generator_width, generator_depth, noise_dim,
            frame_dropout=frame_dropout, frame_noise=frame_noise,
        )
        self.latent_space = None
        self.latent_name, self.latent_weights = latent, None
        if latent is not None:
            from espnet2_sled.latent import build_latent_space

            conf = dict(latent_conf or {})
            if "weights" in conf or latent == "encodec":
                # Codec weights come from the checkpoint when one is loaded; from the file only
                # when training starts (SLEDTask.build_model -> load_latent_weights). So a
                # packed model decodes on a machine that has no codec file.
                self.latent_weights = conf.get("weights")
                if self.latent_weights not in ("random", "deferred"):
                    conf["weights"] = "deferred"
            self.latent_conf = conf
            self.latent_space = build_latent_space(latent, **conf)
            if self.latent_space.latent_dim != odim:
                raise ValueError(
                    f"latent space '{latent}' has width {self.latent_space.latent_dim} but the data "
                    f"(odim) has {odim}; extract the latents with the same latent_conf"
                )
            self.latent_space.requires_grad_(False)

    def load_latent_weights(self) -> None:
        """Fill a deferred codec from its weights file (or the usual caches when None)."""
        if self.latent_space is None or self.latent_conf.get("weights") != "deferred":
            return
        if self.latent_weights == "deferred":
            raise ValueError("latent_conf.weights is 'deferred': this config can only load a checkpoint that holds the codec")
        from espnet2_sled.latent import build_latent_space

        source = build_latent_space(self.latent_name, **dict(self.latent_conf, weights=self.latent_weights))
        self.latent_space.load_state_dict(source.state_dict())

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

    def check_batch(self, text_lengths, feats, feats_lengths, names=None):
        def who(b):
            return f"utterance '{names[b]}'" if names is not None else f"batch row {b}"

        if feats.shape[-1] != self.odim:
            raise ValueError(f"latent width {feats.shape[-1]} != model odim {self.odim}; re-extract or fix --odim")
        for b in range(len(text_lengths)):
            if int(text_lengths[b]) == 0:
                raise ValueError(f"text is empty for {who(b)}")
            total = int(text_lengths[b]) + 2 + int(feats_lengths[b])
            if total > self.max_positions:
                raise ValueError(
                    f"{who(b)}: {int(text_lengths[b])} text tokens + 2 markers + {int(feats_lengths[b])} "
                    f"frames = {total} exceeds max_positions {self.max_positions}; filter it out (recipe stage 4)"
                )
        if not bool(torch.isfinite(feats).all()):
            rows = [b for b in range(feats.shape[0]) if not bool(torch.isfinite(feats[b]).all())]
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
        self.check_batch(text_lengths, feats, feats_lengths, utt_id)
        feats = feats[:, : int(feats_lengths.max())]
        text = text[:, : int(text_lengths.max())]
        wrapped, wrapped_lengths = self.wrap_text(text, text_lengths)
        if text_dropout is None:
            text_dropout = torch.rand(text.shape[0]) < (self.cfg_dropout if self.training else 0.0)
        loss, stats = self.lm.loss(
            wrapped, wrapped_lengths, feats, feats_lengths, self.eos_id,
            self.layout, self.tokens_per_chunk, self.frames_per_chunk, text_dropout, noise,
            self.energy_samples, self.energy_beta, self.stop_pos_weight,
            **self.guided, self_feed=self.self_feed,
        )
        loss, stats, weight = force_gatherable((loss, stats, text.shape[0]), loss.device)
        return loss, stats, weight

    # ------------------------------------------------------------------ decoding
    def decode_options(self, **overrides) -> Dict[str, Any]:
        options = dict(self.decode_defaults)
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
