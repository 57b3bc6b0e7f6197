"""The speed options end to end on a trained debug model: ``--quantize int8``,
``--decode_graph`` and ``--decode_backend onnxruntime`` through the decoding CLI,
``quantize="int8"`` and the engine through the Python API (offline call and streaming
session); int8 stays within the documented drift from fp32, the fp32 engine within 1e-4."""

import numpy as np
import pytest
import torch

from espnet2_sled.bin import sled_inference, sled_train
from espnet2_sled.modules.precision import INT8_DRIFT, is_quantized
from espnet2_sled.text2speech import SLEDText2Speech
from factory import train_args, write_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("speed")
    data, exp = root / "data", root / "exp"
    write_dataset(data)
    sled_train.main(train_args(data, exp))
    return data, exp


def drift(frames, reference):
    return float(np.abs(frames - reference).mean() / reference.std())


def cli_frames(data, exp, out, *extra):
    sled_inference.main([
        "--output_dir", str(out), "--train_config", str(exp / "config.yaml"), "--model_file", str(exp / "2epoch.pth"),
        "--data_path_and_name_and_type", f"{data}/text,text,text", "--max_frames", "16", "--stop_threshold", "1.5",
        "--batch_size", "4", *extra,
    ])
    scp = dict(line.split() for line in (out / "norm/feats.scp").read_text().splitlines())
    return {key: np.load(path) for key, path in scp.items()}


def test_cli_int8_and_decode_graph_switch(trained, tmp_path):
    data, exp = trained
    fp32 = cli_frames(data, exp, tmp_path / "fp32")
    no_graph = cli_frames(data, exp, tmp_path / "nograph", "--decode_graph", "false")
    int8 = cli_frames(data, exp, tmp_path / "int8", "--quantize", "int8")
    assert set(fp32) == set(int8) == set(no_graph) and len(fp32) == 8
    for key in fp32:
        assert np.array_equal(no_graph[key], fp32[key])  # CPU default: no graph either way
        assert int8[key].shape == fp32[key].shape == (16, 8)
        assert 0 < drift(int8[key], fp32[key]) <= INT8_DRIFT, key
    with pytest.raises(SystemExit):  # argparse rejects an unknown quantization
        cli_frames(data, exp, tmp_path / "bad", "--quantize", "int3")
    with pytest.raises(ValueError, match="quantize=int4 needs decode_backend=onnxruntime"):
        cli_frames(data, exp, tmp_path / "bad", "--quantize", "int4")


def test_cli_and_api_onnxruntime_engine(trained, tmp_path):
    """--decode_backend onnxruntime: the PyTorch step's frames (<= 1e-4), offline through the
    CLI (batch 4, CFG 2) and streaming through the API; the export is cached beside the model."""
    pytest.importorskip("onnxruntime")
    data, exp = trained
    fp32 = cli_frames(data, exp, tmp_path / "fp32")
    engine = cli_frames(data, exp, tmp_path / "engine", "--decode_backend", "onnxruntime")
    assert set(engine) == set(fp32) and len(fp32) == 8
    for key in fp32:
        assert engine[key].shape == fp32[key].shape and np.abs(engine[key] - fp32[key]).max() <= 1e-4, key
    assert len(list((exp / "engine").glob("step-*-cfg2-none.onnx"))) == 1
    kw = dict(train_config=exp / "config.yaml", model_file=exp / "2epoch.pth", max_frames=16, stop_threshold=1.5)
    text = "the cat sat on the mat."
    streams = []
    for backend in ("torch", "onnxruntime"):
        t2s = SLEDText2Speech(decode_backend=backend, **kw)
        session = t2s.stream(seed=3)
        chunks = list(session.push_text(text)) + list(session.end_text())
        streams.append(torch.cat([c.frames for c in chunks]).numpy())
    assert t2s.tts.lm.decode_engine.sessions  # the engine ran the streamed steps
    assert streams[0].shape == streams[1].shape and np.abs(streams[0] - streams[1]).max() <= 1e-4


def test_api_int8_offline_and_streaming(trained):
    _, exp = trained
    kw = dict(train_config=exp / "config.yaml", model_file=exp / "2epoch.pth", max_frames=16, stop_threshold=1.5)
    fp32, int8 = SLEDText2Speech(**kw), SLEDText2Speech(quantize="int8", **kw)
    assert is_quantized(int8.tts.lm) and not is_quantized(fp32.tts.lm)
    text = "the cat sat on the mat."
    reference = fp32(text, seed=3)["feat_gen"].numpy()
    offline = int8(text, seed=3)["feat_gen"].numpy()
    assert offline.shape == reference.shape and 0 < drift(offline, reference) <= INT8_DRIFT
    session = int8.stream(seed=3, decode_graph=False)
    chunks = list(session.push_text(text)) + list(session.end_text())
    streamed = torch.cat([c.frames for c in chunks]).numpy()
    assert streamed.shape == reference.shape and drift(streamed, reference) <= INT8_DRIFT
