"""One real server process for tests/server: a tiny streaming model with the weight-free mel
latent, trained for one step through the training CLI, served on 127.0.0.1 at a free port."""

import contextlib
import dataclasses
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from served import ALLOWED_ORIGIN, API_KEY, IDLE_TIMEOUT, MAX_SESSIONS, MAX_TEXT_CHARS, sine_prompt

from espnet2_sled.bin import sled_train
from espnet2_sled.bin.serve import find_checkpoint
from factory import DEBUG_CONF, REPO, train_args, write_dataset

# Sample-for-sample comparisons need the same float summation order on both sides: the
# server process (same environment, so the same OMP_NUM_THREADS for torch and numpy) and this
# one use the same number of torch threads, whatever other tests in the session set
# (e.g. extraction's --num_threads calls torch.set_num_threads in this process).
THREADS = int(os.environ.get("OMP_NUM_THREADS", "2"))  # tests/conftest.py sets a default


@pytest.fixture(autouse=True)
def same_threads_as_the_server():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def server_exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    data, exp = root / "data", root / "exp"
    write_dataset(data, odim=8)
    conf = yaml.safe_load(DEBUG_CONF.read_text())
    # few Griffin-Lim iterations: the audio only has to be deterministic here, and cheap
    latent_conf = dict(n_mels=4, stack=2, griffin_lim_iters=2, stream_griffin_lim_iters=2, stream_context_frames=2)
    conf["tts_conf"].update(layout="packed", latent="mel", latent_conf=latent_conf)
    conf.update(max_epoch=1, num_iters_per_epoch=1)
    (root / "conf.yaml").write_text(yaml.safe_dump(conf))
    sled_train.main(train_args(data, exp, config=root / "conf.yaml"))
    return exp


@pytest.fixture(scope="session")
def synthesizer(server_exp):
    """The in-process API on the same files the server loads (the reference for equality)."""
    from espnet2_sled.text2speech import SLEDText2Speech

    return SLEDText2Speech(server_exp / "config.yaml", find_checkpoint(server_exp))


@pytest.fixture(scope="session")
def server(server_exp, tmp_path_factory):
    """Base URL ``http://127.0.0.1:PORT`` of a running ``python -m espnet2_sled.bin.serve``."""
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    with running_server(server_exp, log) as (url, _):
        yield url


@contextlib.contextmanager
def running_server(exp, log, extra_args=()):
    """Starts the server on a free loopback port; yields (base URL, every line it printed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("SLED_API_KEY", None)
    cmd = [sys.executable, "-m", "espnet2_sled.bin.serve", "--model_file", str(exp), "--port", "0",
           "--max_sessions", str(MAX_SESSIONS), "--idle_timeout", str(IDLE_TIMEOUT),
           "--max_text_chars", str(MAX_TEXT_CHARS), *extra_args]
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline, url, printed = time.monotonic() + 180, None, []
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        printed.append(line.strip())
        if line.startswith("serving on "):
            url = line.split()[-1]
    if url is None:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"server did not start (exit {proc.returncode}); its log:\n{log.read_text()[-4000:]}")
    assert url.startswith("http://127.0.0.1:")
    try:
        yield url, printed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclasses.dataclass
class ProtocolServer:
    url: str  # http://127.0.0.1:PORT
    wyoming_port: int
    voices: Path  # the --voices folder: hum.wav + hum.txt (good), broken.wav, untranscribed.wav (left out)
    log: Path
    printed: list


@pytest.fixture(scope="session")
def protocol_server(server_exp, tmp_path_factory):
    """The server with --voices, --api_key, --allow_origin, --wyoming_port and --default_seed 0
    (tests/server/test_openai.py and test_wyoming.py share it)."""
    import soundfile as sf

    root = tmp_path_factory.mktemp("protocols")
    voices = root / "voices"
    voices.mkdir()
    hum, sample_rate, _ = sine_prompt()
    sf.write(voices / "hum.wav", hum, sample_rate, subtype="FLOAT")
    (voices / "hum.txt").write_text("a low hum.\n")
    (voices / "broken.wav").write_bytes(b"not a wave file")
    (voices / "broken.txt").write_text("whatever.\n")
    sf.write(voices / "untranscribed.flac", hum, sample_rate)
    extra = ["--voices", str(voices), "--api_key", API_KEY, "--allow_origin", ALLOWED_ORIGIN,
             "--wyoming_port", "0", "--default_seed", "0"]
    with running_server(server_exp, root / "server.log", extra) as (url, printed):
        wyoming = [line for line in printed if line.startswith("wyoming on tcp://")]
        assert wyoming, printed
        yield ProtocolServer(url, int(wyoming[0].rsplit(":", 1)[1]), voices, root / "server.log", printed)
