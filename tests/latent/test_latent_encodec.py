"""EncodecLatent: shapes, the codebook-sum definition, fp32 under autocast, streaming =
one-shot, weight sources and their errors."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import espnet2_sled.latent as espnet2_sled_latent
from espnet2_sled.latent import EncodecLatent, build_latent_space
from espnet2_sled.latent import weights as weights_mod


@pytest.mark.parametrize("samples", [1, 319, 320, 321, 24000 + 17])
def test_frames_are_ceil_samples_over_hop(encodec, speech, samples):
    audio = speech(samples)
    latents = encodec.encode(audio)
    assert latents.shape == (1, math.ceil(samples / 320), 128)
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()
    assert encodec.decode(latents).shape == (1, latents.shape[1] * 320)


def test_latent_is_sum_of_eight_codebook_vectors(encodec, speech):
    audio = torch.stack([speech(9000, seed=0), speech(9000, seed=1)])
    codes = encodec.encode_codes(audio)
    assert codes.shape == (2, 8, math.ceil(9000 / 320))
    assert len(set(codes[0, 0].tolist())) > 1, "random latents should depend on the input"
    books = encodec.quantizer.codebooks
    expected = sum(books[k][codes[:, k]] for k in range(8))
    torch.testing.assert_close(encodec.encode(audio), expected, rtol=0, atol=1e-6)
    # and it is not the pre-quantisation encoder output
    pre = encodec.encoder(torch.nn.functional.pad(audio, (0, 280))[:, None]).transpose(1, 2)
    assert (pre - expected).abs().max() > 1e-2


def test_codes_are_nearest_codewords_level_by_level(encodec, speech):
    audio = speech(4160)  # whole frames: encode() zero-pads, the bare encoder does not
    residual = encodec.encoder(audio[None, None]).transpose(1, 2)[0]
    codes = encodec.encode_codes(audio)[0]
    for level, book in enumerate(encodec.quantizer.codebooks):
        nearest = torch.cdist(residual, book).argmin(dim=-1)
        assert (nearest == codes[level]).float().mean() > 0.99  # cdist rounding may flip near-ties
        residual = residual - book[codes[level]]


def test_batch_equals_single_and_channels_rates(encodec, speech):
    a, b = speech(6400, seed=3), speech(6400, seed=4)
    batch = encodec.encode(torch.stack([a, b]))
    torch.testing.assert_close(batch[1:], encodec.encode(b), rtol=0, atol=1e-5)
    stereo = torch.stack([a, a])[None]  # [1, 2, S]: identical channels -> same as mono
    torch.testing.assert_close(encodec.encode(stereo), encodec.encode(a), rtol=0, atol=1e-5)
    assert encodec.encode(speech(16000, rate=16000), sample_rate=16000).shape[1] == 75


def test_fp32_inside_autocast(encodec, speech):
    audio = speech(3200)
    reference = encodec.encode(audio)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        latents = encodec.encode(audio)
        decoded = encodec.decode(latents)
    assert latents.dtype == torch.float32 and decoded.dtype == torch.float32
    torch.testing.assert_close(latents, reference, rtol=0, atol=0)


@pytest.mark.parametrize("chunks", [[1], [3], [45], [2, 7, 1, 13, 4, 30]])
def test_streaming_decode_equals_one_shot(encodec, speech, chunks):
    frames = encodec.encode(torch.stack([speech(19200, seed=5), speech(19200, seed=6)]))  # [2, 60, 128]
    one_shot = encodec.decode(frames)
    stream = encodec.stream_decoder(batch_size=2)
    pieces, start, i = [], 0, 0
    while start < frames.shape[1]:
        size = chunks[i % len(chunks)]
        piece = stream.push(frames[:, start:start + size])
        assert piece.shape == (2, min(size, frames.shape[1] - start) * 320)
        pieces.append(piece)
        start, i = start + size, i + 1
    torch.testing.assert_close(torch.cat(pieces, 1), one_shot, rtol=0, atol=1e-4)


def test_stream_rejects_wrong_batch(encodec):
    with pytest.raises(ValueError, match="batch_size=1"):
        encodec.stream_decoder(1).push(torch.zeros(2, 1, 128))
    with pytest.raises(ValueError, match=r"\[B, T, 128\]"):
        encodec.decode(torch.zeros(1, 128, 5))


def test_random_weights_ignore_global_rng_and_match_across_processes(encodec):
    torch.manual_seed(123)
    torch.rand(10)
    again = EncodecLatent(weights="random")
    for (name, p), q in zip(encodec.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
    # a fresh process with a different global seed; the parent package is stubbed so that
    # the child does not pay for ESPnet's import (the latent package must not need it)
    package_dir = str(Path(espnet2_sled_latent.__file__).parents[1])
    code = ("import sys, types, torch; pkg = types.ModuleType('espnet2_sled');"
            f"pkg.__path__ = [{package_dir!r}]; sys.modules['espnet2_sled'] = pkg;"
            "torch.manual_seed(7); from espnet2_sled.latent import EncodecLatent;"
            "m = EncodecLatent(weights='random');"
            "print(sum(float(p.double().sum()) for p in m.state_dict().values()))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "espnet2." not in other.stderr
    here = sum(float(p.double().sum()) for p in encodec.state_dict().values())
    assert float(other.stdout.strip().splitlines()[-1]) == here


def test_missing_weights_error_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        EncodecLatent(weights=None)
    message = str(info.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / weights_mod.META_FILE) in message
    assert weights_mod.META_URL in message and "huggingface-cli download facebook/encodec_24khz" in message
    with pytest.raises(FileNotFoundError, match="do not exist"):
        EncodecLatent(weights=tmp_path / "nope.th")


def test_cache_lookup_finds_meta_file(tmp_path, monkeypatch, encodec):
    from encodec import EncodecModel

    reference = EncodecModel.encodec_model_24khz(pretrained=False).state_dict()
    from latent_testutils import fill_reference_state

    target = tmp_path / "torch" / "hub" / "checkpoints" / weights_mod.META_FILE
    target.parent.mkdir(parents=True)
    torch.save(fill_reference_state(reference, encodec), target)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    found = EncodecLatent(weights=None)
    assert found.provenance.loaded_from == str(target)


def test_deferred_weights_need_a_state_dict(encodec, speech):
    deferred = build_latent_space("encodec", weights="deferred")
    with pytest.raises(RuntimeError, match="load_state_dict"):
        deferred.encode(speech(320))
    deferred.load_state_dict(encodec.state_dict())
    torch.testing.assert_close(deferred.encode(speech(3200)), encodec.encode(speech(3200)))


def test_build_latent_space_rejects_unknown_name():
    with pytest.raises(ValueError, match="encodec"):
        build_latent_space("wavlm")
