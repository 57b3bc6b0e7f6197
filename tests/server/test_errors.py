"""Bad input gets a close code / HTTP 4xx and a JSON message naming the problem, while another
client, streaming at the same time, still gets all its audio."""

import asyncio
import base64
import json

import aiohttp
import pytest
from served import IDLE_TIMEOUT, MAX_TEXT_CHARS, pieces_of, post, run, sine_prompt, stream, wait_idle

from espnet2_sled.serve.protocol import (
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    NORMAL,
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
)

NOT_AUDIO = base64.b64encode(b"RIFF? no, just some text pretending to be a file").decode()
PROMPT = sine_prompt()[2]
LONG = dict(stop_threshold=1.5, max_frames=200)  # keeps generating while the client misbehaves

# name: (messages, close code, error id, a word the message must contain)
WS_CASES = {
    "invalid_json": (["{\"text\": oops}"], INVALID_PAYLOAD, "invalid_json", "JSON"),
    "json_not_an_object": (["[\"the cat\"]"], INVALID_PAYLOAD, "invalid_json", "object"),
    "unknown_option": ([{"text": "the ", "temperature": 0.7}], INVALID_PAYLOAD, "unknown_option", "temperature"),
    "bad_option_value": ([{"text": "the ", "cfg_scale": "high"}], INVALID_PAYLOAD, "invalid_option", "cfg_scale"),
    "option_after_first_message": ([{"text": "the "}, {"text": "cat ", "seed": 1}], INVALID_PAYLOAD,
                                   "option_after_first_message", "seed"),
    "empty_text": ([{"text": "   "}, {"end": True}], INVALID_PAYLOAD, "empty_text", "empty"),
    "text_too_long": ([{"text": "the cat "}, {"text": "a" * MAX_TEXT_CHARS}], MESSAGE_TOO_BIG, "text_too_long",
                      "--max_text_chars"),
    "prompt_not_audio": ([{"text": "the ", "prompt_audio": NOT_AUDIO, "prompt_text": "hi."}], INVALID_PAYLOAD,
                         "prompt_not_audio", "prompt_audio"),
    "prompt_without_transcript": ([{"text": "the ", "prompt_audio": PROMPT}], INVALID_PAYLOAD,
                                  "invalid_option", "prompt_text"),
    "text_after_end": ([{"text": "the cat ", **LONG}, {"end": True}, {"text": "more "}], POLICY_VIOLATION,
                       "text_after_end", "end"),
    "binary_frame": ([b"\x00\x01\x02"], UNSUPPORTED_DATA, "binary_frame", "binary"),
    "never_ends": ([{"text": "the cat sat ", "stop_threshold": 1.5}], POLICY_VIOLATION, "idle_timeout",
                   "--idle_timeout"),
}


@pytest.mark.parametrize("case", list(WS_CASES))
def test_bad_stream_input_is_answered_and_others_keep_streaming(server, case):
    messages, code, error, word = WS_CASES[case]
    wait_idle(server)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            good = asyncio.ensure_future(stream(server, pieces_of("hello world.", dict(seed=0, max_frames=12,
                                                                                        stop_threshold=1.5)), session))
            bad = await stream(server, messages, session)
            return bad, await good

    bad, good = run(scenario())
    assert bad.close_code == code
    event = bad.last("error")
    assert event["error"] == error and event["code"] == code and word in event["message"], event
    if case == "never_ends":
        assert bad.events[-1]["event"] == "error"
        assert float(event["message"].split("no message for ")[1].split(" s")[0]) >= IDLE_TIMEOUT - 0.1
    assert good.close_code == NORMAL and len(good.pcm) == 12 * 640 * 2
    wait_idle(server)


def test_prompt_that_is_not_audio_names_the_format(server):
    got = run(stream(server, [{"text": "the ", "prompt_audio": "%%%", "prompt_text": "hi."}]))
    assert got.close_code == INVALID_PAYLOAD and "base64" in got.last("error")["message"]


HTTP_CASES = {
    "invalid_json": ("{text: 1", 400, "invalid_json"),
    "unknown_option": ({"text": "the cat.", "speaker": "x"}, 400, "unknown_option"),
    "unknown_voice": ({"text": "the cat.", "voice": "x"}, 400, "unknown_voice"),
    "bad_option_value": ({"text": "the cat.", "seed": -1}, 400, "invalid_option"),
    "empty_text": ({"text": " "}, 400, "empty_text"),
    "missing_text": ({"seed": 1}, 400, "empty_text"),
    "text_too_long": ({"text": "a" * (MAX_TEXT_CHARS + 1)}, 413, "text_too_long"),
    "prompt_not_audio": ({"text": "the cat.", "prompt_audio": NOT_AUDIO, "prompt_text": "hi."}, 400,
                         "prompt_not_audio"),
}


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_bad_http_input_is_4xx_with_json(server, case):
    body, status, error = HTTP_CASES[case]
    got_status, content_type, payload = post(server, body)
    assert got_status == status and content_type.startswith("application/json")
    event = json.loads(payload)
    assert event["error"] == error and event["message"]
