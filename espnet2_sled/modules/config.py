"""The model's configuration: one plain dataclass, built once from ``tts_conf``, passed down whole.

``SLEDConfig`` holds the shape of the network and how it is used (backbone, generator,
sequence layout, waveform side, decoding defaults); ``LossConfig`` holds the training
objective. ``SLEDLM(config)``, ``Decoder(config)`` and ``FrameGenerator(config)`` read the
fields they need; nothing below re-declares them. Every field is named as its YAML key
(``tts_conf.<field>``), so one concept has one name from the config file down.

Why the loss options are a second object (``SLEDConfig.loss``): none of them changes the
network or decoding; they describe one call of ``SLEDLM.loss``, which takes them as one
argument (a test or a held-out score may ask for another objective from the same model).

The YAML stays flat (``tts_conf: {dim: .., energy_beta: .., ...}``): ``from_tts_conf``
routes each key to its object and refuses unknown ones by name. Values are checked here,
once, with messages that name the ``tts_conf`` key and what it must be.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

LAYOUTS = ("offline", "packed", "upstream")


@dataclass
class LossConfig:
    """The training objective (``SLEDLM.loss``); every field is a ``tts_conf`` key."""

    energy_beta: float = 1.0  # distance exponent of the energy score, in (0, 2)
    energy_samples: int = 2  # generator samples per frame (M >= 2)
    stop_pos_weight: float = 100.0  # BCE weight of the single "stop" position per utterance
    cfg_dropout: float = 0.1  # fraction of rows trained without text (classifier-free guidance)
    self_feed: float = 0.0  # fraction of input frames replaced by the model's own samples (training)
    # guided attention (0 = off, as the paper): see modules/guided_attention.py
    guided_attention_weight: float = 0.0
    guided_attention_layers: Tuple[int, ...] = (1,)
    guided_attention_heads: int = 2
    guided_attention_sigma: float = 0.4

    def __post_init__(self):
        self.guided_attention_layers = tuple(int(i) for i in self.guided_attention_layers)
        if not 0.0 <= self.self_feed <= 1.0:
            raise ValueError(f"tts_conf.self_feed must lie in [0, 1] (got {self.self_feed})")
        if self.energy_samples < 2:
            raise ValueError(f"tts_conf.energy_samples must be >= 2 (got {self.energy_samples})")
        if not 0.0 < self.energy_beta < 2.0:
            raise ValueError(f"tts_conf.energy_beta must lie in (0, 2) (got {self.energy_beta})")
        if self.guided_attention_weight < 0 or self.guided_attention_sigma <= 0:
            raise ValueError("tts_conf.guided_attention_weight must be >= 0 and guided_attention_sigma > 0 "
                             f"(got {self.guided_attention_weight}, {self.guided_attention_sigma})")

    @property
    def guided(self) -> bool:
        """Whether the guided-attention loss is on."""
        return (self.guided_attention_weight > 0 and self.guided_attention_heads > 0
                and len(self.guided_attention_layers) > 0)


@dataclass
class SLEDConfig:
    """Everything that defines a SLED model. ``vocab_size`` / ``latent_dim`` are ESPnet's
    ``idim`` / ``odim``; the rest are ``tts_conf`` keys with the paper's values as defaults."""

    vocab_size: int
    latent_dim: int
    # backbone (paper: 1024 wide, 12 layers, 16 heads, SwiGLU 2752)
    dim: int = 1024
    layers: int = 12
    heads: int = 16
    ffn_dim: int = 2752
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    # Training-mode input perturbations, applied by every forward in training mode like dropout
    # (self_feed, which needs a pass of its own inside the loss, is a LossConfig field).
    frame_dropout: float = 0.0  # dropout on fed-back frame embeddings (training; 0 = upstream)
    frame_noise: float = 0.0  # std of Gaussian noise on fed-back frames (training; 0 = upstream)
    frame_drop: float = 0.0  # probability a fed-back frame is hidden whole (training; 0 = upstream)
    max_positions: int = 2048
    # per-frame generator
    generator_width: int = 1024
    generator_depth: int = 6
    noise_dim: int = 128
    # sequence layout (bos_id / eos_id None: the last token, ESPnet's <sos/eos>)
    layout: str = "offline"
    tokens_per_chunk: int = 5
    frames_per_chunk: int = 45
    bos_id: Optional[int] = None
    eos_id: Optional[int] = None
    # waveform side (None: frames only)
    latent: Optional[str] = None
    latent_conf: Optional[Dict[str, Any]] = None
    # decoding defaults (overridable per call)
    cfg_scale: float = 2.0
    stop_threshold: float = 0.8
    keep_stop_frame: bool = False
    # 1st percentile of frames per text token over the training data (recipe stage 4 measures
    # it, stage 5 stores it here); decoded output well below it is reported as implausibly
    # short (espnet2_sled/decode_report.py). None: a fallback rate (imported models).
    min_frames_per_token: Optional[float] = None
    # the training objective
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self):
        if self.bos_id is None:
            self.bos_id = self.vocab_size - 1
        if self.eos_id is None:
            self.eos_id = self.vocab_size - 1
        if self.layout not in LAYOUTS:
            raise ValueError(f"tts_conf.layout must be offline, packed or upstream, got '{self.layout}'")
        if self.dim % self.heads:
            raise ValueError(f"tts_conf.dim {self.dim} is not divisible by tts_conf.heads {self.heads}")
        if not 0.0 <= self.frame_dropout < 1.0:
            raise ValueError(f"tts_conf.frame_dropout must lie in [0, 1) (got {self.frame_dropout})")
        if not 0.0 <= self.frame_drop < 1.0:
            raise ValueError(f"tts_conf.frame_drop must lie in [0, 1) (got {self.frame_drop})")
        if not self.frame_noise >= 0.0:
            raise ValueError(f"tts_conf.frame_noise must be >= 0 (got {self.frame_noise})")
        loss = self.loss
        if loss.guided_attention_weight > 0:
            bad = [i for i in loss.guided_attention_layers if not 0 <= i < self.layers]
            if bad or not 0 < loss.guided_attention_heads <= self.heads:
                raise ValueError(
                    f"tts_conf.guided_attention_layers={list(loss.guided_attention_layers)} / guided_attention_heads="
                    f"{loss.guided_attention_heads} do not fit a decoder of {self.layers} layers x {self.heads} heads")

    @classmethod
    def from_tts_conf(cls, vocab_size: int, latent_dim: int, tts_conf: Mapping[str, Any]) -> "SLEDConfig":
        """ESPnet's ``idim``, ``odim`` and the flat ``tts_conf`` mapping -> a checked config."""
        unknown = sorted(set(tts_conf) - set(tts_conf_defaults()))
        if unknown:
            raise ValueError(f"unknown tts_conf key(s) {unknown}; known keys: {sorted(tts_conf_defaults())}")
        for key, value in tts_conf.items():
            check_type(key, value)
        loss_keys = {f.name for f in dataclasses.fields(LossConfig)}
        loss = LossConfig(**{k: v for k, v in tts_conf.items() if k in loss_keys})
        return cls(vocab_size, latent_dim, loss=loss, **{k: v for k, v in tts_conf.items() if k not in loss_keys})


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "a mapping", tuple: "a list of integers"}


def _expected(annotation) -> Tuple[type, bool]:
    """A field's annotation -> (its plain type, whether None is allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        return _expected(inner)[0], True
    origin = typing.get_origin(annotation) or annotation
    return {Tuple: tuple, Dict: dict}.get(origin, origin), False


def check_type(key: str, value: Any) -> None:
    """A ``tts_conf`` value of the wrong type -> ``TypeError`` naming the key, the value and the type."""
    fields = {f.name: f for f in dataclasses.fields(SLEDConfig) + dataclasses.fields(LossConfig)}
    hints = {**typing.get_type_hints(SLEDConfig), **typing.get_type_hints(LossConfig)}
    if key not in fields or key == "loss":
        return
    kind, optional = _expected(hints[key])
    if value is None:
        ok = optional
    elif kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is tuple:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    elif kind is dict:
        ok = isinstance(value, Mapping)
    else:
        ok = isinstance(value, kind)
    if not ok:
        expected = _TYPE_NAMES.get(kind, kind.__name__) + (" or null" if optional else "")
        default = fields[key].default
        example = "" if default is dataclasses.MISSING or default is None else f", e.g. {default!r}"
        raise TypeError(f"tts_conf.{key} is {value!r} ({type(value).__name__}); expected {expected}{example} "
                        "(fix it in the model's config.yaml)")


def tts_conf_defaults() -> Dict[str, Any]:
    """Every ``tts_conf`` key with its default (``SLEDConfig`` and ``LossConfig`` fields)."""
    defaults = {}
    for f in dataclasses.fields(SLEDConfig) + dataclasses.fields(LossConfig):
        if f.name in ("vocab_size", "latent_dim", "loss"):
            continue
        defaults[f.name] = f.default
    return defaults


__all__ = ["LAYOUTS", "LossConfig", "SLEDConfig", "check_type", "tts_conf_defaults"]
