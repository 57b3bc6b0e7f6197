"""The released checkpoints' text front-end: RoBERTa-style byte-level BPE, as an ESPnet token type.

Upstream tokenizes with ``RobertaTokenizer(vocab.json, merges.txt)``: GPT-2 byte-level
pre-tokenization, no normalizer, no prefix space, cased input, ids ``<s>``=0 ``<pad>``=1
``</s>``=2 ``<unk>``=3, and it wraps every text as ``<s> ... </s>``. Our model wraps the
text itself (``SLED.wrap_text``), so the ESPnet tokenizer here yields the pieces *without*
the markers; the token list is the vocabulary in id order, so ESPnet's
``TokenIDConverter`` turns the pieces into upstream's ids.

The tokenizer is stored as one ``tokenizer.json`` (the ``tokenizers`` library's format) so
that ``--bpemodel`` is a single file, which ``espnet2.bin.pack`` can carry and rewrite.

Token type ``byte_bpe``: ESPnet's ``build_tokenizer`` knows a fixed list of token types,
and ``Text2Speech`` builds its preprocessor through ``TTSTask``, so ``install_token_type``
teaches the function CommonPreprocessor calls about one more type (every other type goes
to ESPnet unchanged). ``espnet2_sled.tasks.sled`` installs it on import.
"""

import json
from pathlib import Path
from typing import Dict, Iterable, List, Union

from espnet2.text.abs_tokenizer import AbsTokenizer
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE

BYTE_BPE = "byte_bpe"
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0, 1, 2, 3 upstream


class TokenizerFilesError(ValueError):
    pass


def read_vocab(vocab_file: Union[str, Path]) -> Dict[str, int]:
    """vocab.json -> {token: id}; checks ids are 0..V-1 and the four specials sit at 0..3."""
    path = Path(vocab_file)
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TokenizerFilesError(f"'{path}' is not valid JSON ({e}); expected RoBERTa's vocab.json") from e
    if not isinstance(vocab, dict) or not vocab:
        raise TokenizerFilesError(f"'{path}' must be a JSON object {{token: id}}")
    ids = sorted(vocab.values())
    if ids != list(range(len(ids))):
        raise TokenizerFilesError(f"ids in '{path}' are not 0..{len(ids) - 1} without gaps or repeats")
    wrong = [f"{t!r} is {vocab.get(t)} (expected {i})" for i, t in enumerate(SPECIAL_TOKENS) if vocab.get(t) != i]
    if wrong:
        raise TokenizerFilesError(f"'{path}' does not have RoBERTa's special ids: {'; '.join(wrong)}")
    return vocab


def token_list_from_vocab(vocab: Dict[str, int]) -> List[str]:
    """ESPnet's token_list: the vocabulary in id order."""
    tokens = [""] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    return tokens


def build_byte_bpe(vocab_file: Union[str, Path], merges_file: Union[str, Path]) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` giving RobertaTokenizer's ids for vocab.json + merges.txt,
    without the ``<s>``/``</s>`` it adds (no post-processor)."""
    read_vocab(vocab_file)  # fail early with a readable message
    if not Path(merges_file).is_file():
        raise TokenizerFilesError(f"merges file '{merges_file}' does not exist")
    tokenizer = Tokenizer(
        BPE.from_file(
            str(vocab_file), str(merges_file), dropout=None,
            continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
        )
    )
    tokenizer.normalizer = None  # cased, punctuated text goes in as is
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # Literal "<s>" etc. in a text become the special ids, as in RobertaTokenizer.
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tokenizer


class ByteLevelBPETokenizer(AbsTokenizer):
    """ESPnet tokenizer over a ``tokenizer.json``; ``text2tokens`` gives byte-level pieces."""

    def __init__(self, model: Union[Path, str]):
        # Resolved now: the file is read lazily, possibly after the caller changed directory.
        self.model = str(Path(model).expanduser().resolve())
        self._tokenizer = None  # built lazily: data-loader workers get a cheap pickle

    def __repr__(self):
        return f'{self.__class__.__name__}(model="{self.model}")'

    def __getstate__(self):
        return dict(model=self.model, _tokenizer=None)

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            path = Path(self.model)
            if not path.is_file():
                raise FileNotFoundError(
                    f"byte-level BPE tokenizer '{path}' (--bpemodel) does not exist; it is written by "
                    "espnet2_sled.bin.import_upstream next to config.yaml (relative paths are relative "
                    "to the directory the command runs in)"
                )
            self._tokenizer = Tokenizer.from_file(str(path))
        return self._tokenizer

    def text2tokens(self, line: str) -> List[str]:
        return self.tokenizer.encode(line, add_special_tokens=False).tokens

    def tokens2text(self, tokens: Iterable[str]) -> str:
        ids = [self.tokenizer.token_to_id(t) for t in tokens]
        return self.tokenizer.decode([i for i in ids if i is not None], skip_special_tokens=True)


def install_token_type() -> None:
    """Make ESPnet's preprocessors accept ``token_type: byte_bpe`` (idempotent)."""
    import espnet2.text.build_tokenizer as build_module
    import espnet2.train.preprocessor as preprocessor

    original = preprocessor.build_tokenizer
    if getattr(original, "knows_byte_bpe", False):
        return

    def build_tokenizer(token_type: str, bpemodel=None, *args, **kwargs) -> AbsTokenizer:
        if token_type != BYTE_BPE:
            return original(token_type, bpemodel, *args, **kwargs)
        if bpemodel is None:
            raise ValueError(f"token_type={BYTE_BPE} needs --bpemodel: the tokenizer.json written by import_upstream")
        return ByteLevelBPETokenizer(bpemodel)

    build_tokenizer.knows_byte_bpe = True
    preprocessor.build_tokenizer = build_tokenizer
    build_module.build_tokenizer = build_tokenizer


__all__ = [
    "BYTE_BPE", "SPECIAL_TOKENS", "ByteLevelBPETokenizer", "TokenizerFilesError", "build_byte_bpe",
    "install_token_type", "read_vocab", "token_list_from_vocab",
]
