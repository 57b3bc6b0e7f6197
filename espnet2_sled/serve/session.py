"""A scheduler stream seen from the event loop, for the routes that are not the WebSocket.

OpenAI's ``/v1/audio/speech`` and the Wyoming server decode through the same sessions as
``/stream`` (``Scheduler.open_stream`` -> ``SLEDText2Speech.stream()``), so their audio equals
the WebSocket's and the in-process API's for the same text pieces and seed. This class only
moves messages in and (event, PCM) pairs out across the worker thread.
"""

import asyncio
import contextlib
from typing import Any, AsyncIterator, Dict, Optional

from espnet2_sled.serve.protocol import MESSAGE_TOO_BIG, Message, RequestError, SynthesisOptions
from espnet2_sled.serve.scheduler import Scheduler


class LoopStream:
    """One streaming session: ``send`` text pieces, iterate ``audio()``, ``close``.

    Opening reserves a ``--max_sessions`` slot (``RequestError`` 1013 / HTTP 503 when full);
    ``close`` frees it and the session's KV cache at once (use it as a context manager).
    """

    def __init__(self, scheduler: Scheduler, options: SynthesisOptions):
        self.scheduler, self.options = scheduler, options
        self.loop, self.events = asyncio.get_running_loop(), asyncio.Queue()
        self.handle = scheduler.open_stream(self._emit)
        self.started = self.ended = self.has_text = False
        self.chars = 0
        self.done: Optional[Dict[str, Any]] = None  # the server's ``done`` event, once finished

    def _emit(self, event: Dict[str, Any], audio: Optional[bytes]) -> None:  # on the worker thread
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to tell
            self.loop.call_soon_threadsafe(self.events.put_nowait, (event, audio))

    def send(self, text: str, end: bool = False) -> None:
        """A text piece (and/or the end of the text); the first call starts the session."""
        self.chars += len(text)
        if self.chars > self.scheduler.limits.max_text_chars:
            raise RequestError("text_too_long", f"text is {self.chars}+ characters; at most "
                                                f"{self.scheduler.limits.max_text_chars} (--max_text_chars)",
                               MESSAGE_TOO_BIG)
        self.has_text = self.has_text or bool(text.strip())
        if end and not self.has_text:
            raise RequestError("empty_text", "text is empty; give the words to speak")
        self.scheduler.send(self.handle, Message(text, end, None if self.started else self.options))
        self.started, self.ended = True, end

    async def audio(self) -> AsyncIterator[bytes]:
        """16-bit PCM chunks at the model's rate until the session is done; raises
        ``RequestError`` when the session failed (bad input or a model error)."""
        while True:
            event, pcm = await self.events.get()
            if event["event"] == "error":
                raise RequestError(event["error"], event["message"], event["code"])
            if event["event"] == "done":
                self.done = event
                return
            yield pcm

    def close(self) -> None:
        self.scheduler.close(self.handle)

    def __enter__(self) -> "LoopStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
