"""Codec-weight provenance: where a frozen codec's weights come from and whether they are in.

One ``CodecWeights`` per codec, owned by it (``EncodecLatent.provenance``) and read through it by
the model (``SLED`` builds the codec empty when a checkpoint may fill it) and the task
(``SLEDTask.build_model`` fills it from its file when training starts). Before, the same
facts lived in two class-level flags of ``SLEDTask``, a second copy of the source in ``SLED``
and a private flag set by a hook in ``encodec.py``.
"""

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class CodecWeights:
    """``source``: ``latent_conf.weights`` as configured: a weights file or Hugging Face directory,
    None (the offline torch-hub / HF caches), ``"random"`` (tests and plumbing runs) or
    ``"deferred"`` (only a checkpoint holding the codec can fill it).
    ``loaded_from``: None while the weights are still zeros; then the file read, ``"random"``,
    or ``"state_dict"`` (a checkpoint, or another codec's weights)."""

    source: Optional[str]
    loaded_from: Optional[str] = None

    @property
    def loaded(self) -> bool:
        return self.loaded_from is not None

    @property
    def file_named(self) -> bool:
        """The source is a file to read (or the caches): what training starts from."""
        return self.source not in ("random", "deferred")

    def check_loaded(self) -> None:
        if not self.loaded:
            raise RuntimeError(f"EncodecLatent(weights={self.source!r}) is deferred and was used before "
                               "load_state_dict or load_weights(); load a checkpoint first or pass "
                               "weights=PATH / 'random'")


def mark_loaded_by_state_dict(codec: torch.nn.Module, incompatible_keys) -> None:
    """``load_state_dict`` post-hook of a codec: its weights are now the state dict's."""
    codec.provenance.loaded_from = "state_dict"
