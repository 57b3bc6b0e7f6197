"""One model, many clients: a worker thread that advances the ready sessions round-robin.

Every session is a ``StreamingSession`` from ``SLEDText2Speech.stream()`` (through the
server's interface to it, ``served_model.py``) -- the same decode loop as in-process streaming, so a
served stream equals ``stream()`` sample for sample. The worker owns the model: all model
work (prompt encoding, decode steps, latent decoding) runs on its thread, never on the event
loop, which only parses messages and moves bytes. The worker starts at ``start()`` (or on
entering ``with Scheduler(...)``), not at construction; the app starts it when it starts.
Each turn the worker

1. runs the commands the event loop queued (open a session, push text, end text, close,
   a whole-text ``/synthesize`` job), so a client that disconnects is freed (KV cache
   dropped, slot returned) before the next decode step;
2. steps the next ready session -- one with text to read or frames to write -- by one
   ``next()`` of the iterator its last ``push_text`` / ``end_text`` returned, which makes
   exactly one audio chunk (``frames_per_chunk`` frames), and hands it to that client.

Why round-robin stepping and not one batch through the decode step: sessions are at
different positions and in different phases (reading tokens / writing frames / waiting for
text), so batching them needs per-row positions and a second, batched copy of the
streaming schedule -- a second decode loop to keep equal to the first. Round-robin keeps
one implementation, bounds every session's wait to one chunk of each other ready session
(N sessions each get audio at >= 1/N of the solo rate; the web page and bench show the RTF
that results), and costs nothing when one client is alone. Admission is bounded:
``--max_sessions`` slots (streams and ``/synthesize`` requests together); past that a
client is refused at once, never queued.

A ``/synthesize`` job is whole-utterance offline decoding (``SLEDText2Speech.__call__``,
so its WAV equals offline decoding); it runs as one command and the streams wait for it.
Interactive clients should use the stream.
"""

import collections
import itertools
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, Iterator, Optional

from espnet2_sled.decode_report import EmptyOutputError
from espnet2_sled.serve.protocol import (
    INTERNAL_ERROR,
    INVALID_PAYLOAD,
    TRY_AGAIN_LATER,
    Limits,
    Message,
    RequestError,
    SynthesisOptions,
    pcm16,
)
from espnet2_sled.serve.served_model import ServedModel

log = logging.getLogger(__name__)
Emit = Callable[[Dict[str, Any], Optional[bytes]], None]  # (JSON event, binary audio or None), thread-safe


class Stream:
    """One client's streaming session, as the worker sees it. Every field is the worker's
    (read and written on its thread only) except ``closed``, which the event loop sets:
    it is read and written under the scheduler's lock."""

    def __init__(self, stream_id: int, emit: Emit):
        self.id, self.emit = stream_id, emit
        self.session = None  # StreamingSession, made on the worker by the first message
        self.work: Optional[Iterator] = None  # what the session's last push_text / end_text returned
        self.text_ended = False  # end_text() was called: the next StopIteration means finished
        self.closed = False  # the client is gone (under Scheduler.cond)
        self.released = False  # slot returned
        self.started: Optional[float] = None  # perf_counter when the first message arrived
        self.chunks = self.samples = 0
        self.compute_seconds = 0.0
        self.first_audio_seconds: Optional[float] = None


class Scheduler:
    def __init__(self, model: ServedModel, limits: Limits):
        self.model, self.limits = model, limits
        self.sample_rate = model.sample_rate
        self.cond = threading.Condition()
        self.commands: "collections.deque[Callable[[], None]]" = collections.deque()
        self.turns: "collections.deque[Stream]" = collections.deque()  # worker-owned: live sessions
        self.active = 0  # slots held (streams + /synthesize jobs), under cond
        self.served = 0  # sessions and jobs finished, under cond
        self.ids = itertools.count(1)
        self.stopping = False
        self.thread: Optional[threading.Thread] = None

    def start(self) -> "Scheduler":
        """Start the model worker (once)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="sled-model-worker", daemon=True)
            self.thread.start()
        return self

    def __enter__(self) -> "Scheduler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ event-loop side
    def reserve(self) -> None:
        with self.cond:
            if self.active >= self.limits.max_sessions:
                raise RequestError("server_full", f"{self.active} sessions are active, the limit is "
                                                  f"{self.limits.max_sessions} (--max_sessions); retry later",
                                   TRY_AGAIN_LATER)
            self.active += 1

    def active_sessions(self) -> int:
        with self.cond:
            return self.active

    def sessions_served(self) -> int:
        with self.cond:
            return self.served

    def open_stream(self, emit: Emit) -> Stream:
        """Reserve a slot for a new stream (raises ``RequestError`` 1013 when full)."""
        self.reserve()
        return Stream(next(self.ids), emit)

    def send(self, stream: Stream, message: Message) -> None:
        """A checked client message: the first one starts the session (on the worker)."""
        arrived = time.perf_counter()
        self._submit(lambda: self._receive(stream, message, arrived))

    def close(self, stream: Stream) -> None:
        """The client is gone or the stream ended: free the session and its slot (idempotent)."""
        with self.cond:
            stream.closed = True  # a start or feed still queued before the free is skipped
        self._submit(lambda: self._free(stream))

    def synthesize(self, text: str, options: SynthesisOptions) -> Future:
        """Whole-text offline decoding on the worker; the future holds (wav ``[S]``, compute s),
        and once done its ``report`` attribute the decode's ``DecodeReport`` (decode_report.py)."""
        self.reserve()
        future: Future = Future()
        future.report = None

        def job():
            try:
                start = time.perf_counter()
                out = self.model.synthesize(text, options)
                future.report = out.get("report")
                future.set_result((out["wav"], time.perf_counter() - start))
            except BaseException as e:
                future.set_exception(e)
            finally:
                self._release(served=True)

        self._submit(job)
        return future

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _submit(self, command: Callable[[], None]) -> None:
        with self.cond:
            self.commands.append(command)
            self.cond.notify()

    def _release(self, served: bool = False) -> None:
        with self.cond:
            self.active -= 1
            self.served += int(served)

    def _closed(self, stream: Stream) -> bool:
        with self.cond:
            return stream.closed

    # ------------------------------------------------------------ worker side
    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.stopping and not self.commands and not any(s.work for s in self.turns):
                    self.cond.wait()
                if self.stopping:
                    return
                commands = list(self.commands)
                self.commands.clear()
            try:
                for command in commands:
                    command()
                stream = self._next_ready()
                if stream is not None:
                    self._step(stream)
            except Exception:  # a bug here must not stop the worker (and with it every session)
                log.exception("model worker")

    def _next_ready(self) -> Optional[Stream]:
        for _ in range(len(self.turns)):
            stream = self.turns[0]
            self.turns.rotate(-1)  # whoever is stepped goes to the back of the line
            if stream.work is not None:
                return stream
        return None

    def _receive(self, stream: Stream, message: Message, arrived: float) -> None:
        if stream.started is None:
            stream.started = arrived
            self._start(stream, message)
        else:
            self._feed(stream, message)

    def _start(self, stream: Stream, message: Message) -> None:
        if self._closed(stream):
            return
        try:
            stream.session = self.model.stream(message.options)
        except Exception as e:
            self._fail(stream, e)
            return
        self.turns.append(stream)
        self._feed(stream, message)

    def _feed(self, stream: Stream, message: Message) -> None:
        if stream.session is None or self._closed(stream):
            return
        try:
            if message.text:
                stream.work = stream.session.push_text(message.text)
            if message.end:
                stream.work = stream.session.end_text()
                stream.text_ended = True
        except Exception as e:
            self._fail(stream, e)

    def _step(self, stream: Stream) -> None:
        try:
            chunk = next(stream.work)
        except StopIteration:
            stream.work = None  # waiting for text, or finished (all text read, or the stop head fired early)
            if stream.text_ended or stream.session.stopped_early:
                if not stream.text_ended and hasattr(stream.session, "finish_early"):
                    try:  # its report, as at the end of the text: no frames at all is an error
                        stream.session.finish_early()
                    except Exception as e:
                        self._fail(stream, e)
                        return
                self._finish(stream)
            return
        except Exception as e:
            self._fail(stream, e)
            return
        audio = pcm16(chunk.audio)
        samples = len(audio) // 2
        stream.chunks += 1
        stream.samples += samples
        stream.compute_seconds += chunk.compute_seconds
        elapsed = time.perf_counter() - stream.started
        if stream.first_audio_seconds is None:
            stream.first_audio_seconds = elapsed
        stream.emit({"event": "chunk", "index": chunk.index, "samples": samples, "frames": int(chunk.frames.shape[0]),
                     "compute_seconds": chunk.compute_seconds, "elapsed_seconds": elapsed,
                     "first_audio_seconds": stream.first_audio_seconds}, audio)

    def _finish(self, stream: Stream) -> None:
        audio_seconds = stream.samples / self.sample_rate
        event = {
            "event": "done", "chunks": stream.chunks, "samples": stream.samples, "audio_seconds": audio_seconds,
            "compute_seconds": stream.compute_seconds,
            "rtf": stream.compute_seconds / audio_seconds if audio_seconds else None,
            "first_audio_seconds": stream.first_audio_seconds,
            "elapsed_seconds": time.perf_counter() - stream.started,
            "stopped_early": bool(stream.session.stopped_early),
        }
        report = getattr(stream.session, "report", None)
        if report is not None:  # frames per text token, short pieces and their warnings (decode_report.py)
            event["report"] = report.as_dict()
        self._free(stream, served=True)
        stream.emit(event, None)

    def _fail(self, stream: Stream, error: Exception) -> None:
        # ValueError / TypeError: the API rejected this input; anything else: the model failed
        code, kind = (INVALID_PAYLOAD, "invalid_input") if isinstance(error, (ValueError, TypeError)) \
            else (INTERNAL_ERROR, "synthesis_failed")
        if isinstance(error, EmptyOutputError):
            kind = "empty_output"  # the model stopped at once: no audio (decode_report.py)
        self._free(stream)
        stream.emit(RequestError(kind, f"{type(error).__name__}: {error}", code).event(), None)

    def _free(self, stream: Stream, served: bool = False) -> None:
        if stream in self.turns:
            self.turns.remove(stream)
        if stream.session is not None:
            stream.session.close()  # drops the KV cache and the audio decoder's state
        stream.session, stream.work = None, None
        if not stream.released:
            stream.released = True
            self._release(served)
