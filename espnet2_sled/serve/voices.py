"""Named voices: ``--voices DIR`` holds ``NAME.wav`` (or ``.flac``) with ``NAME.txt``, its transcript.

Each is a voice prompt, read and checked once when the server starts; a file that fails a
check is named in the log with the fix and left out, and the server starts without it.
``default`` is the model's own voice (no prompt). OpenAI's voice names (``alloy``, ...) are
accepted too and mean ``default``, so clients that only know those names work; a file
named after one of them (``alloy.wav``) takes its place.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from espnet2_sled.serve.protocol import RequestError, SynthesisOptions

log = logging.getLogger(__name__)
DEFAULT_VOICE = "default"
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass
class Voice:
    name: str
    audio: Optional[np.ndarray] = None  # [C, S] float32 at sample_rate; None: the model's own voice
    sample_rate: Optional[int] = None
    transcript: Optional[str] = None
    source: Optional[str] = None  # the file it came from

    def options(self, **decode) -> SynthesisOptions:
        """Synthesis options that speak in this voice (plus seed, cfg_scale, ...)."""
        return SynthesisOptions(prompt_audio=self.audio, prompt_sample_rate=self.sample_rate,
                                prompt_text=self.transcript, **decode)

    def describe(self) -> Dict:
        seconds = None if self.audio is None else round(self.audio.shape[-1] / self.sample_rate, 3)
        return {"id": self.name, "name": self.name, "prompted": self.audio is not None, "seconds": seconds,
                "transcript": self.transcript, "file": self.source}


def load_voice(audio_path: Path, max_prompt_seconds: float) -> Voice:
    """One prompt file and its transcript; raises ``ValueError`` naming the file and the fix."""
    import soundfile as sf

    text_path = audio_path.with_suffix(".txt")
    if not text_path.is_file():
        raise ValueError(f"voice '{audio_path}' has no transcript: write what it says into '{text_path.name}'")
    transcript = text_path.read_text(encoding="utf-8").strip()
    if not transcript:
        raise ValueError(f"voice transcript '{text_path}' is empty: write what '{audio_path.name}' says into it")
    try:
        audio, sample_rate = sf.read(str(audio_path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's errors are plain RuntimeError / LibsndfileError
        raise ValueError(f"voice '{audio_path}' is not audio libsndfile reads ({e}); save it as WAV or FLAC")
    seconds = audio.shape[0] / sample_rate
    if audio.shape[0] == 0:
        raise ValueError(f"voice '{audio_path}' holds no samples; record a few seconds of speech")
    if seconds > max_prompt_seconds:
        raise ValueError(f"voice '{audio_path}' is {seconds:.1f} s; at most {max_prompt_seconds:g} s "
                         "(--max_prompt_seconds): cut it shorter")
    if not np.isfinite(audio).all():
        raise ValueError(f"voice '{audio_path}' has NaN or infinite samples; re-export it")
    return Voice(audio_path.stem, np.ascontiguousarray(audio.T), int(sample_rate), transcript, str(audio_path))


class Voices:
    """The voices a server offers, by name (``default`` and OpenAI's names always among them)."""

    def __init__(self, voices: Optional[List[Voice]] = None, default_seed: Optional[int] = None):
        self.prompted: Dict[str, Voice] = {v.name: v for v in voices or []}
        self.default = Voice(DEFAULT_VOICE)
        self.default_seed = default_seed  # for requests that name no seed (Wyoming never does)

    @classmethod
    def from_dir(cls, directory: Optional[str], max_prompt_seconds: float,
                 default_seed: Optional[int] = None) -> Tuple["Voices", List[str]]:
        """Load every NAME.wav/.flac in ``directory``; returns (voices, the problems of the files left out)."""
        if directory is None:
            return cls(default_seed=default_seed), []
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"--voices '{root}' is not a directory; give a folder of NAME.wav + NAME.txt")
        loaded, problems = [], []
        for path in sorted(p for p in root.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES):
            if any(v.name == path.stem for v in loaded):
                problems.append(f"voice '{path}' skipped: another file already defines voice '{path.stem}'")
                continue
            try:
                loaded.append(load_voice(path, max_prompt_seconds))
            except ValueError as e:
                problems.append(f"{e} (voice left out)")
        for problem in problems:
            log.warning("%s", problem)
        return cls(loaded, default_seed), problems

    def names(self) -> List[str]:
        """What ``voice`` accepts: the prompts, ``default``, then OpenAI's names not taken by a prompt."""
        return sorted(self.prompted) + [DEFAULT_VOICE] + [n for n in OPENAI_VOICES if n not in self.prompted]

    def get(self, name: str) -> Voice:
        """The voice called ``name``; raises ``KeyError`` (message lists the names) when there is none."""
        if name in self.prompted:
            return self.prompted[name]
        if name == DEFAULT_VOICE or name in OPENAI_VOICES:
            return self.default
        raise KeyError(f"unknown voice '{name}'; available: {self.names()}")

    def options(self, name: str, **decode) -> SynthesisOptions:
        """Options that speak as voice ``name`` (``KeyError`` if unknown), seed defaulting to ``default_seed``."""
        if decode.get("seed") is None:
            decode["seed"] = self.default_seed
        return self.get(name).options(**decode)

    def resolve(self, options: Optional[SynthesisOptions]) -> None:
        """Fills the prompt of ``options.voice`` in (WebSocket, /synthesize); ``RequestError`` if unknown."""
        if options is None or options.voice is None:
            return
        try:
            voice = self.get(options.voice)
        except KeyError as e:
            raise RequestError("unknown_voice", e.args[0])
        options.prompt_audio, options.prompt_sample_rate = voice.audio, voice.sample_rate
        options.prompt_text = voice.transcript

    def describe(self) -> Dict:
        return {"voices": [v.describe() for v in self.prompted.values()] + [self.default.describe()],
                "default": DEFAULT_VOICE,
                "aliases": {n: DEFAULT_VOICE for n in OPENAI_VOICES if n not in self.prompted}}
