"""int8 (CPU) and bf16 decoding: opt-in, bounded drift from fp32 at the same noise, and the
parts that set the output's scale (generator output, stop head, latent decoder) stay fp32."""

import copy

import pytest
import torch

from espnet2_sled.latent import build_latent_space
from espnet2_sled.modules.generation import generate
from espnet2_sled.modules.precision import BF16_DRIFT, INT8_DRIFT, is_quantized, prepare_for_decoding
from factory import tiny_sled

FRAMES = 20


def decode(model, noise, **kw):
    text = torch.tensor([[3, 5, 7, 2, 9, 4]])
    wrapped, wl = model.wrap_text(text, torch.tensor([6]))
    with torch.no_grad():
        return generate(model.lm, wrapped, wl, model.eos_id, cfg_scale=2.0, stop_threshold=2.0,
                        max_frames=FRAMES, noise=noise, **kw)


@pytest.mark.parametrize("option, bound", [(dict(quantize="int8"), INT8_DRIFT),
                                           (dict(decode_dtype="bfloat16"), BF16_DRIFT)])
def test_drift_from_fp32_is_within_the_documented_bound(option, bound):
    for seed in range(3):
        model = tiny_sled(seed=seed).eval()
        noise = torch.randn(1, FRAMES, model.lm.noise_dim, generator=torch.Generator().manual_seed(seed))
        reference = decode(model, noise)
        low = copy.deepcopy(model)
        prepare_for_decoding(low.lm, **option)
        out = decode(low, noise)
        assert out.frames.dtype == torch.float32 and torch.isfinite(out.frames).all()
        drift = (out.frames - reference.frames).abs().mean() / reference.frames.std()
        assert 0 < drift <= bound, (seed, float(drift))  # 0 < : the option did change the arithmetic
        # the fixed-shape step and the eager step agree under the option too
        eager = decode(low, noise, fixed_shape=False)
        assert (eager.frames - out.frames).abs().max() <= (1e-5 if "quantize" in option else 1e-2)


def test_what_stays_fp32():
    model = tiny_sled().eval()
    model.latent_space = build_latent_space("mel", n_mels=8)
    int8, bf16 = copy.deepcopy(model), copy.deepcopy(model)
    prepare_for_decoding(int8.lm, quantize="int8")
    prepare_for_decoding(bf16.lm, decode_dtype="bfloat16")
    assert is_quantized(int8.lm.decoder) and is_quantized(int8.lm.generator.blocks)
    for block in int8.lm.decoder.layers:  # packed q | k | v and gate | up: int8, their float weights released
        assert block.self_attn.packed_qkv.quantized is not None and block.mlp.packed_gate_up.quantized is not None
        assert block.self_attn.q_proj.weight.numel() == 0 and block.mlp.up_proj.weight.numel() == 0
    assert not is_quantized(model.lm)
    assert bf16.lm.decoder.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    for m in (int8, bf16):
        assert type(m.lm.generator.output.linear) is torch.nn.Linear and type(m.lm.stop_head) is torch.nn.Linear
        assert m.lm.generator.output.linear.weight.dtype == torch.float32
        assert m.lm.stop_head.weight.dtype == torch.float32
        assert all(p.dtype == torch.float32 for p in m.latent_space.parameters())
        assert all(b.dtype == torch.float32 for b in m.latent_space.buffers() if b.is_floating_point())


def test_options_are_opt_in_and_checked():
    model = tiny_sled().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepare_for_decoding(model.lm)  # no option: nothing changes
    prepare_for_decoding(model.lm, "none", "float32")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="quantize"):
        prepare_for_decoding(model.lm, quantize="int4")
    with pytest.raises(ValueError, match="choose one"):
        prepare_for_decoding(model.lm, quantize="int8", decode_dtype="bfloat16")
