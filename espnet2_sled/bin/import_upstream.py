#!/usr/bin/env python3
"""Import a released SLED-TTS checkpoint (HF folder) as an ESPnet experiment directory.

    python -m espnet2_sled.bin.import_upstream --src SLED-TTS-Libriheavy --out exp/sled_upstream \\
        --latent_weights ~/.cache/torch/hub/checkpoints/encodec_24khz-d7cc33bc.th

reads ``config.json``, ``model.safetensors`` (never a pickle), ``vocab.json`` + ``merges.txt``
and writes, atomically (a temp dir renamed at the end):

    EXPDIR/config.yaml       complete ESPnet TTS config (tts: sled, token_type byte_bpe, ...)
    EXPDIR/model.pth         ESPnetTTSModel state dict ("tts."-prefixed, Encodec included)
    EXPDIR/tokenizer.json    the byte-level BPE (--bpemodel), plus vocab.json / merges.txt
    EXPDIR/upstream_config.json, EXPDIR/import_info.json   provenance

Paths inside config.yaml are relative to the current directory when EXPDIR is below it
(as ESPnet recipes write them), so run decoding and ``espnet2.bin.pack`` from there.
"""

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

import espnet2_sled.registry  # noqa: F401  (tts: sled and byte_bpe for ESPnet's model builder)
from espnet2_sled.checkpoint import CheckpointError
from espnet2_sled.tasks.sled import SLEDTask
from espnet2_sled.upstream.checkpoint import (
    UpstreamCheckpointError,
    import_state_dict,
    read_config,
    read_safetensors,
    tts_conf_from_config,
)
from espnet2_sled.upstream.tokenizer import (
    BYTE_BPE,
    SPECIAL_TOKENS,
    TokenizerFilesError,
    build_byte_bpe,
    read_vocab,
    token_list_from_vocab,
)

MODEL_FILE = "model.pth"
TOKENIZER_FILE = "tokenizer.json"
REQUIRED_FILES = ("config.json", "vocab.json", "merges.txt")


def config_path(path: Path) -> str:
    """How a file is named inside config.yaml: relative to the cwd if below it, else absolute
    (what ``espnet2.bin.pack`` does, so that it finds and rewrites the path)."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path(".").resolve()))
    except ValueError:
        return str(resolved)


def check_source(src: Path) -> None:
    if not src.is_dir():
        raise FileNotFoundError(f"upstream checkpoint folder '{src}' does not exist")
    missing = [name for name in REQUIRED_FILES if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"'{src}' lacks {', '.join(missing)}; download the whole repo, e.g. "
            "huggingface-cli download ICTNLP/SLED-TTS-Libriheavy --local-dir <dir>"
        )


def espnet_args(out: Path, tts_conf: Dict[str, Any], token_list, odim: int) -> argparse.Namespace:
    """A full ESPnet TTS config (every SLEDTask option at its default, plus ours)."""
    args = SLEDTask.get_parser().parse_args([
        "--output_dir", config_path(out), "--odim", str(odim), "--tts", "sled",
        "--token_type", BYTE_BPE, "--bpemodel", config_path(out / TOKENIZER_FILE),
        "--token_list", "placeholder", "--cleaner", "none", "--g2p", "none", "--normalize", "none",
    ])
    args.token_list = list(token_list)
    args.tts_conf = dict(tts_conf)
    return args


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def import_checkpoint(
    src: Union[str, Path],
    out: Union[str, Path],
    latent: str = "encodec",
    latent_weights: Optional[str] = None,
    decoder_padding: str = "replicate",
    cfg_scale: Optional[float] = None,
    stop_threshold: Optional[float] = None,
    overwrite: bool = False,
) -> Path:
    """Convert ``src`` (HF folder) into the ESPnet experiment dir ``out``; returns ``out``."""
    src, out = Path(src), Path(out)
    check_source(src)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"'{out}' exists and is not empty; pass --overwrite to replace it")

    upstream_config = read_config(src / "config.json")
    tts_conf = tts_conf_from_config(upstream_config, f"'{src / 'config.json'}'")
    vocab = read_vocab(src / "vocab.json")
    token_list = token_list_from_vocab(vocab)
    if len(token_list) != int(upstream_config["vocab_size"]):
        raise TokenizerFilesError(
            f"'{src / 'vocab.json'}' has {len(token_list)} tokens but config.json says vocab_size "
            f"{upstream_config['vocab_size']}; the tokenizer does not belong to these weights"
        )
    for name, token in (("bos_id", SPECIAL_TOKENS[0]), ("eos_id", SPECIAL_TOKENS[2])):
        if token_list[tts_conf[name]] != token:
            raise TokenizerFilesError(
                f"config.json's {name} {tts_conf[name]} is {token_list[tts_conf[name]]!r}, not {token}")
    odim = int(upstream_config["vae_embed_dim"])
    if cfg_scale is not None:
        tts_conf["cfg_scale"] = float(cfg_scale)
    if stop_threshold is not None:
        tts_conf["stop_threshold"] = float(stop_threshold)

    weights = read_safetensors(src)
    ours, tts_conf["stop_pos_weight"] = import_state_dict(weights, upstream_config, source=f"'{src}'")
    del weights

    build_conf = dict(tts_conf)
    if latent != "none":
        if latent == "encodec" and odim != 128:
            raise UpstreamCheckpointError(f"vae_embed_dim {odim} cannot be Encodec latents (128); use --latent none")
        build_conf.update(latent=latent, latent_conf=dict(weights=latent_weights, decoder_padding=decoder_padding))
        # The checkpoint carries the latent weights: a later load fills them from the .pth.
        tts_conf.update(latent=latent, latent_conf=dict(weights="deferred", decoder_padding=decoder_padding))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        args = espnet_args(out, build_conf, token_list, odim)
        model = SLEDTask.build_model(args)
        state = model.state_dict()
        # Check the key map against the real module tree: everything but the latent space
        # must come from upstream, and nothing upstream may be left over.
        unfilled = sorted(k for k in state if k not in ours and not k.startswith("tts.latent_space."))
        unknown = sorted(k for k in ours if k not in state)
        if unfilled or unknown:
            raise UpstreamCheckpointError(
                f"key map and model disagree: not filled from upstream {unfilled}; no such parameter {unknown}"
            )
        state.update(ours)
        model.load_state_dict(state, strict=True)
        torch.save(model.state_dict(), tmp / MODEL_FILE)
        del model, state, ours

        build_byte_bpe(src / "vocab.json", src / "merges.txt").save(str(tmp / TOKENIZER_FILE))
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(src / name, tmp / name)
        shutil.copyfile(src / "config.json", tmp / "upstream_config.json")
        args.tts_conf = tts_conf
        with open(tmp / "config.yaml", "w", encoding="utf-8") as f:
            yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
        weight_files = sorted(src.glob("model*.safetensors"))
        info = dict(
            source=str(src.resolve()),
            streaming=tts_conf["layout"] != "offline",
            weights={p.name: sha256(p) for p in weight_files},
            latent=latent, latent_weights=latent_weights,
            note="converted by espnet2_sled.bin.import_upstream; the weights' licence is the upstream authors'",
        )
        (tmp / "import_info.json").write_text(json.dumps(info, indent=2) + "\n")

        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Import a released SLED-TTS checkpoint (ICTNLP/SLED-TTS-*Libriheavy) as an ESPnet exp dir",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False,
    )
    parser.add_argument("--src", required=True,
                        help="HF folder: config.json, model.safetensors, vocab.json, merges.txt")
    parser.add_argument("--out", required=True, help="experiment dir to write (config.yaml, model.pth, tokenizer.json)")
    parser.add_argument("--latent", default="encodec", choices=["encodec", "none"],
                        help="latent space stored with the model (none: frames only, no audio)")
    parser.add_argument("--latent_weights", default=None,
                        help="Encodec 24 kHz weights: Meta's encodec_24khz-d7cc33bc.th, an HF facebook/encodec_24khz "
                             "dir, 'random' (tests only), or unset to search the offline caches")
    parser.add_argument("--decoder_padding", default="replicate", choices=["replicate", "reflect"],
                        help="Encodec decoder padding: replicate (streamable) or reflect (bit-exact upstream decode)")
    parser.add_argument("--cfg_scale", type=float, default=None, help="default guidance scale (2.0)")
    parser.add_argument("--stop_threshold", type=float, default=None,
                        help="default stop threshold (0.8 offline, 0.5 streaming, as upstream)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        out = import_checkpoint(
            args.src, args.out, args.latent, args.latent_weights, args.decoder_padding,
            args.cfg_scale, args.stop_threshold, args.overwrite,
        )
    except (UpstreamCheckpointError, CheckpointError, TokenizerFilesError, FileNotFoundError, FileExistsError) as e:
        sys.exit(f"import_upstream: error: {e}")
    logging.info(f"wrote {out}/config.yaml and {out}/{MODEL_FILE}")


if __name__ == "__main__":
    main()
