"""What a decode produced against what it was asked: frames per text token, text tokens read,
pieces that stopped early. Every entry point (API, long text, streaming, CLI, server) builds
one ``DecodeReport`` per text and applies the same rule:

* no frames at all -> ``EmptyOutputError`` (a ``ValueError``): nothing is returned or written;
* a piece with fewer frames than ``floor x its text tokens`` -> a ``ShortOutputWarning``
  naming the piece and the numbers (streaming's ``EarlyStopWarning``, a piece that stopped
  before reading all its text, is one of them).

The floor is measured, not guessed: ``tts_conf.min_frames_per_token`` is the 1st percentile
of frames per text token over the training data, which recipe stage 4 computes from the
shapes it collects (``local/frames_per_token.py``) and stage 5 stores in the model's config
(so ``espnet2.bin.pack`` packs it). Output below ``PLAUSIBLE_FRACTION`` of it -- speech at
twice the pace of the fastest 1% of the training data -- is implausibly short. A model
without the statistic (imported upstream checkpoints, models trained before it existed)
uses ``FALLBACK_TOKENS_PER_SECOND``: a floor of ``frame_rate / 30`` frames per token, i.e.
text read at 30 tokens per second, twice read speech for character tokens and far faster
for BPE tokens, so the fallback only names output that is clearly cut short.

A piece that ended at the caller's own ``max_frames`` is not short: it was asked to stop.
"""

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

PLAUSIBLE_FRACTION = 0.5
FALLBACK_TOKENS_PER_SECOND = 30.0
SHORT_NAME = 60  # characters of a text quoted in a message


class ShortOutputWarning(UserWarning):
    """Output implausibly short for its text: the model stopped before speaking all of it."""


class EmptyOutputError(ValueError):
    """The model produced no frames for a text (it stopped at once); nothing was returned or written.
    ``report``: the ``DecodeReport`` that found it."""

    def __init__(self, message: str, report: Optional["DecodeReport"] = None):
        super().__init__(message)
        self.report = report


def quote(text: str) -> str:
    """A text as messages name it: ``'the first 60 characters...'``."""
    text = " ".join(text.split())
    return repr(text if len(text) <= SHORT_NAME else text[: SHORT_NAME - 3] + "...")


def frames_per_token_floor(min_frames_per_token: Optional[float], frame_rate: float):
    """(floor in frames per text token, where it comes from) for a model's config value."""
    if min_frames_per_token:
        return (PLAUSIBLE_FRACTION * float(min_frames_per_token),
                f"half the 1st percentile of its training data, {float(min_frames_per_token):.2f}")
    return (frame_rate / FALLBACK_TOKENS_PER_SECOND,
            f"the fallback for models without training statistics, {FALLBACK_TOKENS_PER_SECOND:g} tokens/s")


@dataclass
class PieceReport:
    frames: int  # frames produced for the piece
    text_tokens: int  # text tokens of the piece (no markers, no prompt transcript)
    tokens_read: int  # of those, read by the model (offline: all; streaming: up to the stop)
    capped: bool = False  # ended at the caller's max_frames


@dataclass
class DecodeReport:
    """One text's decode: its pieces (one unless the text was long), and the rule's inputs."""

    what: str  # the input as messages name it: "text 'Hello...'" / "utterance 'u1'"
    floor: float  # frames per text token below which a piece is implausibly short
    floor_source: str
    stop_threshold: Optional[float] = None
    voice_prompt: bool = False
    pieces: List[PieceReport] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(p.frames for p in self.pieces)

    @property
    def text_tokens(self) -> int:
        return sum(p.text_tokens for p in self.pieces)

    @property
    def tokens_read(self) -> int:
        return sum(p.tokens_read for p in self.pieces)

    @property
    def frames_per_token(self) -> float:
        return self.frames / max(1, self.text_tokens)

    @property
    def short_pieces(self) -> List[int]:
        """1-based numbers of the pieces below the floor (or that stopped before reading all text)."""
        return [i + 1 for i, p in enumerate(self.pieces) if not p.capped and p.text_tokens > 0
                and (p.frames < self.floor * p.text_tokens or p.tokens_read < p.text_tokens)]

    @property
    def empty(self) -> bool:
        return bool(self.pieces) and self.frames == 0

    def fixes(self) -> str:
        threshold = "" if self.stop_threshold is None else f" (now {self.stop_threshold:g})"
        fix = f"try another seed, or a higher stop_threshold{threshold}"
        if self.voice_prompt:
            fix += ", or another voice prompt (clean speech like the training data, at least a few seconds)"
        return fix

    def warnings(self, already_warned: Sequence[int] = ()) -> List[str]:
        """The ``ShortOutputWarning`` messages (empty for output of a plausible length);
        ``already_warned``: piece numbers a streaming ``EarlyStopWarning`` has named."""
        short = [i for i in self.short_pieces if i not in already_warned]
        if not short or self.empty:
            return []
        n = len(self.pieces)
        details = []
        for i in short[:5]:
            p = self.pieces[i - 1]
            where = f"piece {i} of {n}: " if n > 1 else ""
            read = "" if p.tokens_read >= p.text_tokens else f", read {p.tokens_read} of them"
            details.append(f"{where}{p.frames} frames for {p.text_tokens} text tokens{read} "
                           f"({p.frames / p.text_tokens:.2f} frames/token)")
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        head = f"{self.what}: {len(short)} of {n} pieces are" if n > 1 else f"{self.what}: output is"
        return [f"{head} implausibly short, the model stopped early: {'; '.join(details)}{more}; this "
                f"model's floor is {self.floor:.2f} frames/token ({self.floor_source}); {self.fixes()}"]

    def error(self) -> Optional[str]:
        """The ``EmptyOutputError`` message, or None when there are frames."""
        if not self.empty:
            return None
        return (f"{self.what}: the model produced no audio (0 frames for {self.text_tokens} text tokens: "
                f"it stopped at once); {self.fixes()}")

    def as_dict(self) -> Dict[str, Any]:
        """What timing.jsonl and the server report (JSON-ready)."""
        return dict(frames=self.frames, text_tokens=self.text_tokens, tokens_read=self.tokens_read,
                    frames_per_token=round(self.frames_per_token, 4), min_frames_per_token=round(self.floor, 4),
                    pieces=len(self.pieces), short_pieces=self.short_pieces, warnings=self.warnings())

    def apply(self, stacklevel: int = 3, already_warned: Sequence[int] = ()) -> "DecodeReport":
        """The rule: raise ``EmptyOutputError`` for no frames, warn ``ShortOutputWarning`` for short pieces."""
        message = self.error()
        if message is not None:
            raise EmptyOutputError(message, self)
        for text in self.warnings(already_warned):
            warnings.warn(text, ShortOutputWarning, stacklevel=stacklevel)
        return self


__all__ = ["DecodeReport", "EmptyOutputError", "FALLBACK_TOKENS_PER_SECOND", "PLAUSIBLE_FRACTION", "PieceReport",
           "ShortOutputWarning", "frames_per_token_floor", "quote"]
