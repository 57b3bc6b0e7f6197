"""Helpers for the latent-space tests (a uniquely named module: tests/conftest.py exists too)."""

import math
from typing import Dict

import torch

from espnet2_sled.latent import EncodecLatent
from espnet2_sled.latent.weights import _SUFFIXES


def speech_like(samples: int, seed: int = 0, rate: int = 24000) -> torch.Tensor:
    """A deterministic voiced-ish signal ``[samples]``: gliding harmonics under a syllable
    envelope plus a little noise, peak ~0.5."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / rate
    f0 = 110 + 40 * torch.sin(2 * math.pi * 1.3 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 + torch.sin(2 * math.pi * 4 * t)).clamp_min(0.05)
    return 0.25 * voiced * envelope + 0.01 * torch.randn(samples, generator=g)


def fill_reference_state(reference: Dict[str, torch.Tensor], latent: EncodecLatent) -> Dict[str, torch.Tensor]:
    """Copy ``latent``'s weights into a reference state dict (Meta ``weight_g/_v`` or HF
    ``parametrizations.weight.original0/1`` names): written independently of the loader,
    by walking the reference keys in order."""
    state = dict(reference)
    for section, ours in (("encoder.", latent.encoder), ("decoder.", latent.decoder)):
        modules = []  # reference module names in order of appearance
        for key in state:
            if not key.startswith(section):
                continue
            name = next((key[: -len(s)] for s, _ in _SUFFIXES if key.endswith(s)), key.rsplit(".", 1)[0])
            if name not in modules:
                modules.append(name)
        targets = ours.weighted_modules()
        assert len(modules) == len(targets)
        for name, module in zip(modules, targets):
            for pname, value in module.named_parameters():
                if pname == "weight" and f"{name}.bias" in state and f"{name}.{pname}" not in state:
                    g_key = next(f"{name}{s}" for s, p in _SUFFIXES if p == "weight_g" and f"{name}{s}" in state)
                    v_key = next(f"{name}{s}" for s, p in _SUFFIXES if p == "weight_v" and f"{name}{s}" in state)
                    state[v_key] = value.detach().clone()
                    state[g_key] = value.detach().norm(dim=(1, 2), keepdim=True)
                else:
                    state[f"{name}.{pname}"] = value.detach().clone()
    for level, codebook in enumerate(latent.quantizer.codebooks):
        for key in (f"quantizer.vq.layers.{level}._codebook.embed", f"quantizer.layers.{level}.codebook.embed"):
            if key in state:
                state[key] = codebook.detach().clone()
                state[key.replace(".embed", ".embed_avg")] = codebook.detach().clone()
                state[key.replace(".embed", ".inited")] = torch.ones_like(state[key.replace(".embed", ".inited")])
    return state
