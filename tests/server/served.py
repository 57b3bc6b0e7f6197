"""A real client of the server (aiohttp), every wait bounded, plus the in-process references."""

import asyncio
import base64
import http.client
import io
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import aiohttp
import numpy as np
import soundfile as sf

from espnet2_sled.serve.protocol import pcm16

TIMEOUT = 60.0  # seconds any one exchange with the server may take
# the server's limits in these tests: small, so that the tests reach them quickly
MAX_SESSIONS = 2
IDLE_TIMEOUT = 1.5
MAX_TEXT_CHARS = 300
MAX_MESSAGES = 5000
# conftest.protocol_server's access settings
API_KEY = "test-key-123"
ALLOWED_ORIGIN = "https://allowed.example"


@dataclass
class Received:
    events: List[Dict[str, Any]] = field(default_factory=list)
    audio: List[bytes] = field(default_factory=list)  # binary frames, in order
    arrival: List[float] = field(default_factory=list)  # perf_counter of each binary frame
    close_code: Optional[int] = None

    @property
    def pcm(self) -> bytes:
        return b"".join(self.audio)

    def last(self, kind: str) -> Dict[str, Any]:
        found = [e for e in self.events if e["event"] == kind]
        assert found, f"no '{kind}' event among {[e['event'] for e in self.events]}"
        return found[-1]


async def stream(url: str, messages: List[Any], session: Optional[aiohttp.ClientSession] = None,
                 disconnect_after_chunks: Optional[int] = None, received: Optional[Received] = None) -> Received:
    """Send ``messages`` (dicts as JSON, str as raw text, bytes as binary), read until the server closes."""
    received = received if received is not None else Received()
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        timeout = aiohttp.ClientWSTimeout(ws_close=TIMEOUT)
        async with session.ws_connect(loopback(url) + "/stream", timeout=timeout) as ws:
            for m in messages:
                if isinstance(m, bytes):
                    await ws.send_bytes(m)
                else:
                    await ws.send_str(m if isinstance(m, str) else json.dumps(m))
            deadline = time.monotonic() + TIMEOUT
            for _ in range(MAX_MESSAGES):
                msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if msg.type == aiohttp.WSMsgType.TEXT:
                    received.events.append(json.loads(msg.data))
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    received.audio.append(msg.data)
                    received.arrival.append(time.perf_counter())
                    if disconnect_after_chunks is not None and len(received.audio) >= disconnect_after_chunks:
                        break  # leaving the block closes the connection mid-stream
                else:
                    break
            received.close_code = ws.close_code
    finally:
        if own:
            await session.close()
    return received


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT * 2))


def pieces_of(text: str, first: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Word-by-word messages (options in the first), then the end marker."""
    words = text.split(" ")
    messages = [{"text": w + (" " if i < len(words) - 1 else "")} for i, w in enumerate(words)]
    messages[0].update(first)
    return messages + [{"end": True}]


def reference_stream(synthesizer, text: str, prompt=None, **options) -> bytes:
    """``SLEDText2Speech.stream()`` in this process, fed the same words, as 16-bit PCM."""
    kwargs = {}
    if prompt is not None:
        audio, sample_rate, prompt_text = prompt
        kwargs = dict(voice_prompt=audio, prompt_sample_rate=sample_rate, prompt_text=prompt_text)
    session = synthesizer.stream(**kwargs, **options)
    chunks = []
    for message in pieces_of(text, {})[:-1]:
        chunks += list(session.push_text(message["text"]))
    chunks += list(session.end_text())
    session.close()
    return b"".join(pcm16(c.audio) for c in chunks), len(chunks)


def loopback(url: str) -> str:
    """The test server's own URL; anything but a loopback address is refused (no network here)."""
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"tests talk only to the server they started on loopback, not {url!r}")
    return url


def http_exchange(url: str, method: str, path: str, body: Optional[bytes] = None):
    """One HTTP request to the loopback server -> (status, content type, body bytes)."""
    parts = urllib.parse.urlsplit(loopback(url))
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def get_json(url: str, path: str) -> Dict[str, Any]:
    status, _, body = http_exchange(url, "GET", path)
    assert status == 200, (path, status, body[:500])
    return json.loads(body)


def post(url: str, body: Any):
    """POST /synthesize -> (status, content type, body bytes)."""
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return http_exchange(url, "POST", "/synthesize", data)


def wait_idle(url: str, timeout: float = 10.0) -> float:
    """Polls /info until no session is active; returns the seconds it took (fails past timeout)."""
    start = time.monotonic()
    for _ in range(int(timeout / 0.05) + 1):
        if get_json(url, "/info")["active_sessions"] == 0:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"sessions still active after {timeout} s: {get_json(url, '/info')}")


def sine_prompt(seconds: float = 0.5, sample_rate: int = 24000):
    """(samples [S], sample_rate, base64 of it as a WAV file): a 220 Hz hum as a voice prompt
    (at the model's rate: resampling is tested elsewhere, and importing librosa costs seconds)."""
    audio = (0.1 * np.sin(np.arange(int(seconds * sample_rate)) / sample_rate * 2 * np.pi * 220)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="WAV", subtype="FLOAT")
    return audio, sample_rate, base64.b64encode(buffer.getvalue()).decode()
