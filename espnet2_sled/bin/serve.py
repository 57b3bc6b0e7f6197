#!/usr/bin/env python3
"""Serve a SLED model over HTTP and WebSocket (a web page at ``/``), localhost by default.

    python -m espnet2_sled.bin.serve --model_file exp/sled/sled.zip
    python -m espnet2_sled.bin.serve --model_file exp/sled_train --port 8000 --device cuda

``--model_file``: a packed ``.zip`` (``espnet2.bin.pack``), an experiment directory
(``config.yaml`` + a ``.pth``), or a ``.pth`` (its ``config.yaml`` beside it or given by
``--train_config``). Prints ``serving on http://HOST:PORT`` once it accepts connections
(``--port 0`` picks a free port). The protocol is in ``espnet2_sled/serve/protocol.py``;
OpenAI's ``/v1/audio/speech`` in ``serve/openai_api.py``; ``--wyoming_port`` adds the Wyoming
protocol (Home Assistant) on its own TCP port (``serve/wyoming_server.py``, prints
``wyoming on tcp://HOST:PORT``).
"""

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import sys
from pathlib import Path
from typing import Optional

from espnet2_sled.serve.protocol import Limits

# checkpoint names in the order we prefer them inside an experiment directory
PREFERRED = ("valid.loss.best.pth", "valid.loss.ave.pth", "latest.pth")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--model_file", required=True, help="packed .zip, experiment dir, or .pth")
    p.add_argument("--train_config", default=None, help="config.yaml (default: beside the .pth)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=8000, help="0: any free port (printed)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--max_sessions", type=int, default=4,
                   help="streams + /synthesize requests at once; more are refused (close 1013 / HTTP 503)")
    p.add_argument("--idle_timeout", type=float, default=30.0,
                   help="seconds a stream may wait for its next message before the end marker")
    p.add_argument("--max_text_chars", type=int, default=2000, help="characters of text per stream / request")
    p.add_argument("--max_prompt_seconds", type=float, default=30.0, help="length of a voice prompt")
    p.add_argument("--cache_dir", default=None, help="where a .zip is unpacked (espnet_model_zoo's default)")
    p.add_argument("--voices", default=None, help="folder of NAME.wav/.flac + NAME.txt (transcript): named voices")
    p.add_argument("--api_key", default=os.environ.get("SLED_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1, /stream, /synthesize (default: $SLED_API_KEY)")
    p.add_argument("--allow_origin", action="append", default=[],
                   help="a web origin (e.g. https://chat.example.org) whose pages may call the server; repeatable")
    p.add_argument("--default_seed", type=int, default=None,
                   help="seed of /v1 and Wyoming requests that give none (same text, same audio); default: random")
    p.add_argument("--wyoming_port", type=int, default=None, help="also serve the Wyoming protocol on this port")
    p.add_argument("--wyoming_language", action="append", default=None,
                   help="language code(s) the Wyoming voices are listed under (default: en)")
    p.add_argument("--decode_backend", default=None, choices=["torch", "onnxruntime"],
                   help="onnxruntime: the CPU decode engine (espnet2_sled/engine), exported at start")
    p.add_argument("--quantize", default="none", choices=["none", "int8", "int4"],
                   help="int8 (PyTorch's or the engine's), int4 (engine only): as sled_inference")
    return p


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_checkpoint(exp: Path) -> Path:
    """The checkpoint to serve from an experiment dir: a preferred name, else the last epoch."""
    for name in PREFERRED:
        if (exp / name).is_file():
            return exp / name
    epochs = sorted(exp.glob("*epoch.pth"), key=lambda p: int(re.match(r"(\d+)", p.name).group(1))
                    if re.match(r"\d+", p.name) else -1)
    if epochs:
        return epochs[-1]
    others = sorted(exp.glob("*.pth"))
    if len(others) == 1:
        return others[0]
    raise FileNotFoundError(f"no checkpoint to serve in '{exp}' (looked for {', '.join(PREFERRED)}, "
                            f"*epoch.pth, or a single .pth; found {[p.name for p in others]}); pass the .pth")


def load_synthesizer(model_file: str, train_config: Optional[str] = None, device: str = "cpu",
                     cache_dir: Optional[str] = None, **speed):
    """``speed``: decode_backend / quantize, as ``SLEDText2Speech``."""
    path = Path(model_file)
    if not path.exists():  # said before ESPnet is imported (seconds)
        raise FileNotFoundError(f"--model_file '{path}' does not exist; give a .zip, an experiment dir or a .pth")
    from espnet2_sled.text2speech import SLEDText2Speech

    if path.suffix == ".zip":
        return SLEDText2Speech.from_pretrained(str(path), cachedir=cache_dir, device=device, **speed)
    if path.is_dir():
        path = find_checkpoint(path)
    config = Path(train_config) if train_config else path.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"train config '{config}' does not exist; pass --train_config")
    logging.info("serving %s with %s", path, config)
    return SLEDText2Speech(config, path, device=device, **speed)


async def serve(args) -> None:
    from aiohttp import web

    from espnet2_sled.serve.app import build_app
    from espnet2_sled.serve.served_model import ServedModel

    model_name = Path(args.model_file).name
    model = ServedModel(load_synthesizer(args.model_file, args.train_config, args.device, args.cache_dir,
                                         decode_backend=args.decode_backend, quantize=args.quantize), model_name)
    model.prepare_engine()
    limits = Limits(max_sessions=args.max_sessions, idle_timeout=args.idle_timeout,
                    max_text_chars=args.max_text_chars, max_prompt_seconds=args.max_prompt_seconds)
    from espnet2_sled.serve.app import SCHEDULER
    from espnet2_sled.serve.voices import Voices

    # a voice file that fails its checks is named in the log and left out
    voices, _ = Voices.from_dir(args.voices, args.max_prompt_seconds, args.default_seed)
    if not args.api_key and not is_loopback(args.host):
        logging.warning("serving on %s without an API key: anyone who can reach this address can use the model; "
                        "pass --api_key (or set SLED_API_KEY)", args.host)
    app = build_app(model, limits, voices=voices, api_key=args.api_key,
                    allow_origins=args.allow_origin, loopback_only=is_loopback(args.host))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    wyoming = None
    if args.wyoming_port is not None:
        from espnet2_sled.serve.wyoming_server import start_wyoming

        wyoming = await start_wyoming(app[SCHEDULER], voices, model_name, args.host, args.wyoming_port,
                                      args.wyoming_language or ["en"])
        print("wyoming on tcp://{}:{}".format(*wyoming.sockets[0].getsockname()[:2]), flush=True)
    print(f"serving on http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()  # until interrupted
    finally:
        if wyoming is not None:
            wyoming.close()
        await runner.cleanup()


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    for name in ("max_sessions", "max_text_chars"):
        if getattr(args, name) < 1:
            sys.exit(f"--{name} must be >= 1 (got {getattr(args, name)})")
    if not args.idle_timeout > 0:
        sys.exit(f"--idle_timeout must be > 0 seconds (got {args.idle_timeout})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except (FileNotFoundError, ValueError, TypeError) as e:  # a bad --model_file / config: its message, no traceback
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
