"""What clients send and get back: messages, options, errors with close codes, 16-bit PCM.

WebSocket ``/stream``::

    client -> {"text": "Hello ", "seed": 0, "cfg_scale": 2.0}      first message: text + options
    client -> {"text": "world."}                                   any number of text pieces
    client -> {"end": true}                                        no more text
    server -> {"event": "ready", "sample_rate": 24000, ...}        once, on connect
    server -> {"event": "chunk", "index": 0, "samples": 1280, ...} then one binary frame:
    server -> <binary: 16-bit little-endian PCM, mono, sample_rate>
    server -> {"event": "done", "chunks": 7, "rtf": 0.4, ...}      then close 1000
    server -> {"event": "error", "error": "text_too_long", "message": "...", "code": 1009}
                                                                   then close with that code

Options (first message only, or the body of ``POST /synthesize`` next to ``text``):
``cfg_scale``, ``stop_threshold``, ``seed``, ``max_frames``, ``prompt_audio`` (an audio file
-- WAV, FLAC, OGG -- base64-encoded) with ``prompt_text`` (its transcript), or ``voice`` (a
name from ``GET /v1/audio/voices``, the server's ``--voices``).
"""

import base64
import binascii
import io
import json
import math
import wave
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

AUDIO_ENCODING = "pcm_s16le"  # binary frames: 16-bit signed little-endian samples, mono

# WebSocket close codes (RFC 6455 section 7.4.1) and the HTTP status of the same problem.
NORMAL = 1000
UNSUPPORTED_DATA = 1003  # a binary frame from the client
INVALID_PAYLOAD = 1007  # invalid JSON, unknown option, bad value, empty text, prompt not audio
POLICY_VIOLATION = 1008  # text after the end marker, idle timeout
MESSAGE_TOO_BIG = 1009  # text longer than --max_text_chars
INTERNAL_ERROR = 1011  # the model failed on this input (the server keeps serving)
TRY_AGAIN_LATER = 1013  # --max_sessions sessions are active
HTTP_STATUS = {UNSUPPORTED_DATA: 400, INVALID_PAYLOAD: 400, POLICY_VIOLATION: 408, MESSAGE_TOO_BIG: 413,
               INTERNAL_ERROR: 500, TRY_AGAIN_LATER: 503}

MESSAGE_KEYS = ("text", "end")
OPTION_KEYS = ("cfg_scale", "stop_threshold", "seed", "max_frames", "prompt_audio", "prompt_text", "voice")


class RequestError(Exception):
    """A problem with what the client sent (or the server's limits): ``error`` is a fixed
    identifier, ``message`` names the input and the fix, ``code`` is the WebSocket close code."""

    def __init__(self, error: str, message: str, code: int = INVALID_PAYLOAD):
        super().__init__(message)
        self.error, self.message, self.code = error, message, code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)

    def event(self) -> Dict[str, Any]:
        return {"event": "error", "error": self.error, "message": self.message, "code": self.code}


@dataclass
class Limits:
    max_sessions: int = 4  # streams + HTTP requests being synthesised at once
    idle_timeout: float = 30.0  # seconds a stream may wait for the client's next message
    max_text_chars: int = 2000  # characters of text per stream / request
    max_prompt_seconds: float = 30.0  # length of a voice prompt
    max_frames: Optional[int] = None  # cap of the max_frames option (the model's positions)

    @property
    def max_message_bytes(self) -> int:
        # a prompt of max_prompt_seconds as 48 kHz stereo 16-bit WAV, base64: 4/3 larger
        prompt = int(self.max_prompt_seconds * 48000 * 2 * 2 * 4 / 3) + 4096
        return prompt + 4 * self.max_text_chars + 4096


@dataclass
class SynthesisOptions:
    cfg_scale: Optional[float] = None
    stop_threshold: Optional[float] = None
    seed: Optional[int] = None
    max_frames: Optional[int] = None
    prompt_audio: Optional[np.ndarray] = None  # [C, S] float32 at prompt_sample_rate
    prompt_sample_rate: Optional[int] = None
    prompt_text: Optional[str] = None
    voice: Optional[str] = None  # a named voice; the server fills the prompt fields from it (voices.py)

    def decode_kwargs(self) -> Dict[str, Any]:
        """The options ``SLEDText2Speech.stream`` and ``__call__`` both take."""
        return dict(cfg_scale=self.cfg_scale, stop_threshold=self.stop_threshold, seed=self.seed,
                    max_frames=self.max_frames)


@dataclass
class Message:
    text: str
    end: bool
    options: Optional[SynthesisOptions]  # set on the first message only


def parse_object(raw: str) -> Dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError("invalid_json", f"message is not valid JSON ({e}); send e.g. {{\"text\": \"Hello \"}}")
    if not isinstance(obj, dict):
        raise RequestError("invalid_json", f"message is JSON {type(obj).__name__}, expected an object like "
                                           "{\"text\": \"Hello \"}")
    return obj


def check_keys(obj: Dict[str, Any], allowed) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise RequestError("unknown_option", f"unknown key(s) {unknown}; known: {sorted(allowed)}")


def parse_text(obj: Dict[str, Any], required: bool) -> str:
    if "text" not in obj:
        if required:
            raise RequestError("empty_text", "no 'text' given; send {\"text\": \"what to say\"}")
        return ""
    text = obj["text"]
    if not isinstance(text, str):
        raise RequestError("invalid_option", f"'text' is {type(text).__name__}, expected a string")
    return text


def parse_options(obj: Dict[str, Any], limits: Limits) -> SynthesisOptions:
    options = SynthesisOptions(
        cfg_scale=_number(obj, "cfg_scale", low=0.0),
        stop_threshold=_number(obj, "stop_threshold", low=0.0, open_low=True),
        seed=_integer(obj, "seed", 0, 2**63 - 1),
        max_frames=_integer(obj, "max_frames", 1, limits.max_frames),
    )
    if "prompt_audio" in obj:
        options.prompt_audio, options.prompt_sample_rate = decode_prompt(obj["prompt_audio"], limits)
        prompt_text = obj.get("prompt_text")
        if not isinstance(prompt_text, str) or not prompt_text.strip():
            raise RequestError("invalid_option", "prompt_audio needs 'prompt_text', the transcript of the prompt "
                                                 f"(got {prompt_text!r})")
        options.prompt_text = prompt_text
    elif "prompt_text" in obj:
        raise RequestError("invalid_option", "'prompt_text' given without 'prompt_audio'; send both or neither")
    if obj.get("voice") is not None:
        if not isinstance(obj["voice"], str) or "prompt_audio" in obj:
            raise RequestError("invalid_option", f"'voice' must be a voice name (got {obj['voice']!r}), "
                                                 "and not given together with 'prompt_audio'")
        options.voice = obj["voice"]
    return options


def decode_prompt(value: Any, limits: Limits):
    """base64 of an audio file -> (samples ``[C, S]`` float32, sample rate)."""
    import soundfile as sf

    if not isinstance(value, str):
        raise RequestError("prompt_not_audio", f"'prompt_audio' is {type(value).__name__}; expected a base64 string "
                                               "of a WAV/FLAC/OGG file")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError("prompt_not_audio", f"'prompt_audio' is not base64 ({e}); expected a base64-encoded "
                                               "WAV/FLAC/OGG file")
    try:
        audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's errors are plain RuntimeError / LibsndfileError
        reason = getattr(e, "error_string", None) or str(e)  # without "Error opening <_io.BytesIO object at ...>"
        raise RequestError("prompt_not_audio", f"'prompt_audio' ({len(data)} bytes) is not audio that libsndfile "
                                               f"reads ({reason}); send a WAV, FLAC or OGG file")
    seconds = audio.shape[0] / sample_rate
    if audio.shape[0] == 0:
        raise RequestError("prompt_not_audio", "'prompt_audio' holds no samples; send a few seconds of speech")
    if seconds > limits.max_prompt_seconds:
        raise RequestError("prompt_too_long", f"'prompt_audio' is {seconds:.1f} s; at most "
                                              f"{limits.max_prompt_seconds:g} s (--max_prompt_seconds)",
                           MESSAGE_TOO_BIG)
    return np.ascontiguousarray(audio.T), int(sample_rate)


def _number(obj, key, low, open_low=False) -> Optional[float]:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low)
    if not ok:
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        raise RequestError("invalid_option", f"'{key}' must be a finite number {bound} (got {value!r})")
    return float(value)


def _integer(obj, key, low, high) -> Optional[int]:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        top = "" if high is None else f" and <= {high}"
        raise RequestError("invalid_option", f"'{key}' must be an integer >= {low}{top} (got {value!r})")
    return value


class StreamRequest:
    """Checks one WebSocket session's messages in order (first carries the options)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.first, self.ended, self.chars, self.has_text = True, False, 0, False

    def parse(self, raw: str) -> Message:
        if self.ended:
            raise RequestError("text_after_end", "a message arrived after {\"end\": true}; open a new session for "
                                                 "new text", POLICY_VIOLATION)
        obj = parse_object(raw)
        late = sorted(set(obj) & set(OPTION_KEYS)) if not self.first else []
        if late:
            raise RequestError("option_after_first_message", f"option(s) {late} came after the first message; "
                                                             "options go in the first message only")
        check_keys(obj, MESSAGE_KEYS + OPTION_KEYS)
        text = parse_text(obj, required=False)
        end = obj.get("end", False)
        if not isinstance(end, bool):
            raise RequestError("invalid_option", f"'end' must be true or false (got {end!r})")
        if "text" not in obj and not end:
            raise RequestError("empty_text", "a message needs 'text' or \"end\": true")
        self.chars += len(text)
        if self.chars > self.limits.max_text_chars:
            raise RequestError("text_too_long", f"text is {self.chars}+ characters; at most "
                                                f"{self.limits.max_text_chars} per session (--max_text_chars): "
                                                "split it into several sessions", MESSAGE_TOO_BIG)
        self.has_text = self.has_text or bool(text.strip())
        if end and not self.has_text:
            raise RequestError("empty_text", "text is empty: send a non-blank {\"text\": ...} before "
                                             "{\"end\": true}")
        options = parse_options(obj, self.limits) if self.first else None
        self.first, self.ended = False, end
        return Message(text, end, options)


def parse_synthesis_request(raw: str, limits: Limits):
    """``POST /synthesize`` body -> (text, options)."""
    obj = parse_object(raw)
    check_keys(obj, ("text",) + OPTION_KEYS)
    text = parse_text(obj, required=True)
    if not text.strip():
        raise RequestError("empty_text", "text is empty; send {\"text\": \"what to say\"}")
    if len(text) > limits.max_text_chars:
        raise RequestError("text_too_long", f"text is {len(text)} characters; at most {limits.max_text_chars} "
                                            "(--max_text_chars)", MESSAGE_TOO_BIG)
    return text, parse_options(obj, limits)


# ---------------------------------------------------------------------- audio
def pcm16(audio) -> bytes:
    """Waveform ``[S]`` (float, full scale 1.0) -> 16-bit little-endian PCM bytes.

    Scaled by 32767, rounded to nearest, clipped: the one conversion used for the stream's
    binary frames and the WAV of ``/synthesize`` (clients and tests compare against it).
    """
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    samples = np.clip(np.round(np.asarray(audio, dtype=np.float32) * 32767.0), -32768, 32767)
    return samples.astype("<i2").tobytes()


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """16-bit mono PCM -> a WAV file (RIFF header + the same samples)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm)
    return buffer.getvalue()
