"""The Wyoming protocol (Home Assistant's local voice services), on a TCP port beside the HTTP one.

``python -m espnet2_sled.bin.serve --model_file M --wyoming_port 10200`` (``--host`` is shared
with HTTP). Events, as the ``wyoming`` package defines them:

    describe                        -> info (one TTS program, the voices of /v1/audio/voices)
    synthesize {text, voice}        -> audio-start, audio-chunk ..., audio-stop
    synthesize-start {voice}        -> (nothing yet)
    synthesize-chunk {text} ...     -> audio-start once, then audio-chunk as audio is made
    synthesize-stop                 -> the rest, audio-stop, synthesize-stopped

Audio is 16-bit mono PCM at the model's rate, decoded by the server's one decode path
(``LoopStream``), so it equals ``SLEDText2Speech.stream()`` fed the same text pieces. A
client that streams also sends a whole-text ``synthesize`` for older servers; it is ignored
while a streamed synthesis is open, as the protocol asks. Problems come back as Wyoming
``error`` events naming the input and the fix; the connection stays usable.
"""

import asyncio
import contextlib
import logging
from typing import List, Optional

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from espnet2_sled.serve.protocol import RequestError
from espnet2_sled.serve.scheduler import Scheduler
from espnet2_sled.serve.session import LoopStream
from espnet2_sled.serve.voices import DEFAULT_VOICE, Voices

log = logging.getLogger(__name__)
ATTRIBUTION = Attribution(name="espnet2_sled", url="https://github.com/espnet/espnet")


def wyoming_info(voices: Voices, model_name: str, languages: List[str]) -> Info:
    """The ``info`` answer: one TTS program whose voices are the server's named voices."""
    tts_voices = [TtsVoice(name=name, attribution=ATTRIBUTION, installed=True, version=None, languages=languages,
                           description=f"{model_name}: " + ("the model's own voice" if name == DEFAULT_VOICE
                                                             else f"voice prompt '{name}'"))
                  for name in sorted(voices.prompted) + [DEFAULT_VOICE]]
    program = TtsProgram(name="sled", attribution=ATTRIBUTION, installed=True, version=None, voices=tts_voices,
                         description=f"SLED text to speech ({model_name})", supports_synthesize_streaming=True)
    return Info(tts=[program])


class SLEDHandler(AsyncEventHandler):
    """One Wyoming connection."""

    def __init__(self, reader, writer, scheduler: Scheduler, voices: Voices, info: Info):
        super().__init__(reader, writer)
        self.scheduler, self.voices, self.info = scheduler, voices, info
        self.sample_rate = scheduler.sample_rate
        self.streamed: Optional[LoopStream] = None  # open between synthesize-start and -stop
        self.sender: Optional[asyncio.Task] = None

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event(self.info.event())
            elif Synthesize.is_type(event.type):
                if self.streamed is None:  # else: the whole-text copy of a streamed synthesis
                    await self._synthesize(Synthesize.from_event(event))
            elif SynthesizeStart.is_type(event.type):
                await self._close_streamed()
                self.streamed = self._open(SynthesizeStart.from_event(event).voice)
                self.streamed.send("")  # starts the session (voice, prompt) before the text arrives
                self.sender = asyncio.create_task(self._send_audio(self.streamed))
            elif SynthesizeChunk.is_type(event.type):
                if self.streamed is None:
                    raise RequestError("no_synthesis", "synthesize-chunk before synthesize-start; send "
                                                       "synthesize-start first")
                self.streamed.send(SynthesizeChunk.from_event(event).text)
            elif SynthesizeStop.is_type(event.type):
                if self.streamed is None:
                    raise RequestError("no_synthesis", "synthesize-stop without synthesize-start")
                self.streamed.send("", end=True)
                await self.sender  # writes the audio and audio-stop, and any error
                await self._close_streamed()
                await self.write_event(SynthesizeStopped().event())
        except RequestError as e:
            await self._close_streamed()
            await self.write_event(Error(text=e.message, code=e.error).event())
        return True

    def _open(self, voice) -> LoopStream:
        name = voice.name if voice is not None and voice.name else DEFAULT_VOICE
        try:
            options = self.voices.options(name)  # Wyoming has no seed: --default_seed, else random
        except KeyError as e:
            raise RequestError("unknown_voice", e.args[0])
        return LoopStream(self.scheduler, options)

    async def _synthesize(self, request: Synthesize) -> None:
        with self._open(request.voice) as session:
            session.send(request.text, end=True)
            await self._send_audio(session, raise_errors=True)

    async def _send_audio(self, session: LoopStream, raise_errors: bool = False) -> None:
        started = False
        try:
            async for pcm in session.audio():
                if not started:
                    await self.write_event(AudioStart(rate=self.sample_rate, width=2, channels=1).event())
                    started = True
                await self.write_event(AudioChunk(rate=self.sample_rate, width=2, channels=1, audio=pcm).event())
        except RequestError as e:
            if raise_errors:
                raise
            await self.write_event(Error(text=e.message, code=e.error).event())
        if not started:
            await self.write_event(AudioStart(rate=self.sample_rate, width=2, channels=1).event())
        await self.write_event(AudioStop().event())

    async def _close_streamed(self) -> None:
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self.sender
        if self.streamed is not None:
            self.streamed.close()
        self.streamed = self.sender = None

    async def disconnect(self) -> None:
        await self._close_streamed()  # frees the session and its slot at once


async def start_wyoming(scheduler: Scheduler, voices: Voices, model_name: str, host: str, port: int,
                        languages: List[str]) -> asyncio.AbstractServer:
    """Listen on ``host:port`` (0: any free port); returns the asyncio server (``.sockets`` has the port)."""
    info = wyoming_info(voices, model_name, languages)

    async def on_connect(reader, writer):
        await SLEDHandler(reader, writer, scheduler, voices, info).run()

    return await asyncio.start_server(on_connect, host=host, port=port)
