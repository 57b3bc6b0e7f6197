#!/usr/bin/env python3
"""sled.sh --pretrained: fine-tune a released / trained SLED on this recipe's data.

    pretrained_opts.py --pretrained DIR_OR_ZIP --out exp/pretrained --train_config T.yaml
        [--streaming_config S.yaml] [--latent mel] [--latent_weights W]
    -> shell assignments for sled.sh (eval'd): token_list, bpemodel, token_type, cleaner, g2p,
       train_config, streaming_config, pretrained_model, pretrained_odim, pretrained_streaming,
       and latent / latent_opts / latent_weights when the model carries its latent space

DIR: what ``espnet2_sled.bin.import_upstream`` wrote (config.yaml + model.pth + tokenizer.json)
or any experiment dir (config.yaml + a checkpoint), or a packed ``.zip`` (``espnet2.bin.pack``,
unpacked into OUT). The model's own tokenizer (its token list, BPE / byte-level BPE model,
cleaner, g2p) replaces the recipe's, so stage 3 trains nothing. Its tts_conf (the network's
shape and layout) replaces the one in --train_config, whose training settings (optimiser,
schedule, epochs, batch size) are kept: OUT/finetune.yaml. For stage 6 (an offline model made
streaming), OUT/finetune_streaming.yaml takes the streaming config's layout keys on top; a
model that streams already is fine-tuned in its own layout in stage 5 and stage 6 is skipped.
Written every run (a few ms; yaml only, no torch).
"""

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Dict, Optional

import yaml

PREFERRED = ("model.pth", "valid.loss.best.pth", "valid.loss.ave.pth", "latest.pth")
STREAMING_KEYS = ("layout", "tokens_per_chunk", "frames_per_chunk", "stop_threshold")
LATENT_KEYS = ("latent", "latent_conf")


def fail(message: str):
    sys.exit(f"pretrained_opts.py: error: {message}")


def unpack(zip_path: Path, out: Path) -> Dict[str, str]:
    from espnet_model_zoo.downloader import ModelDownloader

    files = ModelDownloader(str(out / "unpacked")).unpack_local_file(str(zip_path))
    if "train_config" not in files or "model_file" not in files:
        fail(f"'{zip_path}' is not a packed TTS model (it has {sorted(files)}); pack one with espnet2.bin.pack tts")
    return {"config": files["train_config"], "model": files["model_file"]}


def find_model(directory: Path) -> Dict[str, str]:
    config = directory / "config.yaml"
    if not config.is_file():
        fail(f"--pretrained '{directory}' has no config.yaml; give what import_upstream wrote, an experiment "
             "dir, or a packed .zip")
    for name in PREFERRED:
        if (directory / name).is_file():
            return {"config": str(config), "model": str(directory / name)}
    found = sorted(p.name for p in directory.glob("*.pth"))
    if len(found) == 1:
        return {"config": str(config), "model": str(directory / found[0])}
    fail(f"--pretrained '{directory}': no checkpoint among {list(PREFERRED)} (found {found}); "
         "name the one to start from model.pth")


def resolve(path: Optional[str], directory: Path) -> str:
    """A file named in the pretrained config: as written, else beside the config (moved dirs)."""
    if path in (None, "", "none"):
        return "none"
    if Path(path).is_file():
        return str(Path(path).resolve())
    beside = directory / Path(path).name
    if beside.is_file():
        return str(beside.resolve())
    fail(f"the pretrained config names '{path}', which does not exist (nor '{beside}')")


def write_config(base: Path, tts_conf: Dict, out: Path) -> str:
    conf = yaml.safe_load(base.read_text())
    conf["tts"] = "sled"
    conf["tts_conf"] = tts_conf
    tmp = out.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(conf, sort_keys=False))
    tmp.rename(out)
    return str(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--train_config", default="")
    p.add_argument("--streaming_config", default="")
    args = p.parse_args(argv)

    source = Path(args.pretrained)
    if not source.exists():
        fail(f"--pretrained '{source}' does not exist; give an import_upstream dir, an exp dir or a packed .zip")
    if not args.train_config or not Path(args.train_config).is_file():
        fail(f"--pretrained needs --train_config (got '{args.train_config}'): its optimiser, schedule and epochs "
             "are used to fine-tune (the model's shape comes from the pretrained config)")
    args.out.mkdir(parents=True, exist_ok=True)
    files = unpack(source, args.out) if source.suffix == ".zip" else find_model(source)
    config_path = Path(files["config"])
    config = yaml.safe_load(config_path.read_text())
    if config.get("tts") != "sled" or not isinstance(config.get("token_list"), list):
        fail(f"'{config_path}' is not a SLED model config (tts: {config.get('tts')!r}, token_list inline)")

    (args.out / "tokens.txt").write_text("\n".join(config["token_list"]) + "\n")
    tts_conf = dict(config["tts_conf"])
    latent, latent_conf = tts_conf.pop("latent", None), dict(tts_conf.pop("latent_conf", None) or {})
    streaming = tts_conf.get("layout", "offline") != "offline"
    shell = {
        "token_list": str((args.out / "tokens.txt").resolve()),
        "token_type": config["token_type"],
        "bpemodel": resolve(config.get("bpemodel"), config_path.parent),
        "cleaner": config.get("cleaner") or "none",
        "g2p": config.get("g2p") or "none",
        "pretrained_model": str(Path(files["model"]).resolve()),
        "pretrained_odim": str(config["odim"]),
        "pretrained_streaming": "true" if streaming else "false",
        "train_config": write_config(Path(args.train_config), tts_conf, args.out / "finetune.yaml"),
        "streaming_config": "",
    }
    if args.streaming_config and not streaming:
        streaming_conf = yaml.safe_load(Path(args.streaming_config).read_text()).get("tts_conf") or {}
        tuned = dict(tts_conf, **{k: streaming_conf[k] for k in STREAMING_KEYS if k in streaming_conf})
        shell["streaming_config"] = write_config(Path(args.streaming_config), tuned,
                                                 args.out / "finetune_streaming.yaml")
    if latent is not None:  # the model's latent space: extract the recipe's latents in it
        weights = latent_conf.pop("weights", None)
        shell["latent"] = latent
        shell["latent_opts"] = " ".join(f"--latent_conf {k}={json.dumps(v) if not isinstance(v, str) else v}"
                                        for k, v in latent_conf.items())
        if latent == "encodec":
            info = config_path.parent / "import_info.json"
            if weights == "deferred" and info.is_file():
                weights = json.loads(info.read_text()).get("latent_weights")
            if weights and weights != "deferred":
                shell["latent_weights"] = weights
    print("\n".join(f"{k}={shlex.quote(v)}" for k, v in shell.items()))


if __name__ == "__main__":
    main()
