"""An imported checkpoint computes what upstream computes.

The reference below is written from the spec (§2-§5, §7) with plain torch ops over the
*upstream* state dict and upstream's own conventions: left-padded text + right-padded
speech concatenated (offline), the padded interleaving with raw slot positions (streaming),
one LayerNorm over the whole sequence, HF-Llama layers with rotate-half RoPE, the AdaLN MLP
with [shift | scale | gate] chunks, the eos head, and the upstream loss formula. It shares
no code with espnet2_sled. It runs in float64; our model runs in float32.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from espnet2_sled.bin.import_upstream import import_checkpoint
from espnet2_sled.modules.layout import build_layout
from espnet2_sled.tasks.sled import SLEDTask
from synthetic import write_checkpoint

TOL = dict(rtol=1e-5, atol=2e-5)


# ------------------------------------------------------------------ reference (upstream math)
def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def rope(x, positions, theta):
    """x [B, H, L, hd], positions [B, L] (HF Llama: cat(freqs, freqs), rotate_half)."""
    hd = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    freqs = positions.double()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], -1)[:, None]
    return x * emb.cos() + rotate_half(x) * emb.sin()


def backbone(sd, cfg, x, mask, positions):
    """HF Llama over inputs_embeds: x [B, L, D] (already z_proj_ln'ed), mask [B, L] 0/1."""
    B, L, D = x.shape
    H = cfg["num_attention_heads"]
    hd = D // H
    eps = cfg["rms_norm_eps"]
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    allowed = causal[None] & mask.bool()[:, None, :]
    allowed = allowed | torch.eye(L, dtype=torch.bool)[None]  # masked queries: anything finite
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, sd[p + "input_layernorm.weight"], eps)
        q, k, v = (
            (h @ sd[p + f"self_attn.{n}_proj.weight"].T).view(B, L, H, hd).transpose(1, 2) for n in "qkv"
        )
        q, k = rope(q, positions, cfg["rope_theta"]), rope(k, positions, cfg["rope_theta"])
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D)
        x = x + att @ sd[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, sd[p + "post_attention_layernorm.weight"], eps)
        gate, up = h @ sd[p + "mlp.gate_proj.weight"].T, h @ sd[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ sd[p + "mlp.down_proj.weight"].T
    return rms_norm(x, sd["model.norm.weight"], eps)


def linear(sd, name, x):
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def generator(sd, cfg, z, eps):
    """ScoreLossZ's SimpleMLPAdaLN: trunk from z, AdaLN modulation from the noise."""
    n = linear(sd, "scoreloss.net.input_proj", eps)
    x = linear(sd, "scoreloss.net.cond_embed", z)
    W = cfg["diffloss_w"]
    for k in range(cfg["diffloss_d"]):
        p = f"scoreloss.net.res_blocks.{k}."
        cond = F.layer_norm(n, (W,), sd[p + "noise_ln.weight"], sd[p + "noise_ln.bias"], 1e-6)
        shift, scale, gate = linear(sd, p + "adaLN_modulation.1", F.silu(cond)).chunk(3, -1)
        u = F.layer_norm(x, (W,), eps=1e-6) * (1 + scale) + shift
        u = linear(sd, p + "mlp.2", F.silu(linear(sd, p + "mlp.0", u)))
        x = x + gate * u
    shift, scale = linear(sd, "scoreloss.net.final_layer.adaLN_modulation.1", F.silu(n)).chunk(2, -1)
    return linear(sd, "scoreloss.net.final_layer.linear", F.layer_norm(x, (W,), eps=1e-6) * (1 + scale) + shift)


def embed(sd, ids, speech):
    return sd["model.embed_tokens.weight"][ids], linear(sd, "z_proj", speech)


def input_ln(sd, x):
    return F.layer_norm(x, (x.shape[-1],), sd["z_proj_ln.weight"], sd["z_proj_ln.bias"], 1e-6)


def upstream_loss(sd, cfg, z, stop_h, speech, speech_mask, noise):
    """L_ED over valid frames + masked-mean BCE(pos_weight 100) over positions 0..n_b.

    z [B, T, D] conditions frame t; stop_h [B, T+1, D]; noise [2, B, T, E]."""
    x1, x2 = generator(sd, cfg, z, noise[0]), generator(sd, cfg, z, noise[1])
    ell = (x1 - speech).norm(dim=-1) + (x2 - speech).norm(dim=-1) - (x1 - x2).norm(dim=-1)
    m = speech_mask.double()
    energy = (ell * m).sum() / m.sum()
    logits = (stop_h @ sd["eos_head.weight"].T).squeeze(-1)  # [B, T+1]
    B, T = speech_mask.shape
    n_b = speech_mask.sum(1)
    target = torch.zeros(B, T + 1, dtype=torch.float64)
    target[torch.arange(B), n_b] = 1.0
    weight = torch.cat([torch.ones(B, 1, dtype=torch.float64), m], 1)
    bce = -(100.0 * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))
    stop = (bce * weight).sum() / weight.sum()
    return energy, stop, logits


def offline_reference(sd, cfg, texts, speech, speech_lengths, dropped, noise):
    """texts: list of id lists incl. <s> .. </s>; left-padded as upstream's collator does."""
    B, N = len(texts), max(len(t) for t in texts)
    T = speech.shape[1]
    ids = torch.ones(B, N, dtype=torch.long)  # <pad> = 1
    text_mask = torch.zeros(B, N, dtype=torch.long)
    for b, t in enumerate(texts):
        ids[b, N - len(t):] = torch.tensor(t)
        text_mask[b, N - len(t):] = 1
    for b in range(B):
        if dropped[b]:  # CFG dropout: only the last text slot (</s>) stays visible
            text_mask[b, : N - 1] = 0
    speech_mask = (torch.arange(T)[None] < speech_lengths[:, None]).long()
    e_text, e_speech = embed(sd, ids, speech)
    x = input_ln(sd, torch.cat([e_text, e_speech], 1))
    mask = torch.cat([text_mask, speech_mask], 1)
    h = backbone(sd, cfg, x, mask, torch.arange(N + T).expand(B, -1))
    z, stop_h = h[:, -(T + 1):-1], h[:, -(T + 1):]
    energy, stop, logits = upstream_loss(sd, cfg, z, stop_h, speech, speech_mask, noise)
    return h, mask, energy, stop, logits


def streaming_reference(sd, cfg, texts, speech, speech_lengths, dropped, noise):
    """Right-padded text, padded interleaving (§5.1), raw slot positions, predecessor conditioning."""
    n, m = cfg["stream_n"], cfg["stream_m"]
    B, N = len(texts), max(len(t) for t in texts)
    T = speech.shape[1]
    ids = torch.ones(B, N, dtype=torch.long)
    text_mask = torch.zeros(B, N, dtype=torch.long)
    for b, t in enumerate(texts):
        ids[b, : len(t)] = torch.tensor(t)
        text_mask[b, : len(t)] = 1
    for b in range(B):
        if dropped[b]:  # whole text hidden, then slot 0 re-enabled as </s>
            text_mask[b] = 0
            text_mask[b, 0] = 1
            ids[b, 0] = 2
    speech_mask = (torch.arange(T)[None] < speech_lengths[:, None]).long()
    K = min(N // n, T // m)
    order = []  # ("t", i) / ("f", j)
    for k in range(K):
        order += [("t", i) for i in range(k * n, (k + 1) * n)] + [("f", j) for j in range(k * m, (k + 1) * m)]
    order += [("t", i) for i in range(K * n, min(K * n + n, N))]
    order += [("f", j) for j in range(K * m, T)]
    order += [("t", i) for i in range(min(K * n + n, N), N)]
    e_text, e_speech = embed(sd, ids, speech)
    x = torch.stack([e_text[:, i] if kind == "t" else e_speech[:, i] for kind, i in order], 1)
    mask = torch.stack([text_mask[:, i] if kind == "t" else speech_mask[:, i] for kind, i in order], 1)
    L = len(order)
    h = backbone(sd, cfg, input_ln(sd, x), mask, torch.arange(L).expand(B, -1))
    frame_slot = [s for s, (kind, _) in enumerate(order) if kind == "f"]  # frame j sits at frame_slot[j]

    def previous_unmasked(b, s):
        return max(j for j in range(s) if mask[b, j])

    z = torch.stack([torch.stack([h[b, previous_unmasked(b, s)] for s in frame_slot]) for b in range(B)])
    z_last = h[:, frame_slot[-1]]
    stop_h = torch.cat([z, z_last[:, None]], 1)
    energy, stop, logits = upstream_loss(sd, cfg, z, stop_h, speech, speech_mask, noise)
    return h, mask, energy, stop, logits


# ------------------------------------------------------------------ fixtures
def imported(tmp_path: Path, streaming: bool):
    config, state = write_checkpoint(tmp_path / "src", streaming=streaming, seed=3 + streaming)
    out = import_checkpoint(tmp_path / "src", tmp_path / "exp", latent="none")
    model, _ = SLEDTask.build_model_from_file(out / "config.yaml", out / "model.pth", "cpu")
    model.eval()
    return config, {k: v.double() for k, v in state.items()}, model.tts


def batch(config, seed=0):
    """Three utterances of different text and speech lengths (ids without markers)."""
    g = torch.Generator().manual_seed(seed)
    V, Z = config["vocab_size"], config["vae_embed_dim"]
    text_lengths = torch.tensor([7, 3, 5])
    speech_lengths = torch.tensor([9, 13, 4])
    B, N, T = 3, int(text_lengths.max()), int(speech_lengths.max())
    text = torch.zeros(B, N, dtype=torch.long)
    for b in range(B):
        text[b, : text_lengths[b]] = torch.randint(4, V, (int(text_lengths[b]),), generator=g)
    speech = torch.randn(B, T, Z, generator=g)
    speech = speech * (torch.arange(T)[None, :, None] < speech_lengths[:, None, None])
    noise = torch.randn(2, B, T, config["noise_channels"], generator=g)
    return text, text_lengths, speech, speech_lengths, noise


@pytest.mark.parametrize("streaming", [False, True], ids=["offline", "streaming"])
@pytest.mark.parametrize("dropped", [(False, False, False), (False, True, False)], ids=["cond", "cfg_row"])
def test_teacher_forced_hidden_states_and_loss_match_upstream(tmp_path, streaming, dropped):
    config, sd, tts = imported(tmp_path, streaming)
    assert tts.layout == ("upstream" if streaming else "offline")
    text, text_lengths, speech, speech_lengths, noise = batch(config)
    texts = [[0] + text[b, : text_lengths[b]].tolist() + [2] for b in range(len(text))]
    drop = torch.tensor(dropped)
    reference = streaming_reference if streaming else offline_reference
    h_ref, mask_ref, energy_ref, stop_ref, logits_ref = reference(
        sd, config, texts, speech.double(), speech_lengths, dropped, noise.double()
    )

    # Hidden states slot by slot: our layouts put every slot where upstream puts it.
    wrapped, wrapped_lengths = tts.wrap_text(text, text_lengths)
    layout = build_layout(wrapped_lengths, speech_lengths, tts.layout, tts.tokens_per_chunk, tts.frames_per_chunk, drop)
    assert torch.equal(layout.visible, mask_ref.bool())
    with torch.no_grad():
        h = tts.lm.hidden_states(wrapped, wrapped_lengths, speech, speech_lengths, layout, tts.eos_id)
    visible = layout.visible
    torch.testing.assert_close(h[visible].double(), h_ref[visible], **TOL)

    # Stop logits at upstream's T+1 positions (padding rows masked by the loss weights).
    stop_h = h.gather(1, layout.stop_slot[..., None].expand(-1, -1, h.shape[-1]))
    logits = tts.lm.stop_head(stop_h).squeeze(-1)
    weight = torch.cat(
        [torch.ones(3, 1, dtype=torch.bool), torch.arange(speech.shape[1])[None] < speech_lengths[:, None]], 1
    )
    torch.testing.assert_close(logits[weight].double(), logits_ref[weight], **TOL)

    # The loss for the same noises (full padded grid, upstream's convention) and CFG rows.
    with torch.no_grad():
        loss, stats, _ = tts(text, text_lengths, speech, speech_lengths, text_dropout=drop, noise=noise)
    torch.testing.assert_close(stats["energy_distance"].reshape(()).double(), energy_ref, **TOL)
    torch.testing.assert_close(stats["stop_loss"].reshape(()).double(), stop_ref, **TOL)
    torch.testing.assert_close(loss.reshape(()).double(), energy_ref + stop_ref, **TOL)

    # The same loss with the noise given for the real frames only ([M, F, noise_dim]).
    frame_mask = torch.arange(speech.shape[1])[None] < speech_lengths[:, None]
    with torch.no_grad():
        loss_f, _, _ = tts(text, text_lengths, speech, speech_lengths, text_dropout=drop, noise=noise[:, frame_mask])
    torch.testing.assert_close(loss_f, loss)


def test_generator_matches_upstream_for_given_noise(tmp_path):
    config, sd, tts = imported(tmp_path, False)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(17, config["hidden_size"], generator=g)
    eps = torch.randn(17, config["noise_channels"], generator=g)
    with torch.no_grad():
        ours = tts.lm.generator(z, eps)
    torch.testing.assert_close(ours.double(), generator(sd, config, z.double(), eps.double()), **TOL)


def reference_decode(sd, cfg, texts, noise, cfg_scale, steps, prompt=None):
    """Offline generation (§3.5, §7) by full recomputation each step: left-padded text,
    batch doubling with the unconditional rows seeing only </s> (and the speech prompt, §6),
    positions cumsum(mask) - 1, guidance on the hidden state, stop probability from the
    conditional state. prompt [B, P, Z] latent frames or None."""
    B, N = len(texts), max(len(t) for t in texts)
    ids = torch.ones(B, N, dtype=torch.long)
    text_mask = torch.zeros(B, N, dtype=torch.long)
    for b, t in enumerate(texts):
        ids[b, N - len(t):] = torch.tensor(t)
        text_mask[b, N - len(t):] = 1
    uncond_mask = text_mask.clone()
    uncond_mask[:, : N - 1] = 0
    ids2, mask_text2 = torch.cat([ids, ids]), torch.cat([text_mask, uncond_mask])
    frames, probs = [], []
    given = [] if prompt is None else list(prompt.unbind(1))
    for step in range(steps):
        history = given + frames
        speech = torch.stack(history, 1) if history else torch.zeros(B, 0, cfg["vae_embed_dim"], dtype=torch.float64)
        speech = torch.cat([speech, speech])
        e_text, e_speech = embed(sd, ids2, speech)
        mask = torch.cat([mask_text2, torch.ones(2 * B, len(history), dtype=torch.long)], 1)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        h = backbone(sd, cfg, input_ln(sd, torch.cat([e_text, e_speech], 1)), mask, positions)[:, -1]
        h_c, h_u = h[:B], h[B:]
        frames.append(generator(sd, cfg, h_u + cfg_scale * (h_c - h_u), noise[:, step]))
        probs.append(torch.sigmoid(h_c @ sd["eos_head.weight"].T).squeeze(-1))
    return torch.stack(frames, 1), torch.stack(probs, 1)


def test_offline_decoding_matches_upstream_for_given_noise(tmp_path):
    config, sd, tts = imported(tmp_path, False)
    text, text_lengths, *_ = batch(config, seed=2)
    steps = 6
    noise = torch.randn(3, steps, config["noise_channels"], generator=torch.Generator().manual_seed(9))
    texts = [[0] + text[b, : text_lengths[b]].tolist() + [2] for b in range(len(text))]
    ref_frames, ref_probs = reference_decode(sd, config, texts, noise.double(), 2.0, steps)
    out = tts.generate_batch(text, text_lengths, max_frames=steps, noise=noise, cfg_scale=2.0, stop_threshold=2.0)
    torch.testing.assert_close(out.frames.double(), ref_frames, **TOL)
    torch.testing.assert_close(out.stop_probs.double(), ref_probs, **TOL)
    # without guidance (cfg_scale 1): the conditional branch alone
    ref_frames1, _ = reference_decode(sd, config, texts, noise.double(), 1.0, steps)
    out1 = tts.generate_batch(text, text_lengths, max_frames=steps, noise=noise, cfg_scale=1.0, stop_threshold=2.0)
    torch.testing.assert_close(out1.frames.double(), ref_frames1, **TOL)


def reference_stream_decode(sd, cfg, tokens, noise, cfg_scale, steps):
    """Upstream's simulated streaming loop (§5.3), batch 1, by full recomputation: read
    ``stream_n`` tokens (after the pending frame), write ``stream_m`` frames while text is
    unread, then write until the cap; the unconditional context is ``[</s>, f_0, f_1, ...]``."""
    n, m = cfg["stream_n"], cfg["stream_m"]

    def last_hidden(items):
        x = torch.stack(
            [sd["model.embed_tokens.weight"][v] if kind == "t" else linear(sd, "z_proj", v) for kind, v in items]
        )
        L = len(items)
        return backbone(sd, cfg, input_ln(sd, x[None]), torch.ones(1, L), torch.arange(L)[None])[0, -1]

    cond, frames, probs, read = [], [], [], 0
    while len(frames) < steps:
        chunk = tokens[read : read + n]
        cond += [("t", t) for t in chunk]
        read += len(chunk)
        writes = None if read == len(tokens) else m
        while (writes is None or writes > 0) and len(frames) < steps:
            h_c = last_hidden(cond)
            h_u = last_hidden([("t", 2)] + [("f", f) for f in frames])
            frame = generator(sd, cfg, h_u + cfg_scale * (h_c - h_u), noise[len(frames)])
            probs.append(torch.sigmoid(h_c @ sd["eos_head.weight"].T)[0])
            frames.append(frame)
            cond.append(("f", frame))
            writes = None if writes is None else writes - 1
    return torch.stack(frames), torch.stack(probs)


def test_streaming_decoding_matches_upstream_for_given_noise(tmp_path):
    from espnet2_sled.streaming import StreamingSession

    config, sd, tts = imported(tmp_path, True)
    ids = torch.randint(4, config["vocab_size"], (8,), generator=torch.Generator().manual_seed(4)).tolist()
    steps = 17  # turns: read 3 / write 4, three times, then the last token and writes to the cap
    noise = torch.randn(1, steps, config["noise_channels"], generator=torch.Generator().manual_seed(6))
    ref_frames, ref_probs = reference_stream_decode(sd, config, [0] + ids + [2], noise[0].double(), 2.0, steps)

    def run(stop_threshold):
        session = StreamingSession(tts, tokenize=lambda _: ids, cfg_scale=2.0, stop_threshold=stop_threshold,
                                   max_frames=steps, noise=noise, decode_audio=False)
        chunks = list(session.push_text("text")) + list(session.end_text())
        return torch.cat([c.frames for c in chunks]) if chunks else torch.zeros(0, config["vae_embed_dim"])

    torch.testing.assert_close(run(2.0).double(), ref_frames, **TOL)
    # stop where upstream stops (the frame sampled at the stop step is dropped, as eval_stream.py does)
    stop_step = int(ref_probs.argmax())
    frames = run(float(ref_probs[stop_step]) - 1e-4)
    assert frames.shape[0] == stop_step
    torch.testing.assert_close(frames.double(), ref_frames[:stop_step], **TOL)


def test_voice_prompted_decoding_matches_upstream(tmp_path):
    """Continuation / cloning (§6): the prompt frames follow the text in both CFG branches."""
    config, sd, tts = imported(tmp_path, False)
    text, text_lengths, speech, *_ = batch(config, seed=7)
    prompt = speech[:, :4]  # every row: 4 prompt frames
    steps = 4
    noise = torch.randn(3, steps, config["noise_channels"], generator=torch.Generator().manual_seed(8))
    texts = [[0] + text[b, : text_lengths[b]].tolist() + [2] for b in range(len(text))]
    ref_frames, ref_probs = reference_decode(sd, config, texts, noise.double(), 2.0, steps, prompt.double())
    out = tts.generate_batch(text, text_lengths, prompt=prompt, max_frames=steps, noise=noise, cfg_scale=2.0,
                             stop_threshold=2.0)
    torch.testing.assert_close(out.frames.double(), ref_frames, **TOL)
    torch.testing.assert_close(out.stop_probs.double(), ref_probs, **TOL)
