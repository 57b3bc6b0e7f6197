#!/usr/bin/env python3
"""Load on the synthesis server: 1, 2, 4, 8 concurrent streaming clients (localhost only).

    .venv/bin/python bench/bench_server.py          # mini-recipe zips (if the recipe ran) + paper.yaml
    .venv/bin/python bench/bench_server.py --model_file egs2/libriheavy/sled/exp/.../sled.zip
    .venv/bin/python bench/bench_server.py --configs paper --device cuda --out bench/results/server_h200.txt

Starts ``python -m espnet2_sled.bin.serve`` on 127.0.0.1 (a free port) per model: a trained
model (``--model_file``; by default the mini recipe's packed ``.zip`` files under
egs2/libriheavy/sled/exp/, offline and streaming, when there are any) and each
``--configs`` entry built with random weights (Encodec latent on random weights too; speed
does not depend on the weights; ``stop_threshold`` 1.5, so every stream makes exactly
``--max_frames`` frames). For each client count N, N clients connect at once and each
streams a 156-character sentence word by word (all words sent at once, then the end
marker), seed = client number. Per stream:

* first audio: from sending the first text message to receiving the first audio frame;
* wall RTF: from the first message to the last audio frame, over the audio's duration
  (< 1: the audio arrives faster than it plays);
* compute RTF: the server's model + decoder seconds over the audio's duration;
* complete: every chunk index 0..n-1 arrived, with the samples the server's ``done``
  event counted, and no error (nothing dropped).

``--routes ws openai`` (the default) measures each client count twice in the same run: the
WebSocket above, and OpenAI's ``POST /v1/audio/speech`` (the whole text in one request,
``response_format: pcm``, the body streamed): first audio is then the time to the first body
byte, wall RTF the last byte's time over the audio's duration, compute RTF is not reported
(the route sends no ``done`` event), and complete means status 200 and whole 16-bit samples.

Every loop is bounded (``--rounds``, ``--timeout``). Timings are only meaningful on a quiet
machine; the load average is printed with them.
"""

import argparse
import asyncio
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
TEXT = ("Streaming speech synthesis starts talking before the whole sentence has arrived, "
        "which matters when the text comes from a language model one word at a time.")


def mini_models() -> List[Path]:
    """The mini recipe's packed models (stage 9): the newest zip of each exp dir (offline, streaming)."""
    newest: Dict[Path, Path] = {}
    for path in sorted((REPO / "egs2/libriheavy/sled/exp").glob("*/*.zip"), key=lambda p: p.stat().st_mtime):
        if not path.name.endswith(".tmp.zip"):
            newest[path.parent] = path
    return sorted(newest.values())


def random_weights_exp(config: Path, out: Path, seed: int = 0) -> Path:
    """An experiment dir (config.yaml + random.pth) as the training CLI writes it, random weights."""
    import torch
    import yaml
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet2_sled.tasks.sled import SLEDTask

    out.mkdir(parents=True, exist_ok=True)
    conf = yaml.safe_load(config.read_text())
    if conf["tts_conf"].get("latent") == "encodec":
        conf["tts_conf"]["latent_conf"] = dict(conf["tts_conf"].get("latent_conf") or {}, weights="random")
    (out / "source.yaml").write_text(yaml.safe_dump(conf))
    tokens = ["<blank>", "<unk>", "<space>"] + list("abcdefghijklmnopqrstuvwxyz',.?!-") + ["<sos/eos>"]
    (out / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = SLEDTask.get_parser().parse_args([
        "--config", str(out / "source.yaml"), "--token_type", "char", "--token_list", str(out / "tokens.txt"),
        "--cleaner", "none", "--g2p", "none",
    ])
    torch.manual_seed(seed)
    model = SLEDTask.build_model(args)
    with torch.no_grad():  # a non-zero generator output, so frames are not all equal
        model.tts.lm.generator.output.linear.weight.normal_(0, 0.02)
    torch.save(model.state_dict(), out / "random.pth")
    with open(out / "config.yaml", "w") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    return out


class Server:
    """``python -m espnet2_sled.bin.serve`` on 127.0.0.1, port chosen by the OS."""

    def __init__(self, model_file: Path, device: str, max_sessions: int, log: Path, start_timeout: float = 600,
                 extra: List[str] = ()):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        cmd = [sys.executable, "-m", "espnet2_sled.bin.serve", "--model_file", str(model_file), "--port", "0",
               "--host", "127.0.0.1", "--device", device, "--max_sessions", str(max_sessions),
               "--idle_timeout", "120", "--max_text_chars", "10000", *extra]
        self.log = log
        with open(log, "w") as stderr:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        deadline, self.url = time.monotonic() + start_timeout, None
        while self.url is None and time.monotonic() < deadline and self.proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("serving on "):
                self.url = line.split()[-1]
        if self.url is None:
            self.stop()
            raise RuntimeError(f"server did not start; see {log}:\n{log.read_text()[-3000:]}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


async def one_stream(session, url: str, first: Dict, timeout: float) -> Dict:
    import aiohttp

    words = TEXT.split(" ")
    messages = [{"text": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]
    messages[0].update(first)
    chunks, samples, indices, arrival, done, errors = 0, 0, [], [], None, []
    async with session.ws_connect(url + "/stream") as ws:
        start = time.perf_counter()
        for m in messages + [{"end": True}]:
            await ws.send_str(json.dumps(m))
        deadline = start + timeout
        for _ in range(100000):
            msg = await ws.receive(timeout=max(0.1, deadline - time.perf_counter()))
            if msg.type == aiohttp.WSMsgType.BINARY:
                arrival.append(time.perf_counter() - start)
                chunks += 1
                samples += len(msg.data) // 2
            elif msg.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)
                if event["event"] == "chunk":
                    indices.append(event["index"])
                elif event["event"] == "done":
                    done = event
                elif event["event"] == "error":
                    errors.append(event)
            else:
                break
    complete = (done is not None and not errors and chunks == done["chunks"] == len(indices)
                and indices == list(range(chunks)) and samples == done["samples"])
    audio_seconds = done["audio_seconds"] if done else 0.0
    return dict(first_audio=arrival[0] if arrival else None, complete=complete, chunks=chunks, errors=errors,
                wall_rtf=arrival[-1] / audio_seconds if arrival and audio_seconds else None,
                compute_rtf=done["rtf"] if done else None, audio_seconds=audio_seconds)


async def one_speech(session, url: str, first: Dict, timeout: float, sample_rate: int = 24000) -> Dict:
    """OpenAI's route: POST /v1/audio/speech (pcm), time to the first body byte and to the last."""
    import aiohttp

    body = dict(first, model="sled", voice="alloy", input=TEXT, response_format="pcm")
    arrival, size, errors = [], 0, []
    start = time.perf_counter()
    async with session.post(url + "/v1/audio/speech", json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        if r.status != 200:
            errors.append(await r.text())
        else:
            async for piece in r.content.iter_any():
                arrival.append(time.perf_counter() - start)
                size += len(piece)
    audio_seconds = size / 2 / sample_rate
    return dict(first_audio=arrival[0] if arrival else None, complete=not errors and size > 0 and size % 2 == 0,
                chunks=len(arrival), errors=errors, compute_rtf=None, audio_seconds=audio_seconds,
                wall_rtf=arrival[-1] / audio_seconds if arrival and audio_seconds else None)


async def load(url: str, clients: int, first: Dict, timeout: float, route: str = "ws") -> List[Dict]:
    import aiohttp

    client = {"ws": one_stream, "openai": one_speech}[route]
    async with aiohttp.ClientSession() as session:
        return await asyncio.wait_for(asyncio.gather(*[
            client(session, url, dict(first, seed=i), timeout) for i in range(clients)]), timeout * 2)


def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def stat(fn, xs) -> float:
    return fn(xs) if xs else float("nan")


def bench_model(name: str, model_file: Path, args, report: List[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(model_file, args.device, max(args.clients), Path(tmp) / "server.log",
                        extra=["--decode_backend", args.decode_backend, "--quantize", args.quantize])
        try:
            import urllib.request

            with urllib.request.urlopen(server.url + "/info", timeout=60) as r:
                info = json.loads(r.read())
            first = {k: v for k, v in dict(max_frames=args.max_frames, stop_threshold=args.stop_threshold,
                                           cfg_scale=args.cfg_scale).items() if v is not None}
            asyncio.run(load(server.url, 1, dict(first, max_frames=min(args.max_frames or 8, 8)), args.timeout))
            line = (f"\n== {name}: {info['latent']['name']} latent, {info['streaming']['layout']} layout, "
                    f"{info['streaming']['frames_per_chunk']} frames ({info['streaming']['chunk_seconds']:.2f} s) "
                    f"per chunk, device {info['device']}, options {first}")
            report.append(line)
            print(line, flush=True)
            header = (f"{'route':>6} {'clients':>7} {'streams':>7} {'first audio median':>18} {'p95':>7} "
                      f"{'wall RTF median':>15} {'max':>6} {'compute RTF median':>18} {'complete':>8}")
            report.append(header)
            print(header, flush=True)
            for clients, route in ((c, r) for c in args.clients for r in args.routes):
                results = []
                for _ in range(args.rounds):
                    results += asyncio.run(load(server.url, clients, first, args.timeout, route))
                firsts = [r["first_audio"] for r in results if r["first_audio"] is not None]
                walls = [r["wall_rtf"] for r in results if r["wall_rtf"] is not None]
                computes = [r["compute_rtf"] for r in results if r["compute_rtf"] is not None]
                complete = sum(r["complete"] for r in results)
                row = (f"{route:>6} {clients:>7} {len(results):>7} {stat(statistics.median, firsts):>17.3f}s "
                       f"{stat(p95, firsts):>6.3f}s {stat(statistics.median, walls):>15.3f} {stat(max, walls):>6.3f} "
                       f"{stat(statistics.median, computes):>18.3f} {complete:>4}/{len(results):<3}")
                report.append(row)
                print(row, flush=True)
                for r in results:
                    if r["errors"]:
                        print(f"  error: {r['errors'][0]}", flush=True)
        finally:
            server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", type=Path, default=None,
                        help="trained model (.zip / exp dir); default: the mini recipe's zips, if any")
    parser.add_argument("--configs", nargs="*", default=["paper"],
                        help="conf/<name>.yaml served with random weights (e.g. paper streaming_paper)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--routes", nargs="+", default=["ws", "openai"], choices=["ws", "openai"],
                        help="WebSocket /stream and/or OpenAI's POST /v1/audio/speech, each measured at each load")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of each client count")
    parser.add_argument("--max_frames", type=int, default=225, help="frames per stream (225 = 3 s at 75 Hz)")
    parser.add_argument("--stop_threshold", type=float, default=None,
                        help="default: the model's for --model_file, 1.5 (never stop) for random weights")
    parser.add_argument("--cfg_scale", type=float, default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one stream may take")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (bench/results/...)")
    parser.add_argument("--decode_backend", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--quantize", default="none", choices=["none", "int8", "int4"])
    args = parser.parse_args(argv)
    load_average = os.getloadavg()
    report = [f"bench_server: {os.cpu_count()} CPUs, load average {load_average[0]:.1f}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, text {len(TEXT)} chars, "
              f"decode_backend {args.decode_backend}, quantize {args.quantize}"]
    print(report[0], flush=True)
    models = [args.model_file] if args.model_file else mini_models()
    for model_file in models:
        bench_model(Path(model_file).name, Path(model_file), args, report)
    if not models:
        print("(no mini-recipe zip under egs2/libriheavy/sled/exp: run the recipe with --mini true for it)")
    stop = args.stop_threshold
    for config in args.configs:
        with tempfile.TemporaryDirectory() as tmp:
            exp = random_weights_exp(REPO / "conf" / f"{config}.yaml", Path(tmp) / config)
            args.stop_threshold = 1.5 if stop is None else stop
            bench_model(f"{config} (random weights)", exp, args, report)
            args.stop_threshold = stop
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
