"""Where Encodec 24 kHz weights come from: Meta's ``.th``, an HF directory, the offline
caches, or deterministic random weights (only when asked for by name).

Every source is reduced to ``{section: [(module_name, {param: tensor})]}`` in checkpoint
order, with weight norm folded (``weight = g * v / |v|`` via ``torch._weight_norm``, the
same call Encodec and HF make), and then zipped onto our modules with shape checks.
"""

import glob
import json
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

META_FILE = "encodec_24khz-d7cc33bc.th"
META_URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + META_FILE
HF_REPO = "facebook/encodec_24khz"
RANDOM_SEED = 20240611

Groups = List[Tuple[str, Dict[str, torch.Tensor]]]

_SUFFIXES = [  # (key suffix, parameter it contributes to)
    (".parametrizations.weight.original0", "weight_g"),
    (".parametrizations.weight.original1", "weight_v"),
    (".weight_g", "weight_g"),
    (".weight_v", "weight_v"),
]


def group_section(state: Dict[str, torch.Tensor], prefix: str) -> Groups:
    """Tensors under ``prefix`` grouped per module, in network order, weight norm folded."""
    groups: "OrderedDict[str, Dict[str, torch.Tensor]]" = OrderedDict()
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        for suffix, name in _SUFFIXES:
            if key.endswith(suffix):
                module = key[: -len(suffix)]
                break
        else:
            module, name = key.rsplit(".", 1)
        groups.setdefault(module, {})[name] = value
    for params in groups.values():
        if "weight_g" in params:
            g, v = params.pop("weight_g"), params.pop("weight_v")
            params["weight"] = torch._weight_norm(v.float(), g.float(), 0)
    # module order, whatever the file's key order (safetensors sorts keys as strings):
    # numeric path parts compare as numbers, and 'block' < 'shortcut' as in the network
    return sorted(groups.items(), key=lambda item: _natural_key(item[0]))


def _natural_key(name: str) -> Tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split("."))


def codebooks_from(state: Dict[str, torch.Tensor], count: int, source: str) -> torch.Tensor:
    """The first ``count`` RVQ codebooks ``[count, bins, dim]`` (Meta ``quantizer.vq.layers.K._codebook.embed``,
    HF ``quantizer.layers.K.codebook.embed``)."""
    found = {}
    for key, value in state.items():
        match = re.fullmatch(r"quantizer\.(?:vq\.)?layers\.(\d+)\._?codebook\.embed", key)
        if match:
            found[int(match.group(1))] = value.float()
    missing = [k for k in range(count) if k not in found]
    if missing:
        raise ValueError(f"Encodec weights {source} have no codebook(s) {missing}; "
                         f"expected quantizer.*layers.K.*codebook.embed for K < {count}")
    return torch.stack([found[k] for k in range(count)])


def assign_section(modules: List[nn.Module], groups: Groups, section: str, source: str) -> None:
    """Copy grouped tensors onto ``modules`` (our conv/LSTM list) in order, checking names and shapes."""
    if len(modules) != len(groups):
        raise ValueError(f"Encodec weights {source}: {section} has {len(groups)} weighted modules, "
                         f"expected {len(modules)} (is this the 24 kHz model?)")
    for module, (name, params) in zip(modules, groups):
        ours = dict(module.named_parameters())
        if set(ours) != set(params):
            raise ValueError(f"Encodec weights {source}: {section} module '{name}' has "
                             f"{sorted(params)}, expected {sorted(ours)}")
        for pname, tensor in params.items():
            if ours[pname].shape != tensor.shape:
                raise ValueError(f"Encodec weights {source}: '{name}.{pname}' has shape "
                                 f"{tuple(tensor.shape)}, expected {tuple(ours[pname].shape)}")
            with torch.no_grad():
                ours[pname].copy_(tensor)


def read_meta_checkpoint(path: Path) -> Dict[str, torch.Tensor]:
    """Meta's ``encodec_24khz-d7cc33bc.th`` (a plain state dict)."""
    from espnet2_sled.checkpoint import read_torch_file

    state = read_torch_file(path)  # weights only; a truncated or unsafe file is named
    if not isinstance(state, dict) or not any(k.startswith("encoder.") for k in state):
        raise ValueError(f"'{path}' is not an Encodec state dict (no 'encoder.*' keys)")
    return state


def read_hf_directory(path: Path) -> Dict[str, torch.Tensor]:
    """An HF ``facebook/encodec_24khz`` directory: ``config.json`` + ``model.safetensors``
    (or ``pytorch_model.bin``)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"Encodec directory '{path}' has no config.json; "
                                f"expected a Hugging Face '{HF_REPO}' snapshot")
    config = json.loads(config_file.read_text())
    rate = config.get("sampling_rate", 24000)
    if rate != 24000 or config.get("audio_channels", 1) != 1:
        raise ValueError(f"Encodec directory '{path}' holds a {rate} Hz, "
                         f"{config.get('audio_channels')}-channel model; expected '{HF_REPO}' (24 kHz mono)")
    if (path / "model.safetensors").is_file():
        from espnet2_sled.checkpoint import read_safetensors_file

        return read_safetensors_file(path / "model.safetensors")
    if (path / "pytorch_model.bin").is_file():
        from espnet2_sled.checkpoint import read_torch_file

        return read_torch_file(path / "pytorch_model.bin")
    raise FileNotFoundError(f"Encodec directory '{path}' has config.json but no model.safetensors")


def read_weights(path: Path) -> Dict[str, torch.Tensor]:
    """A ``.th`` file or an HF directory -> its raw state dict."""
    if path.is_dir():
        return read_hf_directory(path)
    if path.is_file():
        return read_meta_checkpoint(path)
    raise FileNotFoundError(f"Encodec weights '{path}' do not exist; pass Meta's {META_FILE} "
                            f"or a Hugging Face '{HF_REPO}' directory")


def cache_candidates() -> List[Path]:
    """Offline places a previous download may have left the weights, in search order."""
    home = Path.home()
    torch_dirs = [Path(torch.hub.get_dir()), home / ".cache" / "torch" / "hub"]
    if os.environ.get("TORCH_HOME"):
        torch_dirs.insert(0, Path(os.environ["TORCH_HOME"]) / "hub")
    hub_dirs = [home / ".cache" / "huggingface" / "hub"]
    if os.environ.get("HF_HOME"):
        hub_dirs.insert(0, Path(os.environ["HF_HOME"]) / "hub")
    if os.environ.get("HF_HUB_CACHE"):
        hub_dirs.insert(0, Path(os.environ["HF_HUB_CACHE"]))
    found = [d / "checkpoints" / META_FILE for d in torch_dirs]
    for hub in hub_dirs:
        pattern = str(hub / "models--facebook--encodec_24khz" / "snapshots" / "*")
        found += [Path(p) for p in sorted(glob.glob(pattern))]
    unique = []
    for p in found:
        if p not in unique:
            unique.append(p)
    return unique


def find_cached_weights() -> Path:
    """The first usable cached copy, or a ``FileNotFoundError`` saying where to put one."""
    candidates = cache_candidates()
    for path in candidates:
        if path.is_file() or (path / "config.json").is_file():
            return path
    looked = "\n  ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        "Encodec 24 kHz weights not found (weights=None searches the offline caches). Looked in:\n  "
        f"{looked}\nFix: on a machine with internet run\n"
        f"  wget {META_URL}\n"
        f"or  huggingface-cli download {HF_REPO}\n"
        f"and copy {META_FILE} to {Path(torch.hub.get_dir()) / 'checkpoints'}/ (or the HF snapshot "
        "directory to ~/.cache/huggingface/hub/), or pass weights=PATH explicitly. "
        "For plumbing tests only, weights='random' builds deterministic random weights."
    )


@torch.no_grad()
def randomize(model: nn.Module, codebook_scales: Optional[List[float]] = None) -> None:
    """Deterministic random weights, independent of the global RNG: every process that calls
    this gets bit-identical tensors (a private CPU generator, parameters in name order).

    Convolutions are He-uniform (+-sqrt(6/fan_in)) so the signal neither dies nor explodes
    through the stack, biases +-0.01, LSTMs PyTorch's default +-1/sqrt(hidden); codebook
    ``k`` is Gaussian with std ``codebook_scales[k]``, shrinking level by level like real
    RVQ residuals, so random latents still vary with the input.
    """
    generator = torch.Generator().manual_seed(RANDOM_SEED)
    for name, param in sorted(model.named_parameters()):
        if name.endswith("codebooks"):
            values = torch.randn(param.shape, generator=generator)
            scales = torch.tensor(codebook_scales or [1.0] * param.shape[0])
            values *= scales.view(-1, 1, 1)
        else:
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            if isinstance(owner, nn.LSTM):
                bound = owner.hidden_size ** -0.5
            elif name.endswith("bias"):
                bound = 0.01
            else:  # He-uniform: keeps the signal's scale through the ELU stack
                fan_in = owner.weight[0].numel()
                if isinstance(owner, nn.ConvTranspose1d):  # weight [C_in, C_out, k]
                    fan_in = owner.weight.shape[0] * owner.weight.shape[2] // owner.stride[0]
                bound = (6.0 / fan_in) ** 0.5
            values = (torch.rand(param.shape, generator=generator) * 2 - 1) * bound
        param.copy_(values)
