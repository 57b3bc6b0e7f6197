"""The CPU decode engine (espnet2_sled/engine): the fp32 step through ONNX Runtime gives
the PyTorch step's frames (<= 1e-4) and stop steps at the same noise, offline, batched and
streaming; a stale export is never used; int8 / int4 drift stays within the stated bounds;
a missing runtime names the extra to install."""

import subprocess
import sys

import pytest
import torch

from espnet2_sled.engine.export import INT4_DRIFT, INT8_DRIFT, writable_dir
from espnet2_sled.engine.session import use_decode_backend
from espnet2_sled.modules.generation import generate
from espnet2_sled.streaming import StreamingSession
from factory import REPO, tiny_sled

pytest.importorskip("onnxruntime")  # an optional extra (cpu_engine); CI installs it

TOL = 1e-4
VOCAB = {c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz .,")}
TEXT = "the cat sat on a mat, then it slept."


def decode(model, backend, directory, noise, quantize="none", **kw):
    texts = [torch.tensor([3, 5, 7, 2, 9, 4]), torch.tensor([6, 1]), torch.tensor([8, 8, 3, 1])]
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    wrapped, wl = model.wrap_text(padded, torch.tensor([len(t) for t in texts]))
    engine = use_decode_backend(model.lm, backend, quantize, directory=directory)
    try:
        with torch.no_grad():
            return generate(model.lm, wrapped, wl, model.eos_id, noise=noise, **kw), engine
    finally:
        use_decode_backend(model.lm, "torch")


def assert_same(reference, other):
    assert torch.equal(reference.lengths, other.lengths)  # identical stop steps
    assert reference.frames.shape == other.frames.shape
    assert (reference.frames - other.frames).abs().max() <= TOL
    assert (reference.stop_probs - other.stop_probs).abs().max() <= TOL


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_fp32_engine_gives_the_torch_step_frames_and_stops(cfg_scale, tmp_path):
    model = tiny_sled().eval()
    noise = torch.randn(3, 70, model.lm.noise_dim)
    for threshold, max_frames in ((0.8, 30), (0.91, 30), (1.1, 70)):  # 70: the window grows past 64 slots
        kw = dict(cfg_scale=cfg_scale, stop_threshold=threshold, max_frames=max_frames)
        reference, _ = decode(model, "torch", tmp_path, noise, **kw)
        out, engine = decode(model, "onnxruntime", tmp_path, noise, **kw)
        assert engine.sessions and engine.paths[2 if cfg_scale != 1 else 1].parent == tmp_path  # it ran
        assert_same(reference, out)
        if threshold < 1:
            assert len(set(reference.lengths.tolist())) > 1  # rows stopped at different steps
    assert len(list(tmp_path.glob("*.onnx"))) == 1  # exported once, reused


def test_streaming_through_the_engine_equals_torch(tmp_path):
    """Text fed by PyTorch between engine steps (packed layout) reaches the engine's buffers."""
    model = tiny_sled(idim=40, layout="packed", tokens_per_chunk=3, frames_per_chunk=4, max_positions=200).eval()
    noise = torch.randn(1, 200, model.lm.noise_dim)

    def stream(backend):
        engine = use_decode_backend(model.lm, backend, directory=tmp_path)
        session = StreamingSession(model, lambda t: [VOCAB[c] for c in t if c in VOCAB], stop_threshold=0.9,
                                   noise=noise, max_frames=60)
        chunks = [c for word in TEXT.split(" ") for c in session.push_text(word + " ")] + list(session.end_text())
        use_decode_backend(model.lm, "torch")
        assert engine is None or engine.sessions  # the engine did run the steps
        return torch.cat([c.frames for c in chunks])

    reference, out = stream("torch"), stream("onnxruntime")
    assert reference.shape == out.shape and reference.shape[0] > 10
    assert (reference - out).abs().max() <= TOL


def test_stale_export_is_never_used(tmp_path):
    model = tiny_sled().eval()
    noise = torch.randn(3, 20, model.lm.noise_dim)
    kw = dict(cfg_scale=2.0, stop_threshold=1.1, max_frames=20)
    first, engine = decode(model, "onnxruntime", tmp_path, noise, **kw)
    other = tiny_sled(seed=1)
    # new weights in place (the engine's model object, its export still on disk) ...
    model.load_state_dict(other.state_dict())
    model.lm.decode_engine = engine
    with torch.no_grad():
        texts = [torch.tensor([3, 5, 7, 2, 9, 4]), torch.tensor([6, 1]), torch.tensor([8, 8, 3, 1])]
        padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
        wrapped, wl = model.wrap_text(padded, torch.tensor([len(t) for t in texts]))
        again = generate(model.lm, wrapped, wl, model.eos_id, noise=noise, **kw)
    # ... and a fresh engine over a directory holding the old export
    fresh, _ = decode(model, "onnxruntime", tmp_path, noise, **kw)
    reference, _ = decode(model, "torch", tmp_path, noise, **kw)
    assert (first.frames - reference.frames).abs().max() > 1e-2  # the weights did change the output
    assert_same(reference, again)
    assert_same(reference, fresh)
    assert len(list(tmp_path.glob("*.onnx"))) == 2  # one export per set of weights


@pytest.mark.parametrize("quantize, bound", [("int8", INT8_DRIFT), ("int4", INT4_DRIFT)])
def test_quantized_engine_drift_is_bounded(quantize, bound, tmp_path):
    """Drift as modules/precision.py: mean |frame difference| / std of the fp32 frames, 20
    fed-back frames at CFG 2, no stop, seeds 0-2 (the bound is ~2x the worst measured)."""
    for seed in range(3):
        model = tiny_sled(seed=seed).eval()
        noise = torch.randn(3, 20, model.lm.noise_dim, generator=torch.Generator().manual_seed(seed))
        kw = dict(cfg_scale=2.0, stop_threshold=1.1, max_frames=20)
        reference, _ = decode(model, "torch", tmp_path, noise, **kw)
        low, _ = decode(model, "onnxruntime", tmp_path, noise, quantize, **kw)
        gap = float((low.frames - reference.frames).abs().mean() / reference.frames.std())
        assert 0 < gap <= bound, (quantize, seed, gap)


def test_unwritable_model_dir_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    blocker = tmp_path / "model.pth"
    blocker.write_text("a file, so no directory can be made under it")
    assert writable_dir(blocker / "engine") == tmp_path / "cache" / "espnet2_sled" / "engine"
    assert writable_dir(tmp_path / "exp" / "engine") == tmp_path / "exp" / "engine"


def test_missing_runtime_names_the_extra():
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from factory import tiny_sled\n"
            "from espnet2_sled.engine.session import use_decode_backend\n"
            "use_decode_backend(tiny_sled().lm, 'onnxruntime')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO / "tests", timeout=120)
    assert result.returncode != 0
    assert 'pip install -e ".[cpu_engine]"' in result.stderr and "decode_backend='torch'" in result.stderr
