"""Tiny trained models for the decoding-input reliability tests (built here, in seconds).

``offline_exp``: the debug config (offline layout, 512 positions) with the weight-free mel
latent, so audio is produced and voice prompts are encoded; trained 2 steps on the factory
corpus with ``--cleaner sled_english`` and a character token list that has every printable
ASCII character (so spelled-out numbers are readable).
"""

import string
from pathlib import Path

import pytest
import yaml

from factory import DEBUG_CONF, train_args, write_dataset

HOP = 640  # samples per latent frame: 2 stacked mel frames of 320 at 24 kHz
MEL = dict(n_mels=4, stack=2, griffin_lim_iters=2)


def ascii_token_list(path: Path) -> None:
    chars = [c for c in string.printable if c not in string.whitespace]
    path.write_text("\n".join(["<blank>", "<unk>", "<space>", *chars, "<sos/eos>"]) + "\n")


def train_tiny(root: Path, layout: str = "offline", cleaner: str = "sled_english") -> Path:
    from espnet2_sled.bin import sled_train

    data, exp = root / "data", root / "exp"
    write_dataset(data, odim=8)
    ascii_token_list(data / "tokens.txt")
    conf = yaml.safe_load(DEBUG_CONF.read_text())
    conf["tts_conf"].update(layout=layout, latent="mel", latent_conf=MEL)
    conf.update(max_epoch=1, num_iters_per_epoch=2)
    (root / "conf.yaml").write_text(yaml.safe_dump(conf))
    args = train_args(data, exp, config=root / "conf.yaml")
    args[args.index("--cleaner") + 1] = cleaner
    sled_train.main(args)
    return exp


@pytest.fixture(scope="session")
def offline_exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability_offline")
    return root, train_tiny(root)


def load(exp: Path, max_positions=None, **options):
    """The trained model; with ``max_positions``, configured with that many positions (a
    decoding-time limit: no weight depends on it) to reach the limit in a few frames."""
    from espnet2_sled.text2speech import SLEDText2Speech

    config = exp / "config.yaml"
    if max_positions is not None:
        conf = yaml.safe_load(config.read_text())
        conf["tts_conf"]["max_positions"] = max_positions
        config = exp / f"config_{max_positions}.yaml"
        config.write_text(yaml.safe_dump(conf))
    return SLEDText2Speech(config, exp / "1epoch.pth", **options)
