"""English text front end: numbers, currency and percent in words, no control characters.

``cleaner: sled_english`` is an ESPnet text cleaner (the ``--cleaner`` option of training,
kept in ``config.yaml``), so training, the recipe's token list (stage 3) and decoding
(``SLEDText2Speech.tokenize``, the decoding CLI, streaming) read text through the same
function, ``clean_english``:

    >>> clean_english("In 1999, 3.5% of $2,000,000\\x07 went to Zoë.")
    'In nineteen ninety-nine, three point five percent of two million dollars went to Zoe.'

It keeps case and punctuation (SLED reads cased, punctuated text) and changes nothing in
ASCII text without digits, ``%``, ``&``, currency signs or control characters, so a model
trained with ``cleaner: none`` on such text tokenizes it to the same ids. Number and
currency expansion is ESPnet's own (``tacotron_cleaner.numbers``, over ``inflect``);
other scripts are transliterated with ``unidecode`` as ESPnet's ``tacotron`` cleaner does.

``install_text_cleaner`` teaches ESPnet's preprocessor the name (``espnet2_sled.registry``
does it on import); ``python -m espnet2_sled.text_frontend --cleaner sled_english IN OUT`` cleans a
Kaldi ``text`` file (the recipe's stage 3 runs this ``main`` through local/clean_text.py).
This module imports nothing from ``espnet2_sled``, so the recipe can load it by file.
"""

import argparse
import os
import re
import sys
import unicodedata
from typing import Callable, Iterable, List, Optional, Sequence, Union

from espnet2.text.cleaner import TextCleaner as EspnetTextCleaner  # ESPnet's own, before install_text_cleaner

CLEANER = "sled_english"

_WHITESPACE_CONTROLS = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029"
_PERCENT_AFTER_NUMBER = re.compile(r"([0-9])\s*%")
_EUROS = re.compile(r"\u20ac\s*([0-9][0-9.,]*[0-9]|[0-9])")
_SPACES = re.compile(r" {2,}")


def strip_control_characters(text: str) -> str:
    """Control / format / unassigned characters removed; line breaks and tabs become spaces."""
    out = []
    for c in text:
        if c in _WHITESPACE_CONTROLS:
            out.append(" ")
        elif not unicodedata.category(c).startswith("C"):
            out.append(c)
    return "".join(out)


def clean_english(text: str) -> str:
    """Text -> what an English token list can read (see the module docstring)."""
    from tacotron_cleaner.numbers import normalize_numbers
    from unidecode import unidecode

    cleaned = strip_control_characters(text)
    cleaned = _PERCENT_AFTER_NUMBER.sub(r"\1 percent", cleaned).replace("%", " percent ")
    cleaned = _EUROS.sub(r"\1 euros", cleaned).replace("&", " and ")
    cleaned = normalize_numbers(cleaned)
    if not cleaned.isascii():
        cleaned = unidecode(cleaned)
    if cleaned != text:  # collapse only the spaces this function may have made
        cleaned = _SPACES.sub(" ", cleaned).strip()
    return cleaned


def build_cleaner(cleaner: Union[None, str, Sequence[str]]) -> Callable[[str], str]:
    """An ESPnet cleaner name (or list of names, applied in order; None / 'none': no change) -> function."""
    names = [] if cleaner in (None, "none") else ([cleaner] if isinstance(cleaner, str) else list(cleaner))
    return SLEDTextCleaner(names)


class SLEDTextCleaner(EspnetTextCleaner):
    """ESPnet's ``TextCleaner`` plus ``sled_english``; every other name goes to ESPnet's class.
    Picklable (data-loader workers get a copy)."""

    def __init__(self, cleaner_types: Optional[Iterable[str]] = None):
        super().__init__([] if cleaner_types is None else cleaner_types)
        self.espnet_cleaners = {t: EspnetTextCleaner(t) for t in self.cleaner_types if t != CLEANER}

    def __call__(self, text: str) -> str:
        for t in self.cleaner_types:
            text = clean_english(text) if t == CLEANER else self.espnet_cleaners[t](text)
        return text


def install_text_cleaner() -> None:
    """Make ESPnet's preprocessors accept ``cleaner: sled_english`` (idempotent): the
    preprocessor module builds its cleaner from the name ``TextCleaner``, which now is ours."""
    import espnet2.text.cleaner as cleaner_module
    import espnet2.train.preprocessor as preprocessor

    cleaner_module.TextCleaner = SLEDTextCleaner
    preprocessor.TextCleaner = SLEDTextCleaner


def unknown_tokens(tokens: Sequence[str], ids: Sequence[int], unk_id: int) -> List[str]:
    """The distinct token strings that were read as ``<unk>`` (sentencepiece's '▁' removed), in order."""
    seen: List[str] = []
    for token, i in zip(tokens, ids):
        token = token.replace("\u2581", "")
        if i == unk_id and token and token not in seen:
            seen.append(token)
    return seen


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Clean the text column of a Kaldi text file (recipe stage 3)")
    parser.add_argument("--cleaner", default=CLEANER, help="ESPnet cleaner name(s), comma-separated; none: copy")
    parser.add_argument("input", help="Kaldi text file: key text")
    parser.add_argument("output", help="cleaned copy ('-': stdout)")
    args = parser.parse_args(argv)
    clean = build_cleaner(None if args.cleaner == "none" else args.cleaner.split(","))
    out = sys.stdout if args.output == "-" else open(args.output + ".tmp", "w", encoding="utf-8")
    with open(args.input, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split(maxsplit=1)
            if parts:
                out.write(parts[0] + " " + (clean(parts[1]) if len(parts) > 1 else "") + "\n")
    if out is not sys.stdout:
        out.close()
        os.replace(args.output + ".tmp", args.output)


if __name__ == "__main__":
    main()


__all__ = ["CLEANER", "SLEDTextCleaner", "build_cleaner", "clean_english", "install_text_cleaner",
           "strip_control_characters", "unknown_tokens"]
