"""Synthetic upstream-format checkpoints: the exact key names and shapes of the released
SLED-TTS folders (spec §9) at a tiny size, random values, plus a small RoBERTa-format BPE."""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer

TOKENIZER_TEXT = [
    "The cat sat on the mat, and the dog didn't.",
    "Numbers like 123, 4,560 and 3.14 are read aloud.",
    "\u201cQuoted speech,\u201d she said \u2014 then left.",
    "Hello there! How are you doing today?",
    "Caf\u00e9s in Paris serve cr\u00e8me br\u00fbl\u00e9e.",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440. \u4f60\u597d\u4e16\u754c\u3002",
    "It's a long way to the top if you want to rock and roll.",
]


def write_tokenizer(folder: Path, vocab_size: int = 400) -> int:
    """Train a byte-level BPE and save it the way RoBERTa does (vocab.json + merges.txt,
    <s> <pad> </s> <unk> at ids 0..3). Returns the vocabulary size."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TOKENIZER_TEXT * 4, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    bpe.save_model(str(folder))
    return len(json.loads((folder / "vocab.json").read_text()))


def tiny_config(vocab_size: int, streaming: bool = False, latent_dim: int = 8) -> dict:
    config = dict(
        architectures=["SpeechLlamaForCausalLM"], model_type="speech_llama",
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=8,
        intermediate_size=48, hidden_act="silu", rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None,
        max_position_embeddings=256, vocab_size=vocab_size, bos_token_id=0, eos_token_id=2,
        pad_token_id=None, attention_bias=False, mlp_bias=False, pretraining_tp=1,
        tie_word_embeddings=False, initializer_range=0.02,
        dropout=0.1, attention_dropout=0.1, activation_dropout=0.1,
        vae_embed_dim=latent_dim, diffloss_d=3, diffloss_w=24, noise_channels=6, training_cfg=0.1,
        torch_dtype="float32", transformers_version="4.46.0.dev0",
    )
    if streaming:
        config.update(stream_n=3, stream_m=4)
    return config


def random_state(config: dict, seed: int = 0) -> dict:
    """Every upstream tensor, listed independently of the importer (spec §9 table)."""
    g = torch.Generator().manual_seed(seed)
    D, F, V = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    Z, W, E = config["vae_embed_dim"], config["diffloss_w"], config["noise_channels"]

    def mat(*shape, scale=None):
        scale = scale if scale is not None else 1.0 / shape[-1] ** 0.5
        return torch.randn(*shape, generator=g) * scale

    def norm(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    state = {"model.embed_tokens.weight": mat(V, D, scale=1.0), "model.norm.weight": norm(D)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[p + f"self_attn.{name}.weight"] = mat(D, D)
        state[p + "mlp.gate_proj.weight"] = mat(F, D)
        state[p + "mlp.up_proj.weight"] = mat(F, D)
        state[p + "mlp.down_proj.weight"] = mat(D, F)
        state[p + "input_layernorm.weight"] = norm(D)
        state[p + "post_attention_layernorm.weight"] = norm(D)
    state.update({
        "z_proj.weight": mat(D, Z), "z_proj.bias": 0.1 * mat(D, scale=1.0),
        "z_proj_ln.weight": norm(D), "z_proj_ln.bias": 0.1 * mat(D, scale=1.0),
        "eos_head.weight": mat(1, D),
        "bceloss.pos_weight": torch.tensor([100.0]),
        "scoreloss.net.cond_embed.weight": mat(W, D), "scoreloss.net.cond_embed.bias": 0.1 * mat(W, scale=1.0),
        "scoreloss.net.input_proj.weight": mat(W, E), "scoreloss.net.input_proj.bias": 0.1 * mat(W, scale=1.0),
        "scoreloss.net.final_layer.linear.weight": mat(Z, W),
        "scoreloss.net.final_layer.linear.bias": 0.1 * mat(Z, scale=1.0),
        "scoreloss.net.final_layer.adaLN_modulation.1.weight": mat(2 * W, W),
        "scoreloss.net.final_layer.adaLN_modulation.1.bias": 0.1 * mat(2 * W, scale=1.0),
    })
    for k in range(config["diffloss_d"]):
        p = f"scoreloss.net.res_blocks.{k}."
        state.update({
            p + "noise_ln.weight": norm(W), p + "noise_ln.bias": 0.1 * mat(W, scale=1.0),
            p + "mlp.0.weight": mat(W, W), p + "mlp.0.bias": 0.1 * mat(W, scale=1.0),
            p + "mlp.2.weight": mat(W, W), p + "mlp.2.bias": 0.1 * mat(W, scale=1.0),
            p + "adaLN_modulation.1.weight": mat(3 * W, W), p + "adaLN_modulation.1.bias": 0.1 * mat(3 * W, scale=1.0),
        })
    return state


def write_checkpoint(folder: Path, streaming: bool = False, latent_dim: int = 8, seed: int = 0, state=None):
    """A complete upstream-style folder. Returns (config, state)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tokenizer(folder)
    config = tiny_config(vocab_size, streaming, latent_dim)
    state = random_state(config, seed) if state is None else state
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(
        {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 2, "transformers_version": "4.46.0.dev0"}))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return config, state
