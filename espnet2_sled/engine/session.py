"""The runtime side of the decode engine: one ONNX Runtime session per (model, CFG copies,
quantize), and per decode a ``EngineRun`` that binds the step's buffers by pointer.

The KV cache stays where the PyTorch prefill wrote it (``KVCache``). The graph reads each
layer's past as one contiguous ``[R, H, W, hd]`` buffer (``W`` = the step's attention window,
``KVCache.window``): those buffers are bound to the session by pointer once per window (a
copy of the live slots only when the window doubles, a handful of times per decode), and
each step the host writes the new slot's key/value (``[R, H, 1, hd]`` per layer, the graph's
only cache output) into them and into the PyTorch cache, in place. Slots fed by PyTorch
between steps (streaming text, prompts) are copied in before the next step.
"""

import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from espnet2_sled.engine.export import QUANTIZE, exported_step, require_onnxruntime, weights_hash
from espnet2_sled.engine.step_graph import input_names, output_names
from espnet2_sled.modules.precision import prepare_for_decoding
from espnet2_sled.modules.sled_lm import SLEDLM

DECODE_BACKENDS = ("torch", "onnxruntime")
# Not yet "onnxruntime": on the paper config (random weights) the fp32 engine's frames end
# 0.9e-4 (CFG 1) / 1.3e-4 (CFG 2) from the PyTorch step after 16 fed-back frames, the
# issue's bar being 1e-4 (bench/results/bench_cpu_engine.txt); the tests' models pass, and
# the whole suite has not been run with the engine as the default.
DEFAULT_BACKEND = "torch"


class DecodeEngine:
    """``lm``'s decode step through ONNX Runtime (``quantize``: none | int8 | int4).

    The export is made (or found in ``directory``'s cache) at the first step of each CFG
    layout; ``prepare()`` does it up front (a server's start, a benchmark)."""

    def __init__(self, lm: SLEDLM, quantize: str = "none", directory: Optional[Path] = None,
                 threads: Optional[int] = None):
        if quantize not in QUANTIZE:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)} (got '{quantize}')")
        self.ort = require_onnxruntime()
        self.lm, self.quantize, self.directory = lm, quantize, directory
        self.threads = threads
        self.sessions: Dict[int, object] = {}
        self.digest: Optional[str] = None
        self.paths: Dict[int, Path] = {}
        self.lock = threading.Lock()  # a server's sessions may start their first steps at once
        self.stamp = None

    def session(self, copies: int):
        with self.lock:
            if self.weights_changed():  # a stale export is never used: hash again, export anew
                self.sessions, self.paths, self.digest = {}, {}, None
            return self.load(copies)

    def weights_changed(self) -> bool:
        """Whether a weight was modified in place (its version counter moved) or replaced
        (new storage) since the sessions were made (cheap: no hashing)."""
        stamp = [(t.data_ptr(), t._version) for t in self.lm.state_dict().values()]
        changed = self.stamp is not None and stamp != self.stamp
        self.stamp = stamp
        return changed

    def load(self, copies: int):
        if copies not in self.sessions:
            if self.digest is None:
                self.digest = weights_hash(self.lm)
            path = exported_step(self.lm, copies, self.quantize, self.directory, self.digest)
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = self.threads or torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sessions[copies] = self.ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.paths[copies] = path
        return self.sessions[copies]

    def prepare(self, cfg: bool = True) -> "DecodeEngine":
        self.session(2 if cfg else 1)
        return self

    def start(self, state, batch: int) -> "EngineRun":
        device = state.cache.visible.device
        if device.type != "cpu" or state.cache.keys[0].dtype != torch.float32:
            raise ValueError(f"decode_backend='onnxruntime' runs fp32 models on the CPU (this decode: {device}, "
                             f"{state.cache.keys[0].dtype}); use decode_backend='torch'")
        copies = state.last_hidden.shape[0] // batch
        return EngineRun(self.session(copies), state, batch)


def bind(binding, name: str, tensor: torch.Tensor, output: bool = False) -> None:
    """Bind ``tensor``'s memory to ``name`` (no copy): it must stay alive, contiguous, in place."""
    assert tensor.is_contiguous()
    dtype = {torch.float32: np.float32, torch.int64: np.int64}[tensor.dtype]
    method = binding.bind_output if output else binding.bind_input
    method(name, "cpu", 0, dtype, list(tensor.shape), tensor.data_ptr())


class EngineRun:
    """One decode's buffers and binding; ``__call__`` = ``DecodingState.fixed_step``."""

    def __init__(self, session, state, batch: int):
        self.session, self.state = session, state
        cache, rows = state.cache, state.last_hidden.shape[0]
        self.layers = len(cache.keys)
        self.inputs, self.outputs = input_names(self.layers), output_names(self.layers)
        _, heads, _, head_dim = cache.keys[0].shape
        self.noise = torch.zeros(batch, state.lm.noise_dim)
        self.cfg_scale = torch.ones(1)
        self.frame = torch.zeros(batch, state.lm.latent_dim)
        self.stop_prob = torch.zeros(batch)
        self.next_hidden = torch.zeros_like(state.last_hidden)
        self.new = [torch.zeros(rows, heads, 1, head_dim) for _ in range(2 * self.layers)]
        self.window, self.synced, self.past, self.binding = 0, 0, [], None

    def rebind(self, window: int) -> None:
        """Buffers for a new attention window, holding the live slots; everything bound by pointer."""
        cache, length = self.state.cache, self.state.cache.length
        rows, heads, _, head_dim = cache.keys[0].shape
        self.past = []
        for keys, values in zip(cache.keys, cache.values):
            for source in (keys, values):
                buffer = torch.zeros(rows, heads, window, head_dim)
                buffer[:, :, :length] = source[:, :, :length]
                self.past.append(buffer)
        self.mask = torch.zeros(rows, window)
        self.window, self.synced = window, length
        binding = self.session.io_binding()
        state = self.state
        used = {node.name for node in self.session.get_inputs()}  # without CFG, cfg_scale is not an input
        for name, tensor in zip(self.inputs, [state.last_hidden, self.noise, self.cfg_scale, state.next_position,
                                              self.mask, *self.past]):
            if name in used:
                bind(binding, name, tensor)
        for name, tensor in zip(self.outputs, [self.frame, self.stop_prob, self.next_hidden, *self.new]):
            bind(binding, name, tensor, output=True)
        self.binding = binding

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, cfg_scale: float, window: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """noise ``[B, noise_dim]`` -> (frame ``[B, D]``, stop probability ``[B]``); advances the state."""
        state, cache = self.state, self.state.cache
        length = cache.length
        if window != self.window:
            self.rebind(window)
        elif self.synced < length:  # slots fed by PyTorch since the last step
            for i, source in enumerate(cache.keys + cache.values):
                target = self.past[2 * i] if i < self.layers else self.past[2 * (i - self.layers) + 1]
                target[:, :, self.synced:length] = source[:, :, self.synced:length]
        self.mask.zero_().masked_fill_(~cache.visible[:, :window], float("-inf"))
        self.noise.copy_(noise)
        self.cfg_scale.fill_(cfg_scale)
        self.session.run_with_iobinding(self.binding)
        for i in range(self.layers):
            for past, full, new in ((self.past[2 * i], cache.keys[i], self.new[2 * i]),
                                    (self.past[2 * i + 1], cache.values[i], self.new[2 * i + 1])):
                past[:, :, length] = new[:, :, 0]
                full[:, :, length] = new[:, :, 0]
        self.synced = length + 1
        cache.visible[:, length] = True
        cache.write_index.add_(1)
        state.last_hidden.copy_(self.next_hidden)
        state.next_position.add_(1)
        return self.frame.clone(), self.stop_prob.clone()


def use_decode_backend(lm: SLEDLM, decode_backend: Optional[str] = None, quantize: Optional[str] = None,
                       decode_dtype: Optional[str] = None, directory: Optional[Path] = None
                       ) -> Optional[DecodeEngine]:
    """Set how ``lm`` decodes (the one place the speed options meet): ``decode_backend``
    "torch" (``DEFAULT_BACKEND``) runs the PyTorch step (``quantize`` none | int8 and
    ``decode_dtype`` as ``modules/precision.py``); "onnxruntime" attaches a ``DecodeEngine``
    (``quantize`` none | int8 | int4; exports cached in ``directory``) that every fixed-shape
    decode of ``lm`` then uses (offline, batched, streaming, served). Returns the engine."""
    backend = decode_backend or DEFAULT_BACKEND
    if backend not in DECODE_BACKENDS:
        raise ValueError(f"decode_backend must be one of {', '.join(DECODE_BACKENDS)} (got '{decode_backend}')")
    quantize = quantize or "none"
    engine = None
    if backend == "onnxruntime":
        device = next(lm.parameters()).device
        if device.type != "cpu":
            raise ValueError(f"decode_backend=onnxruntime runs on the CPU; the model is on {device} "
                             f"(use decode_backend=torch there)")
        if decode_dtype not in (None, "float32"):
            raise ValueError(f"decode_backend=onnxruntime decodes in float32 on the CPU (got decode_dtype="
                             f"{decode_dtype}); use quantize=int8|int4 for lower precision")
        engine = DecodeEngine(lm.eval(), quantize, directory)
    else:
        if quantize == "int4":
            raise ValueError("quantize=int4 needs decode_backend=onnxruntime (the PyTorch step has none|int8)")
        prepare_for_decoding(lm, None if quantize == "none" else quantize, decode_dtype)
    lm.decode_engine = engine
    return engine
