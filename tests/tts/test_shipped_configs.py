"""Every config under conf/ builds the SLED model it describes (typos in tts_conf keys or
values fail here, not an hour into a recipe)."""

import pytest
import torch
import yaml

from espnet2_sled.tts.sled import SLED
from factory import REPO

CONFIGS = sorted((REPO / "conf").glob("*.yaml"))


def test_all_configs_are_found():
    assert {p.stem for p in CONFIGS} >= {"debug", "small", "paper", "streaming_small", "streaming_paper"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    conf = yaml.safe_load(path.read_text())
    assert conf["tts"] == "sled"
    with torch.device("meta"):  # shapes only: the paper model needs no memory here
        model = SLED(idim=64, odim=128, **conf["tts_conf"])
    assert sum(p.numel() for p in model.parameters()) > 0
    if conf["tts_conf"].get("guided_attention_weight", 0) > 0:
        assert model.config.loss.guided_attention_layers and model.config.loss.guided_attention_heads > 0
