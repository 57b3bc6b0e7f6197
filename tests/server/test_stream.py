"""The real server process: streamed audio = the in-process API, HTTP WAV = offline decoding,
concurrent streams do not wait for each other, disconnects and the session limit."""

import asyncio
import io

import aiohttp
import numpy as np
import soundfile as sf
from served import (
    MAX_SESSIONS,
    Received,
    get_json,
    pieces_of,
    post,
    reference_stream,
    run,
    sine_prompt,
    stream,
    wait_idle,
)

from espnet2_sled.fileio import limit_peak
from espnet2_sled.serve.protocol import NORMAL, TRY_AGAIN_LATER, pcm16

TEXT = "the cat sat on the mat."
# stop_threshold > 1: the stop head never fires, so every run makes exactly max_frames frames
NEVER_STOP = dict(stop_threshold=1.5)


def test_info_reports_model_audio_format_and_limits(server, synthesizer):
    info = get_json(server, "/info")
    assert info["sample_rate"] == synthesizer.fs == 24000
    assert info["audio"] == {"encoding": "pcm_s16le", "channels": 1, "sample_rate": 24000}
    assert info["latent"] == {"name": "mel", "latent_dim": 8, "hop_length": 640, "frame_rate": 37.5}
    assert info["streaming"]["layout"] == "packed" and info["streaming"]["frames_per_chunk"] == 4
    assert info["limits"]["max_sessions"] == MAX_SESSIONS and info["active_sessions"] == 0


def test_stream_equals_in_process_stream(server, synthesizer):
    options = dict(seed=3, max_frames=22, **NEVER_STOP)
    got = run(stream(server, pieces_of(TEXT, options)))
    expected, chunks = reference_stream(synthesizer, TEXT, **options)
    assert got.close_code == NORMAL
    assert len(expected) == 22 * 640 * 2 and got.pcm == expected
    assert [e["index"] for e in got.events if e["event"] == "chunk"] == list(range(chunks)) == list(range(6))
    done = got.last("done")
    assert done["chunks"] == chunks and done["samples"] == 22 * 640
    assert 0 < done["first_audio_seconds"] <= done["elapsed_seconds"] and done["rtf"] > 0
    assert got.events[0]["event"] == "ready" and got.events[0]["sample_rate"] == 24000


def test_stream_with_voice_prompt_equals_in_process_stream(server, synthesizer):
    audio, sample_rate, encoded = sine_prompt()
    options = dict(seed=5, max_frames=9, **NEVER_STOP)
    got = run(stream(server, pieces_of(TEXT, dict(options, prompt_audio=encoded, prompt_text="a low hum."))))
    expected, _ = reference_stream(synthesizer, TEXT, prompt=(audio, sample_rate, "a low hum."), **options)
    assert len(expected) == 9 * 640 * 2 and got.pcm == expected
    # the prompt changes the audio: not the same as without it
    plain, _ = reference_stream(synthesizer, TEXT, **options)
    assert plain != expected


def test_http_wav_equals_offline_decoding(server, synthesizer):
    options = dict(seed=11, max_frames=15, cfg_scale=1.5, **NEVER_STOP)
    status, content_type, body = post(server, dict(text=TEXT, **options))
    assert status == 200 and content_type == "audio/wav"
    wav, fs = sf.read(io.BytesIO(body), dtype="int16")
    offline = synthesizer(TEXT, **options)["wav"]
    assert fs == 24000 and wav.shape == (15 * 640,)
    scaled, _ = limit_peak(offline.numpy())  # one gain, as the CLI writes WAVs (issue #21)
    assert wav.tobytes() == pcm16(scaled) and np.abs(scaled).max() <= 0.99 * (1 + 1e-6)
    assert np.abs(wav).max() > 0


def test_two_concurrent_streams_each_equal_solo_and_do_not_wait_for_each_other(server, synthesizer):
    long_options = dict(seed=1, max_frames=60, **NEVER_STOP)  # 15 chunks
    short_options = dict(seed=2, max_frames=12, **NEVER_STOP)  # 3 chunks

    async def both():
        async with aiohttp.ClientSession() as session:
            long_received = Received()
            long_run = asyncio.ensure_future(stream(server, pieces_of(TEXT, long_options), session,
                                                    received=long_received))
            for _ in range(3000):  # the short stream starts once the long one is producing audio
                if long_run.done() or long_received.audio:
                    break
                await asyncio.sleep(0.01)
            short = await stream(server, pieces_of("hello world, how are you?", short_options), session)
            return await long_run, short

    long_got, short_got = run(both())
    assert long_got.pcm == reference_stream(synthesizer, TEXT, **long_options)[0]
    assert short_got.pcm == reference_stream(synthesizer, "hello world, how are you?", **short_options)[0]
    # round-robin: the short stream finished while the long one was still sending audio
    assert short_got.arrival[-1] < long_got.arrival[-1]
    later = [t for t in long_got.arrival if t > short_got.arrival[-1]]
    assert len(later) >= 5, f"only {len(later)} of the long stream's 15 chunks came after the short stream"
    wait_idle(server)


def test_disconnect_mid_stream_frees_the_session(server):
    wait_idle(server)
    served_before = get_json(server, "/info")["sessions_served"]
    got = run(stream(server, pieces_of(TEXT, dict(seed=0, max_frames=400, **NEVER_STOP)), disconnect_after_chunks=2))
    assert len(got.audio) == 2
    wait_idle(server, timeout=5.0)  # 400 frames would take far longer to finish
    info = get_json(server, "/info")
    assert info["active_sessions"] == 0 and info["sessions_served"] == served_before  # cut, not finished


def test_over_max_sessions_is_refused_then_served_again(server):
    wait_idle(server)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            held = []
            for _ in range(MAX_SESSIONS):  # open sessions that wait for more text
                ws = await session.ws_connect(server + "/stream")
                await ws.send_json({"text": "the cat ", "seed": 0})
                assert (await ws.receive_json(timeout=30))["event"] == "ready"
                held.append(ws)
            refused = await stream(server, pieces_of(TEXT, {}), session)
            status, _, body = await asyncio.to_thread(post, server, {"text": TEXT})
            for ws in held:
                await ws.close()
            return refused, status, body

    refused, status, body = run(scenario())
    assert refused.close_code == TRY_AGAIN_LATER and not refused.audio
    error = refused.last("error")
    assert error["error"] == "server_full" and "--max_sessions" in error["message"]
    assert status == 503 and b"server_full" in body
    wait_idle(server)
    again = run(stream(server, pieces_of(TEXT, dict(seed=0, max_frames=4, **NEVER_STOP))))
    assert again.close_code == NORMAL and len(again.pcm) == 4 * 640 * 2


def test_stream_that_reaches_max_frames_before_the_end_marker_is_done(server, synthesizer):
    """max_frames reached while text is still open: done (stopped_early), no end marker needed."""
    options = dict(seed=4, max_frames=6, **NEVER_STOP)
    got = run(stream(server, pieces_of(TEXT, options)[:-1]))  # never sends {"end": true}
    session = synthesizer.stream(**options)
    chunks = [c for message in pieces_of(TEXT, {})[:-1] for c in session.push_text(message["text"])]
    assert session.stopped_early and got.close_code == NORMAL
    assert got.last("done")["stopped_early"] is True
    assert got.pcm == b"".join(pcm16(c.audio) for c in chunks) and len(got.pcm) == 6 * 640 * 2
