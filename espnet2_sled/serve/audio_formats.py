"""The audio formats of OpenAI's ``/v1/audio/speech``, encoded a chunk at a time (no ffmpeg).

OpenAI's formats are mono at 24 kHz; ``pcm`` is raw 16-bit little-endian samples. The
server's chunks arrive as 16-bit PCM at the model's rate (``pcm16``); an ``AudioEncoder``
resamples them to 24 kHz when the model's rate differs (soxr's streaming resampler; the
Encodec and mel latents are 24 kHz already, so there it passes the samples through
untouched) and encodes them:

===========  ==========  ===================================================================
format       streamed    how
===========  ==========  ===================================================================
``pcm``      yes         the samples themselves
``wav``      yes         a RIFF header with unknown sizes (0xFFFFFFFF, as OpenAI's), then PCM
``mp3``      yes         libsndfile + LAME, constant bitrate; the LAME tag it rewrites at the
                         end is not resent (its silent placeholder frame is), so decoders
                         return 1681 to 2256 samples more than were made (LAME's 1105-sample
                         delay, the 576-sample placeholder, padding to whole 576-sample frames)
``opus``     yes         Ogg Opus (libsndfile + libopus), sent a page at a time (about 1 s)
``flac``     at the end  libsndfile writes the length into the header when it closes the file,
                         and libsndfile cannot read a FLAC stream without it, so the whole
                         file is sent once the utterance is complete
===========  ==========  ===================================================================
"""

import io
import struct
from typing import Optional

import numpy as np

OPENAI_SAMPLE_RATE = 24000
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "wav": "audio/wav", "flac": "audio/flac",
                 "pcm": "audio/pcm"}
FORMATS = tuple(CONTENT_TYPES)  # what response_format accepts (OpenAI's aac is not among them)
SOUNDFILE_FORMATS = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "flac": ("FLAC", "PCM_16")}


def streaming_wav_header(sample_rate: int) -> bytes:
    """RIFF/WAVE header for 16-bit mono PCM of unknown length (sizes 0xFFFFFFFF)."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" \
        + struct.pack("<I", unknown)


class _GrowingFile(io.RawIOBase):
    """A seekable file for libsndfile whose new bytes are handed out as they are written;
    bytes rewritten after they were handed out (header fix-ups at close) stay behind."""

    def __init__(self):
        super().__init__()
        self.data, self.position, self.sent = bytearray(), 0, 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, chunk) -> int:
        chunk = bytes(chunk)
        end = self.position + len(chunk)
        if end > len(self.data):
            self.data.extend(bytes(end - len(self.data)))
        self.data[self.position:end] = chunk
        self.position = end
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: len(self.data)}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size is None or size < 0 else self.position + size
        chunk = bytes(self.data[self.position:end])
        self.position += len(chunk)
        return chunk

    def take(self) -> bytes:
        """The bytes written past what was handed out so far."""
        new = bytes(self.data[self.sent:])
        self.sent = len(self.data)
        return new


class AudioEncoder:
    """16-bit mono PCM at ``input_rate`` in, chunks of one ``response_format`` at 24 kHz out.

    ``encode(pcm)`` returns the bytes ready to send now (maybe none); ``finish()`` the rest.
    """

    def __init__(self, response_format: str, input_rate: int):
        if response_format not in CONTENT_TYPES:
            raise ValueError(f"response_format '{response_format}' is not one of {list(FORMATS)}")
        self.format, self.input_rate = response_format, int(input_rate)
        self.samples = 0  # 24 kHz samples encoded so far
        self.resampler = None
        if self.input_rate != OPENAI_SAMPLE_RATE:
            import soxr

            self.resampler = soxr.ResampleStream(self.input_rate, OPENAI_SAMPLE_RATE, 1, dtype="float32")
        self.file: Optional[_GrowingFile] = None
        self.sound = None
        if response_format in SOUNDFILE_FORMATS:
            import soundfile as sf

            container, subtype = SOUNDFILE_FORMATS[response_format]
            extra = dict(bitrate_mode="CONSTANT", compression_level=0.5) if response_format == "mp3" else {}
            self.file = _GrowingFile()
            self.sound = sf.SoundFile(self.file, "w", samplerate=OPENAI_SAMPLE_RATE, channels=1, format=container,
                                      subtype=subtype, **extra)
        self.header = streaming_wav_header(OPENAI_SAMPLE_RATE) if response_format == "wav" else b""

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def encode(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2")
        if self.resampler is not None:
            samples = self._resample(samples, last=False)
        return self._encode(samples)

    def finish(self) -> bytes:
        tail = self._resample(np.zeros(0, dtype="<i2"), last=True) if self.resampler is not None else None
        out = self._encode(tail) if tail is not None and len(tail) else b""
        if self.sound is not None:
            self.sound.close()  # flushes the encoder (and rewrites headers, which streamed formats drop)
            if self.format == "flac":
                return out + bytes(self.file.data)  # the finished file, length in its header
            out += self.file.take()
        return out + self._take_header()

    def _resample(self, samples: np.ndarray, last: bool) -> np.ndarray:
        audio = self.resampler.resample_chunk(samples.astype(np.float32) / 32767.0, last=last)
        return np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")

    def _take_header(self) -> bytes:
        header, self.header = self.header, b""
        return header

    def _encode(self, samples: np.ndarray) -> bytes:
        self.samples += len(samples)
        if self.sound is None:  # pcm, wav
            return self._take_header() + samples.astype("<i2").tobytes()
        if len(samples):
            self.sound.write(samples.astype(np.int16))
        return b"" if self.format == "flac" else self.file.take()
