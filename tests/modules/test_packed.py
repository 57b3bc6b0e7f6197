"""Decode-step packing of q | k | v and gate | up (modules/packed.py, opt-in for fp32): the
frames of the separate linears (1e-6), no added memory, an unchanged state dict, no stale
weights after the parameters change (in place or by new storage), and off by default."""

import torch

from espnet2_sled.modules.generation import generate
from espnet2_sled.modules.packed import PackedLinear
from factory import random_batch, tiny_sled

TEXTS = [torch.tensor([3, 5, 7, 2, 9, 4]), torch.tensor([6, 1, 8])]


def decode(model, noise, **kw):
    padded = torch.nn.utils.rnn.pad_sequence(TEXTS, batch_first=True)
    wrapped, wl = model.wrap_text(padded, torch.tensor([len(t) for t in TEXTS]))
    prompt = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return generate(model.lm, wrapped, wl, model.eos_id, noise=noise, cfg_scale=2.0, stop_threshold=0.95,
                        max_frames=70, prompt=prompt, prompt_lengths=torch.tensor([3, 1]), **kw)


def unpacked_decode(model, noise, **kw):
    """The reference: the separate linears (the default), on a model that was never packed."""
    fresh = tiny_sled().eval()
    fresh.load_state_dict(model.state_dict())
    out = decode(fresh, noise, **kw)
    assert all(b.self_attn.packed_qkv is None and b.mlp.packed_gate_up is None for b in fresh.lm.decoder.layers)
    return out


def packed_sled():
    model = tiny_sled().eval()
    model.lm.decoder.packing = True
    return model


def packs(model):
    return [p for b in model.lm.decoder.layers for p in (b.self_attn.packed_qkv, b.mlp.packed_gate_up)]


def assert_same(a, b):
    assert torch.equal(a.lengths, b.lengths)
    assert (a.frames - b.frames).abs().max() <= 1e-6
    assert (a.stop_probs - b.stop_probs).abs().max() <= 1e-6


def test_packed_decoding_gives_the_frames_of_the_separate_linears():
    model = packed_sled()
    noise = torch.randn(2, 70, model.lm.noise_dim, generator=torch.Generator().manual_seed(0))
    for fixed_shape in (True, False):
        out = decode(model, noise, fixed_shape=fixed_shape)
        assert all(isinstance(p, PackedLinear) and p.intact() for p in packs(model))
        assert 8 < int(out.lengths.max()) < 70  # stopped, past a few stop checks
        assert_same(unpacked_decode(model, noise, fixed_shape=fixed_shape), out)


def test_packing_adds_no_memory_and_keeps_the_state_dict():
    model = packed_sled()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    decode(model, torch.randn(2, 70, model.lm.noise_dim))
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    for pack in packs(model):
        start = pack.weight.data_ptr()
        end = start + pack.weight.numel() * pack.weight.element_size()
        assert all(start <= linear.weight.data_ptr() < end for linear in pack.linears)  # views, not copies


def test_trained_or_replaced_weights_are_never_stale():
    model = packed_sled()
    noise = torch.randn(2, 70, model.lm.noise_dim)
    decode(model, noise)
    # in place: one optimizer step after a decode updates the packed weight through its views
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss, _, _ = model(*random_batch())
    loss.backward()
    assert model.lm.decoder.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0  # gradients reach the views
    optimizer.step()
    model.eval()
    assert all(p.intact() for p in packs(model))
    assert_same(unpacked_decode(model, noise), decode(model, noise))
    # new storage: the packing is no longer intact, so the forward falls back to the separate
    # linears, and the next decode packs again
    state = {k: v * 1.5 if "proj" in k else v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)
    assert not any(p.intact() for p in packs(model))
    x, positions = torch.randn(1, 4, 32), torch.arange(4)[None]
    visible = torch.ones(1, 4, dtype=torch.bool)
    with torch.no_grad():
        fallback = model.lm.decoder(x, positions, visible)
        never_packed = tiny_sled()
        never_packed.load_state_dict(state)
        expected = never_packed.lm.decoder(x, positions, visible)
    assert torch.equal(fallback, expected)
    out = decode(model, noise)
    assert all(p.intact() for p in packs(model))
    assert_same(unpacked_decode(model, noise), out)


def test_off_by_default():
    model = tiny_sled().eval()
    decode(model, torch.randn(2, 70, model.lm.noise_dim))
    assert packs(model) == [None] * 4
