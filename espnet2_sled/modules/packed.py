"""Decode-time packing of the linears that read the same input: q | k | v, and gate | up.

A decode step is a chain of matrix-vector products, and on a CPU each one also pays a
fixed cost (dispatch, thread start-up, a short GEMV that never reaches full memory speed).
Packed, a layer runs 4 matmuls instead of 7: the same weight bytes in fewer, larger reads
(``bench/bench_sled.py --modes fixed packed``). Only the one-slot decode step is packed;
multi-slot feeds (prefill, streaming text, prompts) keep the separate linears. A wider
matrix may be summed in another order by the BLAS (~1 ulp per step, ``tests/modules/
test_packed.py`` bounds it at 1e-6), and a free-running decode amplifies such differences
over its frames (same stop steps, but frames of a trained mini model up to ~2 apart after
100 steps). So for fp32/bf16 it is opt-in (``Decoder.packing``), keeping the frames
bitwise those of the unpacked layout that the reference implementation uses; int8
decoding, which changes the arithmetic anyway, always packs (``precision.py``).

The packed weight *is* the parameters' storage: each parameter becomes a view of its rows,
so packing adds no memory, the state dict keeps its keys and values, and in-place updates
(an optimizer step, ``load_state_dict``) reach the packed weight too. A parameter that gets
new storage afterwards (``model.to(...)``, ``load_state_dict(assign=True)``) is no longer a
view: the packed path notices and falls back to the separate linears until the next decode
packs again. The packed path runs only without autograd (its weight is not a parameter).
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# Decoding's linears see 1 row (no CFG) or 2-4 rows (CFG's conditional + unconditional
# row, small batches). Measured on a 2-core AMD EPYC (Zen 4, torch 2.12 + MKL, 2 threads;
# issue #22): ``F.linear(x, W)`` (x @ W^T) at 2 rows costs 1.5-20x its 1-row time, while
# ``torch.mm(W, x^T)`` (the same product as weight-major GEMM, W read once for all rows)
# costs ~1-1.3x (qkv 1024x3072: 750 vs 317 us; gate|up 1024x5504: up to 16 ms vs 0.6 ms
# under load). One row keeps ``F.linear`` (a GEMV either way: outputs bitwise unchanged).
# Intel hosts were not measured in this work: ``bench/bench_linear_rows.py`` prints the
# forms side by side on the host it runs on.
SMALL_ROWS = (2, 4)


def decode_linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for x ``[..., in]``; with 2-4 rows and no autograd (decoding), a plain
    ``nn.Linear`` runs as ``torch.mm(W, x^T)`` (``SMALL_ROWS`` above). Training, prefill,
    int8 / other modules: ``layer(x)`` unchanged."""
    if type(layer) is nn.Linear and not torch.is_grad_enabled():
        return rows_linear(x, layer.weight, layer.bias)
    return layer(x)


def rows_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x ``[..., in]`` @ weight ``[out, in]``^T (+ bias): weight-major for 2-4 rows, else ``F.linear``."""
    rows = x.numel() // x.shape[-1]
    # Traced for an export (engine/): a plain MatMul, the form the runtime fuses and quantizes.
    if torch.jit.is_tracing() or not SMALL_ROWS[0] <= rows <= SMALL_ROWS[1]:
        return F.linear(x, weight, bias)
    y = torch.mm(weight, x.reshape(rows, x.shape[-1]).t()).t().contiguous()  # [rows, out]
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0])


class PackedLinear:
    """Bias-free ``linears`` with the same input as one ``[sum(out), in]`` matmul."""

    def __init__(self, linears: Sequence[nn.Linear]):
        if any(linear.bias is not None for linear in linears):
            raise ValueError("only bias-free linears are packed")
        self.linears = tuple(linears)
        self.sizes = [linear.out_features for linear in linears]
        self.weight = torch.cat([linear.weight.detach() for linear in linears])
        for linear, rows in zip(linears, self.weight.split(self.sizes)):
            linear.weight.data = rows
        self.pointers = [linear.weight.data_ptr() for linear in linears]
        self.quantized: Optional[nn.Module] = None  # set by quantize_int8

    def intact(self) -> bool:
        """Every parameter is still a view of the packed weight."""
        return all(linear.weight.data_ptr() == p for linear, p in zip(self.linears, self.pointers))

    def quantize_int8(self, qconfig) -> None:
        """Run the packed matmul as one PyTorch dynamic int8 linear (CPU; see precision.py).
        The float weights are released (as ``quantize_dynamic`` does for the linears it
        replaces): the parameters become empty, and the model decodes only."""
        float_linear = nn.Linear(self.weight.shape[1], self.weight.shape[0], bias=False)
        float_linear.weight.data = self.weight
        float_linear.qconfig = qconfig
        self.quantized = torch.ao.nn.quantized.dynamic.Linear.from_float(float_linear)
        for linear in self.linears:
            linear.weight = nn.Parameter(linear.weight.new_empty(0), requires_grad=False)
        self.weight = None

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """x ``[..., in]`` -> one ``[..., out_i]`` per linear."""
        y = self.quantized(x) if self.quantized is not None else rows_linear(x, self.weight)
        return y.split(self.sizes, dim=-1)


def packed_or_separate(packed: Optional[PackedLinear], linears: Sequence[nn.Module],
                       x: torch.Tensor, step: bool) -> Tuple[torch.Tensor, ...]:
    """Each of ``linears`` applied to ``x``: one packed matmul in the decode step (``step``:
    one slot per row, no autograd, packing intact), else one matmul per linear (training,
    prefill and other multi-slot feeds, or after the storage moved)."""
    if packed is not None and packed.quantized is not None:
        return packed(x)  # int8 (decoding only: the float weights are gone)
    if packed is not None and step and not torch.is_grad_enabled():
        if torch.compiler.is_compiling() or packed.intact():
            return packed(x)
    return tuple(decode_linear(linear, x) for linear in linears)


def pack_linears(packed: Optional[PackedLinear], linears: Sequence[nn.Module],
                 enabled: bool) -> Optional[PackedLinear]:
    """The packing a decode uses: an int8 one is kept for good (its float weights are gone);
    a float one is kept while intact, rebuilt when broken, and dropped when not ``enabled``
    (or when the linears are not plain float linears, e.g. quantized by someone else)."""
    if packed is not None and packed.quantized is not None:
        return packed
    if not enabled or not all(type(linear) is nn.Linear for linear in linears):
        return None
    return packed if packed is not None and packed.intact() else PackedLinear(linears)


__all__ = ["PackedLinear", "decode_linear", "pack_linears", "packed_or_separate", "rows_linear"]
