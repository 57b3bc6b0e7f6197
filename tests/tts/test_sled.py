import numpy as np
import pytest
import torch
from espnet2.tasks.tts import tts_choices

from espnet2_sled.tasks.sled import SLEDInputCheck
from espnet2_sled.tts.sled import SLED
from factory import random_batch, tiny_sled


def test_registered_in_espnet():
    assert tts_choices.get_class("sled") is SLED


@pytest.mark.parametrize("layout", ["offline", "packed", "upstream"])
def test_forward_backward_finite(layout):
    model = tiny_sled(layout=layout, tokens_per_chunk=2, frames_per_chunk=3)
    text, tl, feats, fl = random_batch()
    loss, stats, weight = model(text, tl, feats, fl)
    loss.backward()
    assert torch.isfinite(loss) and weight == 3
    assert set(stats) >= {"loss", "energy_distance", "stop_loss"}
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_gradients_finite_at_upstream_initialisation():
    torch.manual_seed(0)
    model = SLED(idim=20, odim=8, dim=32, layers=2, heads=4, ffn_dim=64, generator_width=32,
                 generator_depth=2, noise_dim=8, max_positions=256)  # generator outputs exactly 0
    text, tl, feats, fl = random_batch()
    loss, _, _ = model(text, tl, feats, fl)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_is_deterministic_given_noise_and_dropout():
    model = tiny_sled().eval()
    text, tl, feats, fl = random_batch()
    F = int(fl.sum())
    noise = torch.randn(2, F, model.lm.noise_dim)
    dropout = torch.tensor([False, True, False])
    a = model(text, tl, feats, fl, text_dropout=dropout, noise=noise)[0]
    b = model(text, tl, feats, fl, text_dropout=dropout, noise=noise)[0]
    c = model(text, tl, feats, fl, text_dropout=torch.tensor([False] * 3), noise=noise)[0]
    assert a == b and a != c


def test_bf16_autocast_training_step_is_finite():
    model = tiny_sled()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    text, tl, feats, fl = random_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats, _ = model(text, tl, feats, fl)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = model.eval().inference(text[0, : tl[0]], max_frames=5, seed=0)
    assert torch.isfinite(out["feat_gen"]).all()


def test_text_is_wrapped_in_sentence_markers():
    model = tiny_sled(bos_id=0, eos_id=2)
    wrapped, lengths = model.wrap_text(torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([3, 2]))
    assert wrapped[0].tolist() == [0, 5, 6, 7, 2] and wrapped[1, :4].tolist() == [0, 8, 9, 2]
    assert lengths.tolist() == [5, 4]


def test_model_rejects_bad_batches():
    model = tiny_sled(max_positions=20)
    text, tl, feats, fl = random_batch()
    with pytest.raises(ValueError, match="width"):
        model(text, tl, feats[..., :5], fl)
    with pytest.raises(ValueError, match="empty"):
        model(text, torch.tensor([7, 0, 3]), feats, fl)
    bad = feats.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN/Inf for batch row 1"):
        model(text, tl, bad, fl)
    with pytest.raises(ValueError, match="max_positions"):
        model(text, tl, torch.randn(3, 30, 8), torch.tensor([30, 3, 3]))


def identity_tokenizer(uid, data):
    out = dict(data)
    out["text"] = np.array([1 + ord(c) % 10 for c in data["text"]], dtype=np.int64)
    return out


def test_input_check_names_the_utterance():
    check = SLEDInputCheck(identity_tokenizer, odim=8, max_positions=30)
    ok = check("u1", dict(text="hello", speech=np.zeros((10, 8), np.float32)))
    assert ok["text"].shape == (5,)
    with pytest.raises(ValueError, match="text is empty for utterance 'u12'"):
        check("u12", dict(text="  ", speech=np.zeros((10, 8), np.float32)))
    with pytest.raises(ValueError, match="'u3'.*28 frames exceed max_positions 30"):
        check("u3", dict(text="abc", speech=np.zeros((28, 8), np.float32)))
    with pytest.raises(ValueError, match="'u4' are 5 wide but --odim is 8"):
        check("u4", dict(text="abc", speech=np.zeros((4, 5), np.float32)))
    nan = np.zeros((4, 8), np.float32)
    nan[2, 3] = np.inf
    with pytest.raises(ValueError, match="'u5' contain NaN or Inf"):
        check("u5", dict(text="abc", speech=nan))


def test_codec_weights_come_from_the_checkpoint_not_the_file(tmp_path):
    """A config naming a codec file decodes from a checkpoint on a machine without that file."""
    missing = tmp_path / "encodec_24khz-d7cc33bc.th"
    trained = tiny_sled(odim=128, latent="encodec", latent_conf=dict(weights="random")).eval()
    deployed = tiny_sled(odim=128, latent="encodec", latent_conf=dict(weights=str(missing))).eval()
    frames = torch.randn(6, 128)
    with pytest.raises(RuntimeError, match="deferred"):
        deployed.frames_to_wav(frames)
    with pytest.raises(Exception, match="encodec_24khz"):
        deployed.load_latent_weights()  # training from scratch needs the file: a clear error
    deployed.load_state_dict(trained.state_dict(), strict=True)
    assert torch.equal(deployed.frames_to_wav(frames), trained.frames_to_wav(frames))


def test_tts_conf_keys_are_the_config_fields():
    """ESPnet reads tts_conf's defaults from SLED's signature (--print_config); an unknown key
    is refused by name, as a misspelt keyword argument was."""
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    from espnet2_sled.modules.config import tts_conf_defaults

    defaults = get_default_kwargs(SLED)
    assert set(defaults) == set(tts_conf_defaults()) and defaults["dim"] == 1024
    assert defaults["guided_attention_layers"] == [1] and defaults["eos_id"] is None
    with pytest.raises(ValueError, match="unknown tts_conf key.*'dimm'"):
        SLED(idim=20, odim=8, dimm=32)
