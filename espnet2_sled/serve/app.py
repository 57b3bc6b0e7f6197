"""The HTTP and WebSocket routes (aiohttp). Model work goes to the ``Scheduler``'s thread.

GET  /             the web page (static/index.html)
GET  /info         model, sample rate, latent space, streaming layout, limits, active sessions
POST /synthesize   {"text": ..., options} -> audio/wav (16-bit mono, offline decoding); header
                   X-Decode-Report: the decode's report (frames per text token, short pieces)
GET  /stream       WebSocket: text pieces in, audio chunks out (see protocol.py)
POST /v1/audio/speech, GET /v1/models, GET /v1/audio/voices: OpenAI's speech API (openai_api.py)
Access (API key, foreign web origins): access.py.
"""

import asyncio
import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional

from aiohttp import WSMsgType, web

from espnet2_sled.decode_report import EmptyOutputError
from espnet2_sled.fileio import limit_peak
from espnet2_sled.serve import openai_api
from espnet2_sled.serve.access import access_middleware
from espnet2_sled.serve.protocol import (
    AUDIO_ENCODING,
    INTERNAL_ERROR,
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    NORMAL,
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
    Limits,
    RequestError,
    StreamRequest,
    parse_synthesis_request,
    pcm16,
    wav_bytes,
)
from espnet2_sled.serve.scheduler import Scheduler
from espnet2_sled.serve.served_model import ServedModel
from espnet2_sled.serve.voices import Voices

STATIC = Path(__file__).resolve().parent / "static"
SCHEDULER = web.AppKey("scheduler", Scheduler)
INFO = web.AppKey("info", dict)


def model_info(model: ServedModel, limits: Limits) -> Dict[str, Any]:
    """What /info reports besides the live session count (fixed for the server's life)."""
    return {
        "model": model.name,
        "device": model.device,
        "sample_rate": model.sample_rate,
        "audio": {"encoding": AUDIO_ENCODING, "channels": 1, "sample_rate": model.sample_rate},
        "latent": dict(model.latent),
        "streaming": dict(model.streaming),
        "decode_defaults": dict(model.decode_defaults),
        "limits": {"max_sessions": limits.max_sessions, "idle_timeout": limits.idle_timeout,
                   "max_text_chars": limits.max_text_chars, "max_prompt_seconds": limits.max_prompt_seconds,
                   "max_frames": limits.max_frames, "max_message_bytes": limits.max_message_bytes},
    }


def build_app(model: ServedModel, limits: Limits, voices: Optional[Voices] = None, api_key: Optional[str] = None,
              allow_origins=(), loopback_only: bool = False) -> web.Application:
    """The app around one model; its worker thread starts when the app starts and stops at
    its cleanup. ``limits`` is copied (max_frames defaults to the model's positions)."""
    if limits.max_frames is None:
        limits = dataclasses.replace(limits, max_frames=model.max_frames)
    app = web.Application(client_max_size=limits.max_message_bytes,
                          middlewares=[access_middleware(api_key, allow_origins, loopback_only)])
    app[SCHEDULER] = Scheduler(model, limits)
    app[INFO] = model_info(model, limits)
    app.router.add_get("/", index)
    app.router.add_get("/info", info)
    app.router.add_get("/health", info)
    app.router.add_post("/synthesize", synthesize)
    app.router.add_get("/stream", stream)
    app.router.add_static("/static", STATIC)
    openai_api.add_routes(app, voices or Voices())

    async def start_worker(app):
        app[SCHEDULER].start()

    async def stop_worker(app):
        app[SCHEDULER].stop()

    app.on_startup.append(start_worker)
    app.on_cleanup.append(stop_worker)
    return app


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def info(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    body = dict(request.app[INFO], active_sessions=scheduler.active_sessions(),
                sessions_served=scheduler.sessions_served())
    return web.json_response(body)


async def synthesize(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    try:
        try:
            # bounded: a Content-Length larger than the body sent would hold the connection forever
            raw = await asyncio.wait_for(request.text(), scheduler.limits.idle_timeout)
        except asyncio.TimeoutError:
            raise RequestError("body_timeout", f"the request body did not arrive: fewer bytes than its "
                                               f"Content-Length {request.content_length} came within "
                                               f"{scheduler.limits.idle_timeout:g} s (--idle_timeout); send the "
                                               "whole body with a Content-Length that matches it",
                               POLICY_VIOLATION)
        except web.HTTPRequestEntityTooLarge:
            raise RequestError("request_too_large", f"request body is over {scheduler.limits.max_message_bytes} "
                                                    "bytes; shorten the text or the prompt", MESSAGE_TOO_BIG)
        text, options = await asyncio.to_thread(parse_synthesis_request, raw, scheduler.limits)
        request.app[openai_api.VOICES].resolve(options)
        job = scheduler.synthesize(text, options)  # RequestError 503 when --max_sessions are busy
        try:
            wav, compute_seconds = await asyncio.wrap_future(job)
        except EmptyOutputError as e:  # the model stopped at once: an error, never a header-only WAV
            raise RequestError("empty_output", str(e), INVALID_PAYLOAD)
        except (ValueError, TypeError) as e:
            raise RequestError("invalid_input", f"{type(e).__name__}: {e}", INVALID_PAYLOAD)
        except Exception as e:
            raise RequestError("synthesis_failed", f"{type(e).__name__}: {e}", INTERNAL_ERROR)
    except RequestError as e:
        response = web.json_response(e.event(), status=e.http_status)
        if e.error == "body_timeout":
            response.force_close()  # the rest of that body is never read
        return response
    # One gain for the whole utterance, as the CLI writes its WAVs (fileio.write_wav): never clipped.
    wav, gain = limit_peak(wav.detach().float().cpu().numpy())
    pcm = pcm16(wav)
    audio_seconds = len(pcm) / 2 / scheduler.sample_rate
    headers = {"X-Audio-Seconds": f"{audio_seconds:.4f}", "X-Compute-Seconds": f"{compute_seconds:.4f}",
               "X-Peak-Gain": f"{gain:.6g}"}
    if job.report is not None:  # frames per text token, short pieces and their warnings (ASCII JSON)
        headers["X-Decode-Report"] = json.dumps(job.report.as_dict(), separators=(",", ":"))
    return web.Response(body=wav_bytes(pcm, scheduler.sample_rate), content_type="audio/wav", headers=headers)


async def stream(request: web.Request) -> web.WebSocketResponse:
    scheduler = request.app[SCHEDULER]
    ws = web.WebSocketResponse(max_msg_size=scheduler.limits.max_message_bytes)
    await ws.prepare(request)
    loop, events = asyncio.get_running_loop(), asyncio.Queue()

    def emit(event, audio):  # called from the worker thread
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to tell
            loop.call_soon_threadsafe(events.put_nowait, (event, audio))

    try:
        handle = scheduler.open_stream(emit)
    except RequestError as e:
        await close_with(ws, e.event())
        return ws
    sender = receiver = None
    try:
        await ws.send_json({"event": "ready", "session": handle.id, **request.app[INFO]["audio"],
                            "frames_per_chunk": request.app[INFO]["streaming"]["frames_per_chunk"]})
        sender = asyncio.create_task(send_events(ws, events))
        receiver = asyncio.create_task(receive_messages(ws, handle, scheduler, request.app[openai_api.VOICES]))
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        final: Optional[Dict[str, Any]] = None
        if sender in done:
            final = sender.result()  # the done / error event (already sent)
        elif receiver.exception() is not None:
            error = receiver.exception()
            if not isinstance(error, RequestError):
                raise error
            final = error.event()
            await stop(sender)  # no audio frame after the error
            await ws.send_json(final)
        # else: the client closed the connection
        await stop(receiver)
        if final is not None and not ws.closed:
            await ws.close(code=final.get("code", NORMAL), message=final.get("error", "done").encode()[:120])
    except (ConnectionError, RuntimeError):
        pass  # the client vanished mid-send
    finally:
        for task in (sender, receiver):
            if task is not None:
                task.cancel()
        scheduler.close(handle)  # frees the session and its KV cache at once
    return ws


async def stop(task: asyncio.Task) -> None:
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def close_with(ws: web.WebSocketResponse, event: Dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_json(event)
        await ws.close(code=event["code"], message=event["error"].encode()[:120])


async def send_events(ws: web.WebSocketResponse, events: asyncio.Queue) -> Dict[str, Any]:
    """Worker events -> the client, in order; returns the final (done / error) event."""
    while True:
        event, audio = await events.get()
        await ws.send_str(json.dumps(event))
        if audio is not None:
            await ws.send_bytes(audio)
        if event["event"] in ("done", "error"):
            return event


async def receive_messages(ws: web.WebSocketResponse, handle, scheduler: Scheduler, voices: Voices) -> None:
    """Client messages -> the worker; raises ``RequestError`` on bad input; returns when the client closes."""
    request = StreamRequest(scheduler.limits)
    while True:
        timeout = None if request.ended else scheduler.limits.idle_timeout
        started = time.perf_counter()
        try:
            msg = await ws.receive(timeout=timeout)
        except asyncio.TimeoutError:
            raise RequestError("idle_timeout", f"no message for {time.perf_counter() - started:.1f} s before "
                                               "{\"end\": true} (--idle_timeout "
                                               f"{scheduler.limits.idle_timeout:g}); send text or the end marker",
                               POLICY_VIOLATION)
        if msg.type == WSMsgType.TEXT:
            first = request.first
            message = await asyncio.to_thread(request.parse, msg.data) if first else request.parse(msg.data)
            voices.resolve(message.options)  # a named voice -> its prompt (RequestError if unknown)
            scheduler.send(handle, message)
        elif msg.type == WSMsgType.BINARY:
            raise RequestError("binary_frame", f"got a binary frame ({len(msg.data)} bytes); the client sends "
                                               "JSON text frames only, e.g. {\"text\": \"Hello \"}", UNSUPPORTED_DATA)
        else:  # CLOSE / CLOSING / CLOSED / ERROR (e.g. over max_msg_size, which aiohttp closes itself)
            return
