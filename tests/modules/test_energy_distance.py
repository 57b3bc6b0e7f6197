import math

import pytest
import torch

from espnet2_sled.modules.config import SLEDConfig
from espnet2_sled.modules.energy_distance import energy_score_loss
from espnet2_sled.modules.generator import FrameGenerator


def expected_norm_gaussian(mean_shift: float, std: float, dim: int) -> float:
    """E||Z|| for Z ~ N(mean_shift * e_1, std^2 I_dim), dim = 1 closed form (folded normal)."""
    assert dim == 1
    mu, s = mean_shift, std
    phi = 0.5 * (1 + math.erf(-mu / (s * math.sqrt(2))))
    return s * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * s * s)) + mu * (1 - 2 * phi)


@pytest.mark.parametrize("num_samples", [2, 4])
def test_estimator_mean_matches_closed_form_energy_distance(num_samples):
    # Model P = N(m1, s1^2), data Q = N(m2, s2^2), 1-D, beta = 1.
    m1, s1, m2, s2 = 0.7, 1.3, -0.2, 0.6
    n = 400_000
    g = torch.Generator().manual_seed(0)
    samples = (m1 + s1 * torch.randn(num_samples, n, 1, generator=g, dtype=torch.float64))
    target = (m2 + s2 * torch.randn(n, 1, generator=g, dtype=torch.float64))
    loss = energy_score_loss(samples, target, beta=1.0).double().mean().item()
    # E[loss] = 2 E|X - Y| - E|X - X'|  = D(P, Q) + E|Y - Y'|
    e_xy = expected_norm_gaussian(m1 - m2, math.hypot(s1, s2), 1)
    e_xx = expected_norm_gaussian(0.0, math.sqrt(2) * s1, 1)
    e_yy = expected_norm_gaussian(0.0, math.sqrt(2) * s2, 1)
    energy_distance = 2 * e_xy - e_xx - e_yy
    assert energy_distance > 0.3
    assert loss - e_yy == pytest.approx(energy_distance, abs=0.01)


def test_matching_distributions_minimise_the_loss():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(200_000, 4, generator=g)
    same = energy_score_loss(torch.randn(2, 200_000, 4, generator=g), target).mean()
    wider = energy_score_loss(1.5 * torch.randn(2, 200_000, 4, generator=g), target).mean()
    collapsed = energy_score_loss(torch.zeros(2, 200_000, 4), target).mean()
    assert same < wider and same < collapsed


def test_finite_gradients_when_samples_coincide():
    # At upstream initialisation every generator output is exactly 0.
    gen = FrameGenerator(SLEDConfig(vocab_size=10, latent_dim=8, dim=16, generator_width=16, generator_depth=2,
                                    noise_dim=4, heads=4))
    z = torch.randn(5, 16, requires_grad=True)
    samples = gen(z[None].expand(3, -1, -1), torch.randn(3, 5, 4))
    assert samples.abs().max() == 0
    loss = energy_score_loss(samples, torch.randn(5, 8), beta=1.0).mean()
    loss.backward()
    grads = [p.grad for p in gen.parameters() if p.grad is not None] + [z.grad]
    assert all(torch.isfinite(g).all() for g in grads)
    assert gen.output.linear.weight.grad.abs().sum() > 0  # the attraction term still pulls


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5])
def test_finite_gradients_for_other_betas_with_ties(beta):
    x = torch.zeros(2, 3, 4, requires_grad=True)
    loss = energy_score_loss(x, torch.randn(3, 4), beta=beta).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_loss_is_fp32_under_bf16_autocast():
    samples = torch.randn(2, 6, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = energy_score_loss(samples, torch.randn(6, 8))
    assert out.dtype == torch.float32


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="at least 2 samples"):
        energy_score_loss(torch.randn(1, 3, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="beta"):
        energy_score_loss(torch.randn(2, 3, 2), torch.randn(3, 2), beta=2.0)
