"""Lower-precision decoding, opt-in only: a bf16 backbone (for GPUs) or int8 linears (for CPUs).

``quantize="int8"``: the decoder's and the generator's trunk linears become PyTorch's own
dynamic int8 linears (``torch.ao.quantization.quantize_dynamic``: int8 weights with one
scale per output row, activations quantized per call, fbgemm/x86 kernels); the decoder's
packed q | k | v and gate | up (``modules/packed.py``) become one int8 linear each. CPU only.
``decode_dtype="bfloat16"``: the embeddings, decoder and generator trunk hold bf16 weights (and the KV cache is bf16).
In both, what sets the output's scale stays fp32: the generator's output layer, the stop
head, and (outside this module, never touched) the latent decoder; the energy distance is a
training loss, computed in fp32 whatever happens here. Neither is ever on by default.

Gap to fp32 at the same noise: the mean absolute frame difference over 20 autoregressive
frames (cfg 2, no stop), divided by the fp32 frames' std. Measured on CPU on the tests' debug
model (``tests/modules/test_precision.py``, seeds 0-2, which asserts the bounds below):
int8 0.012 / 0.032 / 0.019, bf16 0.015 / 0.018 / 0.014. ``bench/bench_sled.py --precision``
prints the same measure for the paper config (random weights) beside the step times.
"""

import warnings
from typing import Optional

import torch
from torch import nn

from espnet2_sled.modules.sled_lm import SLEDLM

QUANTIZE = (None, "none", "int8")
DECODE_DTYPES = (None, "float32", "bfloat16")

# Asserted bounds on that measure (about twice the worst value measured above).
INT8_DRIFT = 0.05
BF16_DRIFT = 0.04

TRUNK = ("decoder", "generator.noise_proj", "generator.cond_proj", "generator.blocks")


def prepare_for_decoding(lm: SLEDLM, quantize: Optional[str] = None, decode_dtype: Optional[str] = None) -> SLEDLM:
    """Convert ``lm`` in place for decoding (eval only: an int8 model cannot train)."""
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of none, int8 (got '{quantize}')")
    if decode_dtype not in DECODE_DTYPES:
        raise ValueError(f"decode_dtype must be float32 or bfloat16 (got '{decode_dtype}')")
    int8, bf16 = quantize == "int8", decode_dtype == "bfloat16"
    if int8 and bf16:
        raise ValueError("choose one of quantize=int8 (CPU) and decode_dtype=bfloat16 (GPU)")
    device = next(lm.parameters()).device
    lm.eval()
    if int8:
        if device.type != "cpu":
            raise ValueError(f"quantize=int8 runs on the CPU only (PyTorch's dynamic int8 linears); the model is "
                             f"on {device}: use decode_dtype=bfloat16 on a GPU")
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        with warnings.catch_warnings():  # torch.ao.quantization warns of its move to torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            # q | k | v and gate | up: one int8 matmul each (modules/packed.py); the float
            # linears they replace are left out of the per-module conversion below.
            packed = []
            for pack in lm.decoder.pack(enabled=True):
                pack.quantize_int8(qconfig)
                packed += [id(linear) for linear in pack.linears]
            spec = {name: qconfig for name, m in lm.named_modules()
                    if type(m) is nn.Linear and id(m) not in packed and name.startswith(TRUNK)}
            torch.ao.quantization.quantize_dynamic(lm, spec, dtype=torch.qint8, inplace=True)
    if bf16:
        for module in (lm.embed_tokens, lm.frame_proj, lm.input_norm, lm.decoder,
                       lm.generator.noise_proj, lm.generator.cond_proj, lm.generator.blocks):
            module.to(torch.bfloat16)
    return lm


def is_quantized(module: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in module.modules())
