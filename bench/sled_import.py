"""Import ``espnet2_sled`` on a machine with torch but without ESPnet (the GPU image).

``espnet2_sled`` and its math (``modules``, ``latent``, ``streaming``) never import ESPnet.
The ESPnet model class the benches build from ``conf/*.yaml``, ``espnet2_sled.tts.sled.SLED``,
uses two small pieces of ESPnet: its base class ``espnet2.tts.abs_tts.AbsTTS`` and
``espnet2.torch_utils.device_funcs.force_gatherable``. When ESPnet is not installed,
``make_importable`` registers stand-ins for exactly those two (same behaviour for what SLED
uses; nothing else of ESPnet becomes importable). With ESPnet installed nothing changes.
"""

import abc
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_importable() -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        import espnet2.torch_utils.device_funcs  # noqa: F401
        import espnet2.tts.abs_tts  # noqa: F401
    except ImportError:
        install_stand_ins()
        print("note: ESPnet is not installed; SLED runs on stand-ins for AbsTTS and force_gatherable")


def install_stand_ins() -> None:
    import torch

    class AbsTTS(torch.nn.Module, abc.ABC):
        """ESPnet's TTS base class, as SLED uses it (an abstract ``nn.Module``)."""

    def force_gatherable(data, device):
        """ESPnet's: numbers and 0-d tensors become 1-d tensors on ``device``, recursively."""
        if isinstance(data, dict):
            return {k: force_gatherable(v, device) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return type(data)(force_gatherable(v, device) for v in data)
        if isinstance(data, torch.Tensor):
            return (data[None] if data.dim() == 0 else data).to(device)
        if isinstance(data, float):
            return torch.tensor([data], dtype=torch.float, device=device)
        if isinstance(data, int):
            return torch.tensor([data], dtype=torch.long, device=device)
        return data

    for name, attrs in (
        ("espnet2", {}), ("espnet2.tts", {}), ("espnet2.tts.abs_tts", dict(AbsTTS=AbsTTS)),
        ("espnet2.torch_utils", {}), ("espnet2.torch_utils.device_funcs", dict(force_gatherable=force_gatherable)),
    ):
        module = types.ModuleType(name, "stand-in for ESPnet (bench/sled_import.py)")
        module.__dict__.update(attrs)
        if not attrs:
            module.__path__ = []  # a package: its stand-in submodules are found in sys.modules
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
