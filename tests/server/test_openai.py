"""OpenAI's speech API on the real server process, called with the official ``openai`` package.

The server (conftest.protocol_server) runs with --voices, --api_key, --allow_origin and
--wyoming_port; its model makes 24 kHz audio, so ``pcm`` is the stream's samples untouched.
"""

import asyncio
import base64
import io
import json
import time

import aiohttp
import openai
import pytest
import soundfile as sf
from served import ALLOWED_ORIGIN, API_KEY, MAX_SESSIONS, MAX_TEXT_CHARS, http_exchange, loopback, run, sine_prompt

from espnet2_sled.serve.protocol import pcm16

TEXT = "the cat sat on the mat."
LONG = "the cat sat on the mat, and then the dog sat on the rug by the door."


def client(server, api_key=API_KEY) -> openai.OpenAI:
    """The official client at the loopback server (no retries; proxy variables ignored: loopback only)."""
    return openai.OpenAI(base_url=loopback(server.url) + "/v1", api_key=api_key, max_retries=0, timeout=60,
                         http_client=openai.DefaultHttpxClient(trust_env=False))


def reference(synthesizer, text, voice=None, **options) -> bytes:
    """``SLEDText2Speech.stream()`` in this process fed the whole text at once, as 16-bit PCM."""
    kwargs = {}
    if voice is not None:
        audio, sample_rate, transcript = voice
        kwargs = dict(voice_prompt=audio, prompt_sample_rate=sample_rate, prompt_text=transcript)
    session = synthesizer.stream(**kwargs, **options)
    chunks = list(session.push_text(text)) + list(session.end_text())
    session.close()
    return b"".join(pcm16(c.audio) for c in chunks)


def test_pcm_equals_the_in_process_api(protocol_server, synthesizer):
    assert synthesizer.fs == 24000  # OpenAI's rate: no resampling in between, so sample for sample
    audio = client(protocol_server).audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                                        response_format="pcm", extra_body={"seed": 0})
    expected = reference(synthesizer, TEXT, seed=0)
    assert len(expected) > 0 and audio.content == expected


def test_named_voice_equals_the_in_process_api_with_that_prompt(protocol_server, synthesizer):
    # The one-step model stops at once after the hum (an empty_output error): a stop threshold
    # it never reaches and a frame cap make it speak, so that there is audio to compare.
    options = {"seed": 3, "stop_threshold": 2.0, "max_frames": 12}
    hum, sample_rate, _ = sine_prompt()
    audio = client(protocol_server).audio.speech.create(model="sled", voice="hum", input=TEXT,
                                                        response_format="pcm", extra_body=options)
    expected = reference(synthesizer, TEXT, voice=(hum[None], sample_rate, "a low hum."), **options)
    assert len(expected) > 0 and audio.content == expected
    assert audio.content != reference(synthesizer, TEXT, **options)  # the prompt changed the audio
    again = client(protocol_server).audio.speech.create(model="sled", voice={"id": "hum"}, input=TEXT,
                                                        response_format="pcm", extra_body=options)
    assert again.content == audio.content  # OpenAI's newer {"id": ...} voice form


@pytest.mark.parametrize("response_format", ["wav", "flac", "mp3", "opus"])
def test_every_format_streams_and_decodes_to_the_right_length(protocol_server, synthesizer, response_format):
    samples = len(reference(synthesizer, TEXT, seed=1)) // 2
    with client(protocol_server).audio.speech.with_streaming_response.create(
            model="tts-1", voice="nova", input=TEXT, response_format=response_format, extra_body={"seed": 1}) as r:
        assert r.headers["transfer-encoding"] == "chunked"
        body = b"".join(r.iter_bytes())
    audio, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 24000 and audio.ndim == 1
    if response_format == "mp3":  # + encoder delay, the silent placeholder frame, padding (audio_formats.py)
        assert samples + 1681 <= len(audio) <= samples + 2256, (len(audio), samples)
    else:
        assert len(audio) == samples
    if response_format in ("wav", "flac"):  # lossless: the same samples as pcm
        assert audio.tobytes() == reference(synthesizer, TEXT, seed=1)


def test_sse_deltas_hold_the_pcm(protocol_server, synthesizer):
    with client(protocol_server).audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm", stream_format="sse",
            extra_body={"seed": 0}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[-1:]] == ["speech.audio.done"]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"} and len(events) > 2
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert pcm == reference(synthesizer, TEXT, seed=0)


def test_first_bytes_arrive_before_the_utterance_is_decoded(protocol_server):
    """Arrival times of the body's pieces: the first comes well before the last (many chunks)."""
    async def timed():
        body = {"model": "tts-1", "voice": "alloy", "input": LONG, "response_format": "pcm", "seed": 0,
                "stop_threshold": 100.0, "max_frames": 200}  # never stops early: 200 frames, many chunks
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession() as session:
            sent = time.perf_counter()
            async with session.post(protocol_server.url + "/v1/audio/speech", json=body, headers=headers) as r:
                assert r.status == 200
                arrivals = [(time.perf_counter() - sent, len(piece)) async for piece in r.content.iter_any()]
        return arrivals
    arrivals = run(timed())
    first_seconds, first_bytes = arrivals[0]
    last_seconds, total = arrivals[-1][0], sum(n for _, n in arrivals)
    assert first_bytes < total / 4, arrivals[:5]
    assert first_seconds < last_seconds / 3, (first_seconds, last_seconds)


def status_of(server, body, api_key=API_KEY, headers=None):
    """POST /v1/audio/speech through the openai client -> (status, OpenAI error object)."""
    try:
        client(server, api_key).audio.speech.create(**body, extra_headers=headers)
    except openai.APIStatusError as e:
        return e.status_code, e.body
    return 200, None


async def websocket_status(url: str) -> int:
    """The handshake's HTTP status (101: switched to WebSocket)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


def test_bad_input_gets_openai_errors(protocol_server):
    ok = dict(model="tts-1", voice="alloy", input=TEXT, response_format="pcm")
    status, error = status_of(protocol_server, dict(ok, voice="nobody"))
    assert status == 400 and error["code"] == "unknown_voice" and "hum" in error["message"] \
        and "alloy" in error["message"] and "broken" not in error["message"]
    status, error = status_of(protocol_server, dict(ok, response_format="aac"))
    assert status == 400 and error["param"] == "response_format" and "'opus'" in error["message"]
    assert status_of(protocol_server, dict(ok, input="  "))[0] == 400
    status, error = status_of(protocol_server, dict(ok, input="a" * (MAX_TEXT_CHARS + 1)))
    assert status == 413 and error["code"] == "input_too_long"
    status, error = status_of(protocol_server, dict(ok, speed=1.5))
    assert status == 400 and "1.0" in error["message"]
    status, error = status_of(protocol_server, ok, api_key="wrong")
    assert status == 401 and error["type"] == "authentication_error"
    status, _ = http_exchange(protocol_server.url, "POST", "/v1/audio/speech", json.dumps(ok).encode())[:2]
    assert status == 401  # no key at all
    status, error = status_of(protocol_server, ok, headers={"Origin": "https://evil.example"})
    assert status == 403 and "--allow_origin" in error["message"]
    assert status_of(protocol_server, ok, headers={"Origin": ALLOWED_ORIGIN})[0] == 200
    assert run(websocket_status(protocol_server.url + "/stream")) == 401  # the WebSocket needs the key too
    assert run(websocket_status(protocol_server.url + "/stream?api_key=wrong")) == 401
    assert run(websocket_status(f"{protocol_server.url}/stream?api_key={API_KEY}")) == 101
    # DNS rebinding: a foreign name pointed at 127.0.0.1 is same-origin with itself; its Host gives it away
    status, error = status_of(protocol_server, ok, headers={"Origin": "http://evil.example", "Host": "evil.example"})
    assert status == 403 and error["code"] == "host_not_allowed"


def test_models_and_voices(protocol_server):
    models = client(protocol_server).models.list()
    assert [m.id for m in models.data] == ["exp"]  # the --model_file name (conftest.server_exp)
    status, _, body = http_exchange(protocol_server.url, "GET", "/v1/audio/voices")
    assert status == 401  # the key is needed here too
    voices = client(protocol_server).get("/audio/voices", cast_to=object)
    assert [v["id"] for v in voices["voices"]] == ["hum", "default"]
    assert voices["voices"][0]["transcript"] == "a low hum." and "alloy" in voices["aliases"]
    log = protocol_server.log.read_text()
    assert "broken.wav" in log and "untranscribed.txt" in log  # the files left out are named, with the fix


def test_too_many_sessions_is_503_and_the_others_are_unaffected(protocol_server, synthesizer):
    """MAX_SESSIONS WebSocket streams hold every slot (text sent, no end yet); a speech request is
    refused with 503 at once; then the streams finish with the audio they would have made alone."""
    words = TEXT.split(" ")

    async def scenario():
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(f"{protocol_server.url}/stream?api_key={API_KEY}")
                       for _ in range(MAX_SESSIONS)]
            for i, ws in enumerate(sockets):
                await ws.receive_json(timeout=30)  # ready
                await ws.send_json({"text": words[0] + " ", "seed": i})
            refused = await asyncio.to_thread(status_of, protocol_server,
                                              dict(model="tts-1", voice="alloy", input=TEXT))
            received = []
            for ws in sockets:
                await ws.send_json({"text": " ".join(words[1:])})
                await ws.send_json({"end": True})
            for ws in sockets:
                pcm = b""
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        pcm += msg.data
                received.append(pcm)
            return refused, received

    (status, error), received = run(scenario())
    assert status == 503 and error["code"] == "server_full"
    for i, pcm in enumerate(received):
        session = synthesizer.stream(seed=i)
        chunks = list(session.push_text(words[0] + " ")) + list(session.push_text(" ".join(words[1:])))
        chunks += list(session.end_text())
        assert pcm == b"".join(pcm16(c.audio) for c in chunks)
