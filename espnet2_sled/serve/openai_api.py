"""OpenAI's speech API: ``POST /v1/audio/speech``, ``GET /v1/models``, ``GET /v1/audio/voices``.

The request body is OpenAI's: ``model`` (any name: one model is served), ``input``,
``voice`` (a name from ``/v1/audio/voices``; OpenAI's names mean the model's own voice),
``response_format`` (``mp3`` default, ``opus``, ``wav``, ``flac``, ``pcm``), ``speed`` (1.0
only: SLED has no rate control, other values get a 400), ``stream_format`` (``audio``
default, or ``sse``), plus SLED's ``seed``, ``cfg_scale``, ``stop_threshold``, ``max_frames``.

The body is always streamed (chunked transfer): the text goes to one ``LoopStream`` (the
server's one decode path) and each chunk is encoded (``AudioEncoder``) and sent as it is
decoded. The headers wait for the first chunk, so a request that fails before any audio
gets an OpenAI-shaped JSON error with its status; a failure after audio started ends the
body early (the connection is cut, so the client sees a truncated transfer, never a file
that looks complete). With ``stream_format: "sse"`` the body is server-sent events:
``speech.audio.delta`` (base64 of the encoded bytes) ... ``speech.audio.done``.
"""

import base64
import json
from typing import Any, Dict, Optional, Tuple

from aiohttp import web

from espnet2_sled.serve.access import openai_error
from espnet2_sled.serve.audio_formats import FORMATS, OPENAI_SAMPLE_RATE, AudioEncoder
from espnet2_sled.serve.protocol import MESSAGE_TOO_BIG, RequestError, parse_object, parse_options
from espnet2_sled.serve.session import LoopStream
from espnet2_sled.serve.voices import Voices

VOICES = web.AppKey("voices", Voices)
SLED_OPTIONS = ("seed", "cfg_scale", "stop_threshold", "max_frames")
SPEECH_KEYS = ("model", "input", "voice", "response_format", "speed", "stream_format", "instructions") + SLED_OPTIONS
STREAM_FORMATS = ("audio", "sse")


class SpeechError(Exception):
    def __init__(self, status: int, message: str, code: str, param: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def response(self) -> web.Response:
        kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error",
                503: "server_error"}.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return openai_error(self.status, self.message, self.code, kind, self.param)


def add_routes(app: web.Application, voices: Voices) -> None:
    app[VOICES] = voices
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/audio/voices", list_voices)


async def models(request: web.Request) -> web.Response:
    from espnet2_sled.serve.app import INFO

    name = request.app[INFO]["model"]
    return web.json_response({"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                                           "owned_by": "espnet2_sled"}]})


async def list_voices(request: web.Request) -> web.Response:
    return web.json_response(request.app[VOICES].describe())


def _string(body: Dict[str, Any], key: str, default: Optional[str] = None, choices=None) -> Optional[str]:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpeechError(400, f"'{key}' is {type(value).__name__}; expected a string", "invalid_type", key)
    if choices is not None and value not in choices:
        raise SpeechError(400, f"'{key}' is '{value}'; expected one of {list(choices)}", f"unsupported_{key}", key)
    return value


def parse_speech_request(raw: str, voices: Voices, limits) -> Tuple[str, str, str, Any]:
    """Body -> (input text, response_format, stream_format, SynthesisOptions); raises ``SpeechError``."""
    try:
        body = parse_object(raw)
        options = parse_options({k: body[k] for k in SLED_OPTIONS if k in body}, limits)
    except RequestError as e:
        raise SpeechError(400, e.message, e.error)
    unknown = sorted(set(body) - set(SPEECH_KEYS))
    if unknown:
        raise SpeechError(400, f"unknown field(s) {unknown}; known: {sorted(SPEECH_KEYS)}", "unknown_parameter",
                          unknown[0])
    if "input" not in body:
        raise SpeechError(400, "'input' is missing: give the text to speak", "missing_input", "input")
    text = _string(body, "input")
    if not text.strip():
        raise SpeechError(400, "'input' is empty: give the text to speak", "empty_input", "input")
    if len(text) > limits.max_text_chars:
        raise SpeechError(413, f"'input' is {len(text)} characters; at most {limits.max_text_chars} "
                               "(--max_text_chars): split it into several requests", "input_too_long", "input")
    _string(body, "model")
    response_format = _string(body, "response_format", "mp3", FORMATS)
    stream_format = _string(body, "stream_format", "audio", STREAM_FORMATS)
    if body.get("instructions"):
        raise SpeechError(400, "'instructions' is not supported: SLED follows a voice prompt, not a description; "
                               "pick a 'voice' from /v1/audio/voices", "unsupported_instructions", "instructions")
    speed = body.get("speed", 1.0)
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, (int, float)) or speed != 1.0):
        raise SpeechError(400, f"'speed' is {speed!r}; only 1.0 is supported (SLED has no speaking-rate control)",
                          "unsupported_speed", "speed")
    if isinstance(body.get("voice"), dict) and isinstance(body["voice"].get("id"), str):
        body["voice"] = body["voice"]["id"]  # OpenAI's newer {"id": ...} form
    try:
        options = voices.options(_string(body, "voice", "default"), **options.decode_kwargs())
    except KeyError as e:
        raise SpeechError(400, e.args[0], "unknown_voice", "voice")
    return text, response_format, stream_format, options


def _status(error: RequestError) -> int:
    return 413 if error.code == MESSAGE_TOO_BIG else error.http_status


async def speech(request: web.Request) -> web.StreamResponse:
    from espnet2_sled.serve.app import SCHEDULER

    scheduler = request.app[SCHEDULER]
    try:
        try:
            raw = await request.text()
        except web.HTTPRequestEntityTooLarge:
            raise SpeechError(413, f"request body is over {scheduler.limits.max_message_bytes} bytes; shorten "
                                   "'input'", "request_too_large")
        text, response_format, stream_format, options = parse_speech_request(raw, request.app[VOICES],
                                                                              scheduler.limits)
        try:
            session = LoopStream(scheduler, options)
        except RequestError as e:  # --max_sessions busy
            raise SpeechError(_status(e), e.message, e.error)
    except SpeechError as e:
        return e.response()
    with session:
        encoder = AudioEncoder(response_format, scheduler.sample_rate)
        chunks = session.audio()
        try:
            session.send(text, end=True)
            first = await chunks.__anext__()  # the headers wait for the first chunk (or the error)
        except StopAsyncIteration:
            first = b""
        except RequestError as e:
            return SpeechError(_status(e), e.message, e.error).response()
        sse = stream_format == "sse"
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream" if sse else encoder.content_type,
            "X-Sample-Rate": str(OPENAI_SAMPLE_RATE), "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await _write(response, encoder.encode(first), sse)
            async for pcm in chunks:
                await _write(response, encoder.encode(pcm), sse)
            await _write(response, encoder.finish(), sse)
        except RequestError:  # the model failed after audio went out: cut the body short
            if request.transport is not None:
                request.transport.close()
            return response
        except (ConnectionError, RuntimeError):
            return response  # the client went away; leaving the block frees the session
        if sse:  # OpenAI's usage shape; SLED counts characters in and 24 kHz samples out, not tokens
            usage = {"input_tokens": len(text), "output_tokens": encoder.samples, "total_tokens": len(text)
                     + encoder.samples}
            await response.write(f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode())
        await response.write_eof()
        return response


async def _write(response: web.StreamResponse, data: bytes, sse: bool) -> None:
    if not data:
        return
    if sse:
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
        data = f"data: {json.dumps(event)}\n\n".encode()
    await response.write(data)
