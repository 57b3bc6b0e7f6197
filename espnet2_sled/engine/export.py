"""Export the decode step to ONNX once per model, quantize it with the runtime's own tools,
and cache the file beside the model, keyed by a hash of the weights and the options.

Why ONNX Runtime (issue #22): it is the runtime already pinned here (the scorers use it),
installs as one wheel with our pins, and on the 2-core AMD host its fp32 MatMul streams
weights at about the copy floor and its dynamic int8 MatMul makes the decoder's linears
~3x cheaper; OpenVINO was not measured in this work (time; see bench/results).
The exporter is torch's TorchScript one (``dynamo=False``): it needs no extra package
(the dynamo exporter needs onnxscript) and traces this fixed-shape step exactly.

Cache: ``<dir>/step-<hash>-cfg<copies>-<quantize>.onnx``; the hash covers every weight
of the model (a model whose weights changed gets a new file: a stale export is never used)
and the format version below. Written to a temporary name and renamed, so a parallel
decode never reads a half-written file. ``dir`` is ``engine/`` beside the model file, or
the user cache dir when that is read-only (or the model has no file).
"""

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch

from espnet2_sled.engine.step_graph import StepGraph, input_names, output_names
from espnet2_sled.modules.sled_lm import SLEDLM

FORMAT_VERSION = "3"  # bump when StepGraph's inputs/outputs or arithmetic change
QUANTIZE = ("none", "int8", "int4")
INT4_BLOCK = 32
# Gap to fp32 at the same noise (modules/precision.py's measure: mean |frame difference| /
# std of the fp32 frames, 20 fed-back frames, CFG 2), measured on the tests' tiny model
# (seeds 0-2): int8 0.020 / 0.044 / 0.022; int4 0.51 / 0.45 / 0.17 (4-bit weights in blocks
# of 32 on a 32-wide model, the generator included: coarse). Asserted (about twice the
# worst) by tests/engine/test_engine.py; the paper config's is printed by bench/bench_engine.py.
INT8_DRIFT = 0.09
INT4_DRIFT = 1.0
OPSET = 17


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(
            "decode_backend='onnxruntime' needs ONNX Runtime and onnx: pip install -e \".[cpu_engine]\" "
            "(or decode_backend='torch')") from e
    return onnxruntime


def weights_hash(lm: SLEDLM) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes, bytes) of ``lm``."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(FORMAT_VERSION.encode())
    for name, tensor in sorted(lm.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "espnet2_sled" / "engine"


def writable_dir(preferred: Optional[Path]) -> Path:
    """``preferred`` if it can be created and written to, else the user cache dir."""
    for directory in ([preferred] if preferred is not None else []) + [user_cache_dir()]:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if os.access(directory, os.W_OK):
                return directory
        except OSError:
            continue
    raise OSError(f"no writable directory for the decode engine's export (tried {preferred} and "
                  f"{user_cache_dir()}); pass engine_dir=<a writable directory>")


def exported_step(lm: SLEDLM, copies: int, quantize: str = "none", directory: Optional[Path] = None,
                  digest: Optional[str] = None) -> Path:
    """The ONNX file of ``lm``'s decode step (``copies`` rows per utterance), exported and
    quantized on first use, then reused while the weights are the same."""
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)} (got '{quantize}')")
    require_onnxruntime()
    directory = writable_dir(directory)
    digest = digest or weights_hash(lm)
    path = directory / f"step-{digest}-cfg{copies}-{quantize}.onnx"
    if path.exists():
        return path
    if quantize == "none":
        write_atomically(path, lambda tmp: export_fp32(lm, copies, tmp))
    else:
        source = exported_step(lm, copies, "none", directory, digest)
        write_atomically(path, lambda tmp: QUANTIZERS[quantize](source, tmp))
    return path


def write_atomically(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared model's export from other users
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@torch.no_grad()
def export_fp32(lm: SLEDLM, copies: int, out: Path) -> None:
    """Trace ``StepGraph`` at batch 1, window 64, with batch and window left dynamic."""
    config = lm.config
    heads, head_dim, layers = lm.decoder.heads, lm.decoder.head_dim, len(lm.decoder.layers)
    rows, window = copies, 64
    graph = StepGraph(lm, copies).eval()
    past = [torch.zeros(rows, heads, window, head_dim) for _ in range(2 * layers)]
    args = (torch.zeros(rows, config.dim), torch.zeros(1, config.noise_dim), torch.ones(1),
            torch.zeros(rows, dtype=torch.long), torch.zeros(rows, window), *past)
    inputs, outputs = input_names(layers), output_names(layers)
    dynamic = {name: {0: "rows"} for name in inputs + outputs}
    dynamic["noise"] = dynamic["frame"] = dynamic["stop_prob"] = {0: "batch"}
    dynamic["cfg_scale"] = {}
    dynamic["past_mask"] = {0: "rows", 1: "window"}
    for name in inputs[5:]:
        dynamic[name] = {0: "rows", 2: "window"}
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, str(out), dynamo=False, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True)


def quantize_int8(source: Path, out: Path) -> None:
    """Dynamic int8 MatMuls (int8 weights, activations quantized per call): ONNX Runtime's
    ``quantize_dynamic``, per-output-channel weight scales."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])


def quantize_int4(source: Path, out: Path) -> None:
    """4-bit weights, block ``INT4_BLOCK``, int8 compute (``accuracy_level=4``): ONNX
    Runtime's ``MatMulNBitsQuantizer``."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), block_size=INT4_BLOCK, is_symmetric=True,
                                     accuracy_level=4)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)


QUANTIZERS = {"int8": quantize_int8, "int4": quantize_int4}
