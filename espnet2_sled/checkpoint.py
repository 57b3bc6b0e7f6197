"""Reading model weights without running code: every checkpoint this package loads comes here.

A ``.pth`` is a pickle, and unpickling can run arbitrary code; ESPnet's own loaders
unpickle the whole file (any object) and then load non-strictly, so a wrong or hostile file
either runs code or decodes with random weights. Here:

* ``.pth`` files are read with ``torch.load(weights_only=True)`` (tensors and plain
  containers only); anything else in the pickle is refused with an error naming the file
  and the object it asked for. ``.safetensors`` files are read with safetensors, and a
  truncated or corrupt one is named and described.
* weights are put into the model with a strict check that lists missing and unexpected
  keys (and shape mismatches) by name.

``SLEDTask`` (model files, ``--init_param``, resume) and ``SLEDText2Speech`` (model files,
packed zips) call this module; it imports no ESPnet.
"""

import datetime
import json
import logging
import pickle
import re
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, Path]
StateDict = Dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A model file that is unsafe, unreadable, or does not fit the model; the message names it."""


def _refused_object(error: Exception) -> str:
    """The global that torch's weights-only unpickler refused (e.g. ``builtins.open``)."""
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return match.group(1) if match else str(error).strip().splitlines()[0]


RESAVE = ("if you trust the file, load it yourself and re-save its state dict: "
          "torch.save(model.state_dict(), 'clean.pth')")


def read_torch_file(path: PathLike, map_location: str = "cpu", allowed_globals: Sequence = (),
                    advice: str = RESAVE) -> object:
    """``torch.load(path, weights_only=True)``; errors name the file (and end with ``advice``).
    ``allowed_globals``: the few extra plain types a known writer stores (ESPnet's resume file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"model file '{path}' holds more than tensors and was refused: it asks for "
            f"'{_refused_object(e)}', and unpickling such objects can run code from the file. "
            f"Only weights are read (torch.load weights_only=True); {advice}"
        ) from None
    except Exception as e:  # torch raises RuntimeError for a truncated / non-zip file
        raise CheckpointError(
            f"model file '{path}' could not be read as a PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).strip().splitlines()[0]}); is it truncated or not a .pth?"
        ) from None


# The plain types besides tensors that ESPnet's trainer writes into checkpoint.pth (the
# reporter's numpy scalars and timings); nothing else in a resume file is unpickled.
RESUME_GLOBALS = [np._core.multiarray.scalar, np.dtype, datetime.timedelta,
                  *{type(np.dtype(code)) for code in "?bhilqBHILQefdg"}]


def read_resume_file(path: PathLike, map_location: str = "cpu") -> dict:
    """ESPnet's ``checkpoint.pth`` (model, optimizers, schedulers, reporter), weights-only:
    read by ``SLEDTrainer.resume`` and by the recipe's learning curve (the reporter's counts)."""
    return read_torch_file(path, map_location, RESUME_GLOBALS,
                           advice="the trainer writes only tensors, numpy scalars and timings there")


def safetensors_problem(path: Path) -> Optional[str]:
    """What is wrong with a ``.safetensors`` file, from its header (None if the header looks whole)."""
    size = path.stat().st_size
    if size < 8:
        return f"is {size} bytes long, too short for a safetensors header (8-byte length + JSON)"
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        if header_len > size - 8:
            return (f"is truncated: its header says the header is {header_len} bytes, "
                    f"but the file has only {size - 8} bytes after the length field")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            return f"has a header that is not valid JSON ({e})"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and "data_offsets" in v]
    needed = max(ends, default=0)
    have = size - 8 - header_len
    if needed > have:
        return f"is truncated: its tensors need {needed} bytes of data, the file holds {have} (download it again)"
    return None


def read_safetensors_file(path: PathLike) -> StateDict:
    """A ``.safetensors`` file -> state dict; a truncated or corrupt file is named and described."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, or OSError for unreadable files
        problem = safetensors_problem(path) or "is not a valid safetensors file"
        raise CheckpointError(f"weights file '{path}' {problem} (safetensors: {e})") from None


def read_state_dict(path: PathLike, map_location: str = "cpu") -> StateDict:
    """A model file (``.pth`` / ``.safetensors``) -> ``{name: tensor}``, without running code."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors_file(path)
    advice = RESAVE
    if path.name == "checkpoint.pth":
        advice = "this looks like the trainer's resume file: decode or fine-tune from NNepoch.pth / *.best.pth"
    state = read_torch_file(path, map_location, advice=advice)
    if isinstance(state, Mapping) and "module" in state and isinstance(state["module"], Mapping):
        state = state["module"]  # deepspeed checkpoints, as ESPnet accepts
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"model file '{path}' is not a state dict of tensors (it holds a {type(state).__name__})")
    return dict(state)


def _names(keys: List[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def load_state_strictly(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
                        allow_missing: Iterable[str] = ()) -> None:
    """``model.load_state_dict`` after checking that every key and shape matches; the error lists
    missing keys, unexpected keys and shape mismatches by name. Keys starting with a prefix in
    ``allow_missing`` may be absent (they keep the model's values)."""
    allow_missing = tuple(allow_missing)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not (allow_missing and k.startswith(allow_missing)))
    unexpected = sorted(k for k in state if k not in expected)
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                    for k in state if k in expected and state[k].shape != expected[k].shape)
    problems = [f"{what} {_names(keys)}" for what, keys in (
        ("missing keys:", missing), ("unexpected keys:", unexpected), ("shape mismatch (file vs model):", shapes),
    ) if keys]
    if problems:
        raise CheckpointError(f"model file '{source}' does not fit this model's config: " + "; ".join(problems))
    model.load_state_dict(state, strict=not allow_missing)


def load_model_file(model: torch.nn.Module, path: PathLike) -> None:
    """Fill ``model`` from a model file, every key checked."""
    load_state_strictly(model, read_state_dict(path), str(path))


def load_init_param(model: torch.nn.Module, init_param: str, ignore_init_mismatch: bool = False,
                    allow_missing: Iterable[str] = ()) -> None:
    """ESPnet's ``--init_param <file>[:<src_key>[:<dst_key>[:<exclude,...>]]]``, read safely.

    A whole-model init (only ``<file>``) must match key for key (``allow_missing`` prefixes
    aside); with a source/destination key or excludes, the selected part must fit its
    destination exactly (no unexpected key or shape), and the rest keeps its initial values.
    ``ignore_init_mismatch`` drops (and logs) shape-mismatched tensors, as in ESPnet.
    """
    parts = init_param.split(":", 3)
    path, src_key, dst_key, excludes = (parts + [None] * 3)[:4]
    src_key, dst_key = src_key or None, dst_key or None
    state = read_state_dict(path)
    partial = src_key is not None or dst_key is not None or excludes is not None
    if excludes:
        state = {k: v for k, v in state.items() if not any(k.startswith(e) for e in excludes.split(","))}
    if src_key is not None:
        state = {k[len(src_key) + 1:]: v for k, v in state.items() if k.startswith(src_key + ".")}
    target = model
    for name in (dst_key or "").split("."):
        target = getattr(target, name) if name else target
    if ignore_init_mismatch:
        own = target.state_dict()
        for k in [k for k in state if k in own and state[k].shape != own[k].shape]:
            logging.warning(f"--init_param {init_param}: skipping {k}, shape {tuple(state[k].shape)} "
                            f"!= {tuple(own[k].shape)} (--ignore_init_mismatch true)")
            del state[k]
    if partial or ignore_init_mismatch:
        allow_missing = ("",)  # every key may keep its initial value
    load_state_strictly(target, state, init_param if partial else str(path), allow_missing)
