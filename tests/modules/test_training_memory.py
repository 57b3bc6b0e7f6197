"""Training memory: what the backward keeps is recomputed (attention with dropout on CPU, the
SwiGLU activation, the RMSNorms, the generator's noise features) or kept compactly (the
generator's gate), with the loss and gradients bitwise unchanged, dropout included."""

import torch

import espnet2_sled.modules.decoder as decoder_module
import espnet2_sled.modules.generator as generator_module
from factory import random_batch, tiny_sled


def loss_and_grads(model, batch, seed=5):
    text, text_lengths, feats, feats_lengths = batch
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # dropout masks
    noise = torch.randn(2, int(feats_lengths.sum()), model.lm.noise_dim, generator=torch.Generator().manual_seed(1))
    loss, _, _ = model(text, text_lengths, feats, feats_lengths, text_dropout=torch.tensor([False, True, False]),
                       noise=noise)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def saved_bytes(model, batch):
    """Bytes the autograd graph keeps for the backward (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t
    text, text_lengths, feats, feats_lengths = batch
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(text, text_lengths, feats, feats_lengths)
    return sum(seen.values())


def test_recomputation_keeps_loss_and_gradients_bitwise_and_saves_memory(monkeypatch):
    model = tiny_sled(dropout=0.1, attention_dropout=0.1, activation_dropout=0.1).train()
    batch = random_batch(B=3, N=7, T=40)
    loss, grads = loss_and_grads(model, batch)
    recomputed_bytes = saved_bytes(model, batch)
    # reference: the same model keeping every intermediate (no recomputation)
    for module in (decoder_module, generator_module):
        monkeypatch.setattr(module, "checkpoint", lambda fn, *args, **kw: fn(*args))
    reference_loss, reference_grads = loss_and_grads(model, batch)
    kept_bytes = saved_bytes(model, batch)
    assert torch.equal(loss, reference_loss)
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        assert torch.equal(grad, reference_grads[name]), name
    assert recomputed_bytes < 0.75 * kept_bytes, (recomputed_bytes, kept_bytes)
