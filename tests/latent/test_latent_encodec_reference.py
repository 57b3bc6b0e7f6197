"""Our Encodec against second implementations with the same (random) weights: Meta's
``encodec`` package (via a ``.th`` in Meta's key format), HF transformers (via a
``save_pretrained`` directory) and ESPnet's SEANet modules. Each also exercises a loader."""

import math

import pytest
import torch

from espnet2_sled.latent import EncodecLatent
from latent_testutils import fill_reference_state

LENGTHS = [1, 321, 24000 + 17]


def padded(audio: torch.Tensor) -> torch.Tensor:
    """Right-pad ``[B, S]`` with zeros to a whole number of 320-sample frames, as ``encode`` does."""
    return torch.nn.functional.pad(audio, (0, math.ceil(audio.shape[-1] / 320) * 320 - audio.shape[-1]))


@pytest.fixture(scope="module")
def meta(encodec, tmp_path_factory):
    from encodec import EncodecModel

    model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.set_target_bandwidth(6.0)
    path = tmp_path_factory.mktemp("meta") / "encodec_24khz-d7cc33bc.th"
    torch.save(fill_reference_state(model.state_dict(), encodec), path)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval(), EncodecLatent(weights=path), EncodecLatent(weights=path, decoder_padding="reflect")


@pytest.fixture(scope="module")
def hf(encodec, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    model = transformers.EncodecModel(transformers.EncodecConfig())
    model.load_state_dict(fill_reference_state(model.state_dict(), encodec))
    directory = tmp_path_factory.mktemp("hf") / "encodec_24khz"
    model.save_pretrained(directory)
    return model.eval(), EncodecLatent(weights=directory), EncodecLatent(weights=directory, decoder_padding="reflect")


@pytest.mark.parametrize("samples", LENGTHS)
def test_meta_package_gives_same_codes_latents_and_audio(meta, speech, samples):
    model, ours, ours_reflect = meta
    audio = padded(speech(samples)[None])
    with torch.no_grad():
        codes = model.encode(audio[:, None])[0][0]  # [B, 32 or 8, T]
        latents = model.quantizer.decode(codes.transpose(0, 1)).transpose(1, 2)
        audio_out = model.decoder(latents.transpose(1, 2))[:, 0]
    assert codes.shape[1] == 8
    assert torch.equal(ours.encode_codes(audio), codes)
    torch.testing.assert_close(ours.encode(audio), latents, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_reflect.decode(latents), audio_out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("samples", LENGTHS)
def test_hf_transformers_gives_same_codes_latents_and_audio(hf, speech, samples):
    model, ours, ours_reflect = hf
    audio = padded(speech(samples, seed=2)[None])
    with torch.no_grad():
        codes = model.encode(audio[:, None], bandwidth=6.0).audio_codes[0]  # [B, 8, T]
        latents = model.quantizer.decode(codes.transpose(0, 1)).transpose(1, 2)
        audio_out = model.decoder(latents.transpose(1, 2))[:, 0]
    assert torch.equal(ours.encode_codes(audio), codes)
    torch.testing.assert_close(ours.encode(audio), latents, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours_reflect.decode(latents), audio_out, rtol=0, atol=1e-5)


def test_replicate_padding_only_changes_the_start(meta, speech):
    """The streamable decoder differs from upstream's reflect padding near t=0 only."""
    _, ours, ours_reflect = meta
    latents = ours.encode(speech(48000))
    difference = (ours.decode(latents) - ours_reflect.decode(latents)).abs()[0]
    scale = ours_reflect.decode(latents).abs().max()
    assert difference[24000:].max() < 1e-3 * scale  # after 1 s: negligible


def test_espnet_seanet_modules_give_same_encoder_and_decoder(encodec, speech):
    """ESPnet's own SEANet (gan_codec) loaded from the Meta-format dict, as the integration notes say."""
    seanet = pytest.importorskip("espnet2.gan_codec.shared.encoder.seanet")
    seanet_dec = pytest.importorskip("espnet2.gan_codec.shared.decoder.seanet")
    from encodec import EncodecModel

    meta_state = fill_reference_state(EncodecModel.encodec_model_24khz(pretrained=False).state_dict(), encodec)
    common = dict(channels=1, dimension=128, n_filters=32, n_residual_layers=1, ratios=[8, 5, 4, 2],
                  causal=True, residual_kernel_size=3, true_skip=False, lstm=2, norm="weight_norm")
    enc, dec = seanet.SEANetEncoder(**common), seanet_dec.SEANetDecoder(**common)
    for module, prefix in ((enc, "encoder."), (dec, "decoder.")):
        part = {k[len(prefix):]: v for k, v in meta_state.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(part, strict=False)
        assert not unexpected and not [k for k in missing if "weight" in k or "bias" in k]
    audio = padded(speech(8000)[None])
    reflect = EncodecLatent(weights="random", decoder_padding="reflect")
    with torch.no_grad():
        # ESPnet folds g * v / |v| itself: equal to float rounding of the fold
        torch.testing.assert_close(encodec.encoder(audio[:, None]), enc(audio[:, None]), rtol=1e-5, atol=1e-4)
        latents = encodec.encode(audio)
        torch.testing.assert_close(reflect.decode(latents), dec(latents.transpose(1, 2))[:, 0], rtol=1e-5, atol=1e-4)
