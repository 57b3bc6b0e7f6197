"""Write an ESPnet SLED experiment back as an upstream-format folder (config.json,
model.safetensors, vocab.json + merges.txt), e.g. to run upstream's scripts on weights
fine-tuned here. Only models whose tokenizer is the byte-level BPE can be exported."""

import inspect
import json
import shutil
from pathlib import Path
from typing import Union

import yaml

from espnet2_sled.checkpoint import read_state_dict
from espnet2_sled.tts.sled import SLED
from espnet2_sled.upstream.checkpoint import UpstreamCheckpointError, config_from_tts_conf, export_state_dict
from espnet2_sled.upstream.tokenizer import BYTE_BPE


def export_checkpoint(train_config: Union[str, Path], model_file: Union[str, Path], out: Union[str, Path]) -> Path:
    with open(train_config, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if conf.get("tts") != "sled":
        raise UpstreamCheckpointError(f"'{train_config}' is not a tts: sled config")
    if conf.get("token_type") != BYTE_BPE:
        raise UpstreamCheckpointError(
            f"'{train_config}' uses token_type {conf.get('token_type')}; upstream's format needs the byte-level BPE"
        )
    defaults = {k: p.default for k, p in inspect.signature(SLED.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    tts_conf = {**defaults, **(conf.get("tts_conf") or {})}
    tts_conf["bos_id"] = 0 if tts_conf["bos_id"] is None else tts_conf["bos_id"]
    tts_conf["eos_id"] = 2 if tts_conf["eos_id"] is None else tts_conf["eos_id"]
    token_list = conf["token_list"]
    state = read_state_dict(model_file)  # weights only; errors name the file
    weights = export_state_dict(state, tts_conf["stop_pos_weight"])

    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    out = Path(out)
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    config = config_from_tts_conf(tts_conf, len(token_list), int(conf["odim"]))
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (tmp / "generation_config.json").write_text(json.dumps(
        {"_from_model_config": True, "bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]},
        indent=2) + "\n")
    Tokenizer.from_file(str(conf["bpemodel"])).model.save(str(tmp))  # vocab.json + merges.txt
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


__all__ = ["export_checkpoint"]
