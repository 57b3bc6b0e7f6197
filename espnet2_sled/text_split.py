"""Long text -> pieces the model can speak one at a time: sentences first, then clauses, then words.

A SLED model has ``max_positions`` slots for text tokens *and* the frames it writes, so a
long paragraph is spoken as several pieces that are decoded in turn (or as a batch) and
joined. Offline decoding (``SLEDText2Speech.__call__``), the decoding CLI and the
streaming session (``SLEDText2Speech.stream``) all cut with ``split_text``:

    >>> split_text("One. Two, three four. Five.", fits=lambda piece: len(piece) <= 12)
    ['One.', 'Two,', 'three four.', 'Five.']

Consecutive sentences are packed greedily while ``fits(piece)``; a sentence that does not
fit alone is cut at its commas / semicolons / colons / dashes the same way, and a clause
that still does not fit is cut between words. Pieces are stripped substrings of the text,
in order; every non-space character of the text is in exactly one piece.
"""

import re
from typing import Callable, List, Tuple

# Common abbreviations whose full stop does not end a sentence ("Mr. Smith", "e.g. this").
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e cf no fig vol gen col lt sgt capt rev hon mt ft ave"
    .split()
)

# A sentence ends after . ! ? or an ellipsis (plus closing quotes/brackets), before whitespace.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)")
# A clause ends after , ; : or a dash, before whitespace.
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[-\u2013\u2014]+|[\u2013\u2014])(?=\s)")
_WORD = re.compile(r"\S+")


def sentence_ends(text: str) -> List[int]:
    """Offsets just after each sentence-final punctuation mark that is followed by whitespace."""
    ends = []
    for match in _SENTENCE_END.finditer(text):
        if match.group().startswith(".") and len(match.group()) == 1:
            word = text[: match.start()].rsplit(None, 1)[-1:] or [""]
            if word[0].lower().lstrip("(\"'") in ABBREVIATIONS:
                continue
        ends.append(match.end())
    return ends


def _clause_ends(text: str) -> List[int]:
    return [m.end() for m in _CLAUSE_END.finditer(text)]


def _word_ends(text: str) -> List[int]:
    return [m.end() for m in _WORD.finditer(text)]


_LEVELS: Tuple[Callable[[str], List[int]], ...] = (sentence_ends, _clause_ends, _word_ends)
_LEVEL_NAMES = ("sentence", "clause", "word")


def _units(text: str, ends: List[int]) -> List[str]:
    """Cut ``text`` after each offset in ``ends``; the pieces concatenate back to ``text``."""
    units, start = [], 0
    for end in ends:
        if end > start:
            units.append(text[start:end])
            start = end
    if start < len(text):
        units.append(text[start:])
    return [u for u in units if u.strip()]


def _pack(text: str, fits: Callable[[str], bool], level: int) -> List[str]:
    pieces: List[str] = []
    current = ""
    for unit in _units(text, _LEVELS[level](text)):
        if current and fits((current + unit).strip()):
            current += unit
            continue
        if current:
            pieces.append(current.strip())
            current = ""
        if fits(unit.strip()):
            current = unit
        elif level + 1 < len(_LEVELS):
            pieces += _pack(unit, fits, level + 1)
        else:
            raise ValueError(
                f"the word {unit.strip()[:80]!r} alone does not fit the model's positions; "
                "it cannot be spoken (check the text for a very long token, e.g. a URL or a hash)"
            )
    if current.strip():
        pieces.append(current.strip())
    return pieces


def split_text(text: str, fits: Callable[[str], bool]) -> List[str]:
    """``text`` -> pieces that each satisfy ``fits`` (``[text.strip()]`` when the whole text fits).

    fits: piece -> whether the model can read the piece and write its audio within its
    positions (``SLEDText2Speech.piece_fits``). Raises ``ValueError`` naming a single word
    that does not fit.
    """
    if not text.strip():
        return []
    if fits(text.strip()):
        return [text.strip()]
    return _pack(text, fits, 0)


__all__ = ["ABBREVIATIONS", "sentence_ends", "split_text"]
