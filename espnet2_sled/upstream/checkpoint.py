"""Released SLED-TTS checkpoints (HF ``speech_llama`` folders) <-> our ``SLED`` state dict.

Three pieces, each usable alone:

* ``tts_conf_from_config(config.json dict)``: upstream hyper-parameters -> our ``tts_conf``
  (offline model: layout ``offline``, stop at 0.8; a config with ``stream_n``/``stream_m``
  is the streaming model: layout ``upstream`` with those chunk sizes, stop at 0.5).
* ``upstream_shapes(config)``: every upstream key and the shape config.json implies.
* ``import_state_dict`` / ``export_state_dict``: rename keys (``KEY_MAP``), after checking
  that the upstream tensors are exactly the expected set with the expected shapes.

Only safetensors are read (a pickle can run code). No ESPnet imports here.
"""

import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch

# (upstream template, ours template) relative to our ``SLED`` module (ESPnet adds "tts.").
KEY_MAP: List[Tuple[str, str]] = [
    ("model.embed_tokens.weight", "lm.embed_tokens.weight"),
    ("model.layers.{i}.self_attn.{attn}.weight", "lm.decoder.layers.{i}.self_attn.{attn}.weight"),
    ("model.layers.{i}.mlp.{mlp}.weight", "lm.decoder.layers.{i}.mlp.{mlp}.weight"),
    ("model.layers.{i}.{rmsnorm}.weight", "lm.decoder.layers.{i}.{rmsnorm}.weight"),
    ("model.norm.weight", "lm.decoder.norm.weight"),
    ("z_proj.{p}", "lm.frame_proj.{p}"),
    ("z_proj_ln.{p}", "lm.input_norm.{p}"),
    ("eos_head.weight", "lm.stop_head.weight"),
    ("scoreloss.net.input_proj.{p}", "lm.generator.noise_proj.{p}"),
    ("scoreloss.net.cond_embed.{p}", "lm.generator.cond_proj.{p}"),
    ("scoreloss.net.res_blocks.{i}.noise_ln.{p}", "lm.generator.blocks.{i}.noise_norm.{p}"),
    ("scoreloss.net.res_blocks.{i}.mlp.0.{p}", "lm.generator.blocks.{i}.fc1.{p}"),
    ("scoreloss.net.res_blocks.{i}.mlp.2.{p}", "lm.generator.blocks.{i}.fc2.{p}"),
    ("scoreloss.net.res_blocks.{i}.adaLN_modulation.1.{p}", "lm.generator.blocks.{i}.modulation.{p}"),
    ("scoreloss.net.final_layer.adaLN_modulation.1.{p}", "lm.generator.output.modulation.{p}"),
    ("scoreloss.net.final_layer.linear.{p}", "lm.generator.output.linear.{p}"),
]
FIELDS = {
    "i": r"\d+",
    "p": r"weight|bias",
    "attn": r"q_proj|k_proj|v_proj|o_proj",
    "mlp": r"gate_proj|up_proj|down_proj",
    "rmsnorm": r"input_layernorm|post_attention_layernorm",
}
POS_WEIGHT_KEY = "bceloss.pos_weight"  # the stop BCE's pos_weight buffer (100): becomes stop_pos_weight
IGNORED_KEYS = ("model.rotary_emb.inv_freq",)  # non-persistent upstream; tolerated if a copy has it

REQUIRED_FIELDS = (
    "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "rms_norm_eps",
    "rope_theta", "max_position_embeddings", "vocab_size", "vae_embed_dim", "diffloss_d", "diffloss_w",
    "noise_channels",
)
# Training-only fields; upstream's ArchArguments defaults (scripts/train_libriheavy.py) when absent.
TRAINING_DEFAULTS = dict(dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, training_cfg=0.1)
OFFLINE_STOP_THRESHOLD = 0.8  # sled.py
STREAMING_STOP_THRESHOLD = 0.5  # sled_stream.py


class UpstreamCheckpointError(ValueError):
    """A checkpoint or config.json that does not describe a SLED-TTS model we can load."""


def _template_regex(template: str) -> "re.Pattern":
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(part) if k % 2 == 0 else f"(?P<{part}>{FIELDS[part]})" for k, part in enumerate(parts)
    )
    return re.compile(pattern + r"\Z")


_TO_OURS = [(_template_regex(up), ours) for up, ours in KEY_MAP]
_TO_UPSTREAM = [(_template_regex(ours), up) for up, ours in KEY_MAP]


def _rename(key: str, rules) -> Optional[str]:
    for regex, template in rules:
        match = regex.match(key)
        if match:
            return template.format(**match.groupdict())
    return None


def upstream_to_ours(key: str) -> Optional[str]:
    """``scoreloss.net.res_blocks.3.mlp.0.weight`` -> ``lm.generator.blocks.3.fc1.weight`` (None if unknown)."""
    return _rename(key, _TO_OURS)


def ours_to_upstream(key: str) -> Optional[str]:
    """Inverse of ``upstream_to_ours``; accepts an ESPnet ``tts.`` prefix."""
    return _rename(key[4:] if key.startswith("tts.") else key, _TO_UPSTREAM)


# ---------------------------------------------------------------------------- config.json
def read_config(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UpstreamCheckpointError(f"'{path}' does not exist; the checkpoint folder must hold config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UpstreamCheckpointError(f"'{path}' is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise UpstreamCheckpointError(f"'{path}' must hold a JSON object")
    return config


def check_config(config: Mapping[str, Any], source: str = "config.json") -> None:
    """Raise on missing fields and on architecture variants our model does not implement."""
    missing = [f for f in REQUIRED_FIELDS if config.get(f) is None]
    if missing:
        raise UpstreamCheckpointError(f"{source} lacks required field(s): {', '.join(missing)}")
    problems = []
    heads, dim = int(config["num_attention_heads"]), int(config["hidden_size"])
    if dim % heads:
        problems.append(f"hidden_size {dim} is not divisible by num_attention_heads {heads}")
    kv_heads = config.get("num_key_value_heads")
    if kv_heads is not None and int(kv_heads) != heads:
        problems.append(f"num_key_value_heads {kv_heads} != num_attention_heads {heads} (grouped-query attention)")
    head_dim = config.get("head_dim")
    if head_dim is not None and heads and int(head_dim) * heads != dim:
        problems.append(f"head_dim {head_dim} x {heads} heads != hidden_size {dim}")
    if config.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act '{config['hidden_act']}' (only silu/SwiGLU)")
    if config.get("rope_scaling") is not None:
        problems.append(f"rope_scaling {config['rope_scaling']} (only plain RoPE)")
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            problems.append(f"{flag} true (the decoder has no biases)")
    if int(config.get("pretraining_tp", 1) or 1) != 1:
        problems.append(f"pretraining_tp {config['pretraining_tp']}")
    if ("stream_n" in config) != ("stream_m" in config):
        problems.append("only one of stream_n / stream_m is set")
    if problems:
        raise UpstreamCheckpointError(f"{source} describes a model we cannot load: " + "; ".join(problems))
    model_type = config.get("model_type")
    if model_type not in (None, "speech_llama"):
        logging.warning(f"{source}: model_type '{model_type}' (expected speech_llama); trying anyway")


def is_streaming(config: Mapping[str, Any]) -> bool:
    return config.get("stream_n") is not None and config.get("stream_m") is not None


def tts_conf_from_config(config: Mapping[str, Any], source: str = "config.json") -> Dict[str, Any]:
    """config.json -> our ``tts_conf`` (without the latent space, which the caller adds)."""
    check_config(config, source)
    training = {}
    for field, default in TRAINING_DEFAULTS.items():
        value = config.get(field)
        if value is None:
            logging.warning(f"{source} has no '{field}'; using upstream's default {default}")
            value = default
        training[field] = float(value)
    streaming = is_streaming(config)
    conf = dict(
        dim=int(config["hidden_size"]),
        layers=int(config["num_hidden_layers"]),
        heads=int(config["num_attention_heads"]),
        ffn_dim=int(config["intermediate_size"]),
        rope_theta=float(config["rope_theta"]),
        norm_eps=float(config["rms_norm_eps"]),
        dropout=training["dropout"],
        attention_dropout=training["attention_dropout"],
        activation_dropout=training["activation_dropout"],
        max_positions=int(config["max_position_embeddings"]),
        generator_width=int(config["diffloss_w"]),
        generator_depth=int(config["diffloss_d"]),
        noise_dim=int(config["noise_channels"]),
        energy_beta=1.0,
        energy_samples=2,
        stop_pos_weight=100.0,
        cfg_dropout=training["training_cfg"],
        layout="upstream" if streaming else "offline",
        tokens_per_chunk=int(config["stream_n"]) if streaming else 5,
        frames_per_chunk=int(config["stream_m"]) if streaming else 45,
        bos_id=int(config["bos_token_id"]) if config.get("bos_token_id") is not None else 0,
        eos_id=int(config["eos_token_id"]) if config.get("eos_token_id") is not None else 2,
        cfg_scale=2.0,
        stop_threshold=STREAMING_STOP_THRESHOLD if streaming else OFFLINE_STOP_THRESHOLD,
        keep_stop_frame=False,
    )
    return conf


def config_from_tts_conf(tts_conf: Mapping[str, Any], vocab_size: int, latent_dim: int) -> Dict[str, Any]:
    """Our ``tts_conf`` -> an upstream-style config.json (for ``export``)."""
    config = dict(
        architectures=["SpeechLlamaForCausalLM"], model_type="speech_llama",
        hidden_size=tts_conf["dim"], num_hidden_layers=tts_conf["layers"],
        num_attention_heads=tts_conf["heads"], num_key_value_heads=tts_conf["heads"],
        head_dim=tts_conf["dim"] // tts_conf["heads"], intermediate_size=tts_conf["ffn_dim"],
        hidden_act="silu", rms_norm_eps=tts_conf["norm_eps"], rope_theta=tts_conf["rope_theta"],
        rope_scaling=None, attention_bias=False, mlp_bias=False, pretraining_tp=1,
        max_position_embeddings=tts_conf["max_positions"], vocab_size=vocab_size,
        bos_token_id=tts_conf["bos_id"], eos_token_id=tts_conf["eos_id"], pad_token_id=None,
        tie_word_embeddings=False, initializer_range=0.02,
        dropout=tts_conf["dropout"], attention_dropout=tts_conf["attention_dropout"],
        activation_dropout=tts_conf["activation_dropout"],
        vae_embed_dim=latent_dim, diffloss_d=tts_conf["generator_depth"], diffloss_w=tts_conf["generator_width"],
        noise_channels=tts_conf["noise_dim"], training_cfg=tts_conf["cfg_dropout"], torch_dtype="float32",
    )
    if tts_conf.get("layout", "offline") != "offline":
        config.update(stream_n=tts_conf["tokens_per_chunk"], stream_m=tts_conf["frames_per_chunk"])
    return config


def upstream_shapes(config: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
    """Every tensor a checkpoint with this config.json must hold (spec §9), with its shape."""
    D, F, V = int(config["hidden_size"]), int(config["intermediate_size"]), int(config["vocab_size"])
    Z, W, E = int(config["vae_embed_dim"]), int(config["diffloss_w"]), int(config["noise_channels"])
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    for i in range(int(config["num_hidden_layers"])):
        prefix = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{prefix}self_attn.{proj}.weight"] = (D, D)
        shapes[f"{prefix}mlp.gate_proj.weight"] = (F, D)
        shapes[f"{prefix}mlp.up_proj.weight"] = (F, D)
        shapes[f"{prefix}mlp.down_proj.weight"] = (D, F)
        shapes[f"{prefix}input_layernorm.weight"] = (D,)
        shapes[f"{prefix}post_attention_layernorm.weight"] = (D,)
    shapes.update({
        "z_proj.weight": (D, Z), "z_proj.bias": (D,),
        "z_proj_ln.weight": (D,), "z_proj_ln.bias": (D,),
        "eos_head.weight": (1, D),
        "scoreloss.net.cond_embed.weight": (W, D), "scoreloss.net.cond_embed.bias": (W,),
        "scoreloss.net.input_proj.weight": (W, E), "scoreloss.net.input_proj.bias": (W,),
        "scoreloss.net.final_layer.linear.weight": (Z, W), "scoreloss.net.final_layer.linear.bias": (Z,),
        "scoreloss.net.final_layer.adaLN_modulation.1.weight": (2 * W, W),
        "scoreloss.net.final_layer.adaLN_modulation.1.bias": (2 * W,),
    })
    for k in range(int(config["diffloss_d"])):
        prefix = f"scoreloss.net.res_blocks.{k}."
        shapes.update({
            f"{prefix}noise_ln.weight": (W,), f"{prefix}noise_ln.bias": (W,),
            f"{prefix}mlp.0.weight": (W, W), f"{prefix}mlp.0.bias": (W,),
            f"{prefix}mlp.2.weight": (W, W), f"{prefix}mlp.2.bias": (W,),
            f"{prefix}adaLN_modulation.1.weight": (3 * W, W), f"{prefix}adaLN_modulation.1.bias": (3 * W,),
        })
    return shapes


# ---------------------------------------------------------------------------- weights
def read_safetensors(src: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """model.safetensors (or sharded model-*.safetensors + index) from a checkpoint folder."""
    from espnet2_sled.checkpoint import read_safetensors_file  # names a truncated or corrupt file

    src = Path(src)
    single, index = src / "model.safetensors", src / "model.safetensors.index.json"
    if single.is_file():
        return read_safetensors_file(single)
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        state: Dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            if not (src / shard).is_file():
                raise UpstreamCheckpointError(f"'{index}' names shard '{shard}', which is not in '{src}'")
            state.update(read_safetensors_file(src / shard))
        return state
    pickles = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in src.glob(pattern))
    if pickles:
        raise UpstreamCheckpointError(
            f"'{src}' has no model.safetensors, only pickle weights ({', '.join(pickles)}); we read "
            "safetensors only, because unpickling can run arbitrary code. Download model.safetensors "
            "from the Hugging Face repo (huggingface-cli download ICTNLP/SLED-TTS-Libriheavy)"
        )
    raise UpstreamCheckpointError(f"'{src}' has no model.safetensors")


def check_state_dict(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Raise listing *all* missing keys, unexpected keys and shapes that disagree with config.json."""
    expected = upstream_shapes(config)
    tolerated = {POS_WEIGHT_KEY, *IGNORED_KEYS}
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected and k not in tolerated)
    wrong = [
        f"{k}: {tuple(state[k].shape)} (config.json implies {expected[k]})"
        for k in sorted(expected) if k in state and tuple(state[k].shape) != expected[k]
    ]
    if POS_WEIGHT_KEY in state and state[POS_WEIGHT_KEY].numel() != 1:
        wrong.append(f"{POS_WEIGHT_KEY}: {tuple(state[POS_WEIGHT_KEY].shape)} (expected (1,))")
    if missing or unexpected or wrong:
        lines = [f"{source} does not match its config.json:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {item}" for item in items]
        raise UpstreamCheckpointError("\n".join(lines))
    bad = [k for k in expected if not state[k].is_floating_point()]
    if bad:
        raise UpstreamCheckpointError(f"{source}: non-float tensors {bad}")


def import_state_dict(
    state: Mapping[str, torch.Tensor], config: Mapping[str, Any], prefix: str = "tts.", source: str = "checkpoint"
) -> Tuple[Dict[str, torch.Tensor], float]:
    """Upstream tensors -> (our state dict with ``prefix``, fp32; stop_pos_weight)."""
    check_state_dict(state, config, source)
    ours = {}
    for key in upstream_shapes(config):
        ours[prefix + upstream_to_ours(key)] = state[key].detach().to(torch.float32).contiguous().clone()
    pos_weight = float(state[POS_WEIGHT_KEY].reshape(-1)[0]) if POS_WEIGHT_KEY in state else 100.0
    return ours, pos_weight


def export_state_dict(state: Mapping[str, torch.Tensor], stop_pos_weight: float = 100.0) -> Dict[str, torch.Tensor]:
    """Our state dict (``tts.``-prefixed ESPnet keys or bare ``lm.`` keys) -> upstream names.

    Latent-space weights (``latent_space.*``) are not part of upstream's checkpoint and are
    dropped; ``bceloss.pos_weight`` is added, as upstream saves it.
    """
    out, unknown = {}, []
    for key, value in state.items():
        bare = key[4:] if key.startswith("tts.") else key
        if bare.startswith("latent_space."):
            continue
        name = ours_to_upstream(bare)
        if name is None:
            unknown.append(key)
        else:
            out[name] = value.detach().contiguous().clone()
    if unknown:
        raise UpstreamCheckpointError(f"keys with no upstream name: {', '.join(sorted(unknown))}")
    out[POS_WEIGHT_KEY] = torch.tensor([float(stop_pos_weight)])
    return out


__all__ = [
    "KEY_MAP", "UpstreamCheckpointError", "check_config", "check_state_dict", "config_from_tts_conf",
    "export_state_dict", "import_state_dict", "is_streaming", "ours_to_upstream", "read_config",
    "read_safetensors", "tts_conf_from_config", "upstream_shapes", "upstream_to_ours",
]
