"""The Wyoming protocol (Home Assistant) on the real server process, with the ``wyoming`` package's client."""

import asyncio
from typing import List

import pytest
from served import TIMEOUT, run, sine_prompt
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped, SynthesizeVoice

from espnet2_sled.decode_report import EmptyOutputError
from espnet2_sled.serve.protocol import pcm16

TEXT = "the cat sat on the mat."


async def exchange(port: int, events, until: str) -> List:
    """Send ``events``, read every event until one of type ``until`` (or an error) arrives."""
    received = []
    async with AsyncTcpClient("127.0.0.1", port, connect_timeout=TIMEOUT, read_timeout=TIMEOUT) as client:
        for event in events:
            await client.write_event(event.event())
        for _ in range(10000):
            event = await asyncio.wait_for(client.read_event(), TIMEOUT)
            assert event is not None, f"connection closed after {[e.type for e in received]}"
            received.append(event)
            if event.type in (until, "error"):
                break
    return received


def audio_of(events) -> bytes:
    types = [e.type for e in events]
    assert types[0] == "audio-start" and "audio-stop" in types, types
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (24000, 2, 1)
    return b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))


def in_process(synthesizer, pieces, voice=None, **options) -> bytes:
    kwargs = {}
    if voice is not None:
        audio, sample_rate, transcript = voice
        kwargs = dict(voice_prompt=audio, prompt_sample_rate=sample_rate, prompt_text=transcript)
    session = synthesizer.stream(**kwargs, **options)
    chunks = [c for piece in pieces for c in session.push_text(piece)] + list(session.end_text())
    session.close()
    return b"".join(pcm16(c.audio) for c in chunks)


def test_info_lists_the_voices(protocol_server):
    info = Info.from_event(run(exchange(protocol_server.wyoming_port, [Describe()], "info"))[-1])
    (program,) = info.tts
    assert program.supports_synthesize_streaming
    assert [v.name for v in program.voices] == ["hum", "default"]


def test_synthesize_equals_the_in_process_api(protocol_server, synthesizer):
    """The whole text in one ``synthesize`` (Wyoming has no seed: the server's --default_seed 0)."""
    events = run(exchange(protocol_server.wyoming_port, [Synthesize(text=TEXT)], "audio-stop"))
    expected = in_process(synthesizer, [TEXT], seed=0)
    assert len(expected) > 0 and audio_of(events) == expected


def test_synthesize_with_a_named_voice_uses_its_prompt(protocol_server, synthesizer):
    """Voice 'hum': the one-step model stops at once after that prompt, in process and served
    alike, and the served answer says so (an ``empty_output`` error naming the fixes), never
    an empty success."""
    hum, sample_rate, _ = sine_prompt()
    with pytest.raises(EmptyOutputError):
        in_process(synthesizer, [TEXT], voice=(hum[None], sample_rate, "a low hum."), seed=0)
    voice = SynthesizeVoice(name="hum")
    events = run(exchange(protocol_server.wyoming_port, [Synthesize(text=TEXT, voice=voice)], "audio-stop"))
    error = Error.from_event(events[-1])
    assert error.code == "empty_output" and "another voice prompt" in error.text, error


def test_streaming_events_equal_the_in_process_api(protocol_server, synthesizer):
    pieces = ["the cat ", "sat on ", "the mat."]
    events = [SynthesizeStart(voice=SynthesizeVoice(name="default"))]
    events += [SynthesizeChunk(text=p) for p in pieces]
    events += [Synthesize(text="".join(pieces)), SynthesizeStop()]  # the whole-text copy is ignored
    received = run(exchange(protocol_server.wyoming_port, events, "synthesize-stopped"))
    assert received[-1].type == SynthesizeStopped().event().type
    assert received[-2].type == AudioStop().event().type
    assert audio_of(received[:-1]) == in_process(synthesizer, pieces, seed=0)


def test_unknown_voice_is_an_error_event_naming_the_voices(protocol_server):
    events = run(exchange(protocol_server.wyoming_port, [Synthesize(text=TEXT, voice=SynthesizeVoice(name="x"))],
                          "audio-stop"))
    error = Error.from_event(events[-1])
    assert error.code == "unknown_voice" and "hum" in error.text
