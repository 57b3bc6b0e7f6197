"""Never silent, served (issue #21): no audio is an error (never a header-only WAV), short audio
comes with its report (the done event's ``report``, the ``X-Decode-Report`` header), a body
shorter than its Content-Length is answered 408 after a bounded wait, and the server's own
start-up and prompt errors read as messages."""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

from served import IDLE_TIMEOUT, http_exchange, loopback, pieces_of, post, run, stream

from espnet2_sled.serve.protocol import INVALID_PAYLOAD, NORMAL
from factory import REPO

TEXT = "the cat sat on the mat."  # 23 tokens
AT_ONCE = 1e-9  # a stop threshold every stop probability reaches: the model stops at its first frame


def test_no_audio_is_an_error_over_http_and_websocket(server):
    status, content_type, body = post(server, {"text": TEXT, "seed": 0, "stop_threshold": AT_ONCE})
    error = json.loads(body)
    assert status == 400 and content_type.startswith("application/json") and error["error"] == "empty_output"
    assert error["message"].startswith(f"text {TEXT!r}: the model produced no audio (0 frames for 23 text tokens")
    assert "try another seed, or a higher stop_threshold" in error["message"]
    got = run(stream(server, pieces_of(TEXT, {"seed": 0, "stop_threshold": AT_ONCE})))
    assert got.close_code == INVALID_PAYLOAD and not got.audio
    assert got.last("error")["error"] == "empty_output"
    # the text so far: the stream ends as soon as the model stops, which may be before all words arrived
    assert re.search(r"streamed text '(the|the cat|the cat sat)[^']*': the model produced no audio \(0 frames for "
                     r"\d+ text tokens: it stopped at once\); try another seed", got.last("error")["message"])


def test_short_audio_comes_with_its_report(server, synthesizer):
    # A stop threshold the model reaches after a few frames (found in process, same model and seed).
    probs = synthesizer(TEXT, seed=0, stop_threshold=1.5, max_frames=8)["stop_probs"].tolist()
    frames = next(i for i in range(1, len(probs)) if probs[i] > max(probs[:i]))
    status, _, body, headers = exchange_with_headers(server, {"text": TEXT, "seed": 0, "stop_threshold": probs[frames]})
    assert status == 200, body[:300]
    report = json.loads(headers["X-Decode-Report"])
    assert (report["frames"], report["text_tokens"], report["short_pieces"]) == (frames, 23, [1])
    assert f"{frames} frames for 23 text tokens" in report["warnings"][0]
    assert "implausibly short" in report["warnings"][0]
    # The stream's done event carries the same kind of report (it ran to max_frames: as asked, not short).
    got = run(stream(server, pieces_of(TEXT, {"seed": 0, "stop_threshold": 1.5, "max_frames": 8})))
    done = got.last("done")
    assert got.close_code == NORMAL and done["report"]["text_tokens"] == 23
    assert done["report"]["frames"] == sum(e["frames"] for e in got.events if e["event"] == "chunk")
    assert done["report"]["short_pieces"] == [] and done["report"]["warnings"] == []


def exchange_with_headers(url, body):
    import http.client

    parts = urllib.parse.urlsplit(loopback(url))
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", "/synthesize", body=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read(), dict(response.getheaders())
    finally:
        connection.close()


def test_a_body_shorter_than_its_content_length_times_out(server):
    parts = urllib.parse.urlsplit(loopback(server))
    start = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=IDLE_TIMEOUT + 30) as sock:
        sock.sendall(b"POST /synthesize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"text\": \"the cat")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    waited = time.monotonic() - start
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:300]
    error = json.loads(payload)
    assert error["error"] == "body_timeout" and "Content-Length 1000" in error["message"]
    assert "--idle_timeout" in error["message"] and "send the whole body" in error["message"]
    assert IDLE_TIMEOUT <= waited < IDLE_TIMEOUT + 15  # bounded, not 45 s and more
    assert http_exchange(server, "GET", "/info")[0] == 200  # and the server serves on


def test_random_bytes_as_prompt_name_the_format_not_an_object(server):
    prompt = base64.b64encode(os.urandom(300)).decode()
    status, _, body = post(server, {"text": TEXT, "prompt_audio": prompt, "prompt_text": "hi."})
    message = json.loads(body)["message"]
    assert status == 400 and "BytesIO" not in message and " at 0x" not in message
    assert message.startswith("'prompt_audio' (300 bytes) is not audio that libsndfile reads (")
    assert "send a WAV, FLAC or OGG file" in message


def serve_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "espnet2_sled.bin.serve", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_serve_names_a_missing_model_without_traceback_and_refuses_abbreviations(tmp_path):
    r = serve_cli("--model_file", tmp_path / "no_such_exp", "--port", "0")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: --model_file '{tmp_path / 'no_such_exp'}' does not exist; give a .zip" in r.stderr
    r = serve_cli("--model_file", tmp_path / "no_such_exp", "--max_sess", "3")
    assert r.returncode == 2 and "unrecognized arguments: --max_sess 3" in r.stderr
