"""The energy-distance training loss (an unbiased energy-score estimate per frame).

For a target y and M model samples x_1..x_M drawn independently for the same hidden state,

    l = (2/M) sum_i ||x_i - y||^beta  -  1/(M(M-1)) sum_{i != j} ||x_i - x_j||^beta

Its expectation over the samples is 2 E||X - y||^beta - E||X - X'||^beta; averaged over
y ~ Q it equals the generalized energy distance D(P, Q) plus the constant E||Y - Y'||^beta,
so minimising it matches the model distribution P to the data distribution Q. It is a
strictly proper scoring rule for beta in (0, 2). beta = 1, M = 2 is upstream SLED:
l = ||x - y|| + ||x' - y|| - ||x - x'||.

The repulsive term is what separates this from regression: without it the samples
collapse to the mean (upstream's ablation: WER 1.59 -> 40.6).
"""

import torch


def safe_distance(a: torch.Tensor, b: torch.Tensor, beta: float) -> torch.Tensor:
    """||a - b||^beta over the last dim, with a zero (sub)gradient where a == b.

    At initialisation every generator sample equals 0, so the repulsive distance is
    exactly zero; the plain norm's backward is 0/0 there (and inf for beta < 1).
    """
    squared = (a - b).pow(2).sum(-1)
    nonzero = squared > 0
    safe = torch.where(nonzero, squared, torch.ones_like(squared))
    return torch.where(nonzero, safe.pow(beta / 2), torch.zeros_like(squared))


def energy_score_loss(samples: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Per-frame unbiased estimate; computed in fp32 whatever the autocast state.

    samples ``[M, N, D]`` (M >= 2 independent draws), target ``[N, D]`` -> ``[N]``.
    """
    M = samples.shape[0]
    if M < 2:
        raise ValueError(f"the energy distance needs at least 2 samples per frame, got {M}")
    if not 0.0 < beta < 2.0:
        raise ValueError(f"beta must lie in (0, 2) for a strictly proper score, got {beta}")
    with torch.autocast(device_type=samples.device.type, enabled=False):
        samples, target = samples.float(), target.float()
        attraction = safe_distance(samples, target[None], beta).mean(0) * 2.0  # [N]
        pairwise = safe_distance(samples[:, None], samples[None, :], beta)  # [M, M, N]
        repulsion = pairwise.sum((0, 1)) / (M * (M - 1))  # diagonal is exactly 0
        return attraction - repulsion
