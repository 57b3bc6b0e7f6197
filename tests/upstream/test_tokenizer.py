"""The byte-level BPE gives RobertaTokenizer's ids (minus the <s> </s> it adds), inside
ESPnet's preprocessors too, and survives pickling and bad files with readable errors."""

import argparse
import json
import pickle

import pytest
from espnet2.tasks.tts import TTSTask
from transformers import RobertaTokenizer

from espnet2_sled.tasks.sled import SLEDTask
from espnet2_sled.upstream.tokenizer import (
    BYTE_BPE,
    ByteLevelBPETokenizer,
    TokenizerFilesError,
    build_byte_bpe,
    read_vocab,
    token_list_from_vocab,
)
from synthetic import write_tokenizer

TRICKY = [
    "Hello there! How are you doing today?",
    "The cat sat on the mat, and the dog didn't.",
    "Numbers: 123, 4,560 and 3.14159 -- or 1e-5?!",
    "\u201cCurly quotes,\u201d \u2018single\u2019 ones \u2014 and an ellipsis\u2026",
    " leading space",
    "  two leading spaces",
    "doubled  spaces   and trailing ",
    "tabs\tand\nnewlines",
    "Caf\u00e9s serve cr\u00e8me br\u00fbl\u00e9e; na\u00efve co\u00f6perate.",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! "
    "\u4f60\u597d\u4e16\u754c\u3002 \u3053\u3093\u306b\u3061\u306f",
    "emoji \U0001f600 and \u00a0non-breaking space",
    "CAPITALS and MiXeD cAsE",
    "literal <s> and </s> markers",
    "x",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    write_tokenizer(folder)
    tokenizer_json = folder / "tokenizer.json"
    build_byte_bpe(folder / "vocab.json", folder / "merges.txt").save(str(tokenizer_json))
    roberta = RobertaTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    return folder, tokenizer_json, roberta


@pytest.mark.parametrize("text", TRICKY)
def test_ids_equal_roberta_without_markers(files, text):
    folder, tokenizer_json, roberta = files
    expected = roberta(text)["input_ids"]
    assert expected[0] == 0 and expected[-1] == 2
    ours = ByteLevelBPETokenizer(tokenizer_json)
    tokens = ours.text2tokens(text)
    vocab = read_vocab(folder / "vocab.json")
    assert [vocab[t] for t in tokens] == expected[1:-1]
    assert ours.tokens2text(tokens) == text.replace("<s>", "").replace("</s>", "")


def preprocess_args(folder, tokenizer_json):
    vocab = read_vocab(folder / "vocab.json")
    return argparse.Namespace(
        use_preprocessor=True, token_type=BYTE_BPE, token_list=token_list_from_vocab(vocab),
        bpemodel=str(tokenizer_json), non_linguistic_symbols=None, cleaner=None, g2p=None, odim=128,
        tts_conf=dict(max_positions=2048),
    )


def test_espnet_preprocessors_give_the_same_ids(files):
    folder, tokenizer_json, roberta = files
    args = preprocess_args(folder, tokenizer_json)
    for task in (SLEDTask, TTSTask):  # TTSTask: what ESPnet's Text2Speech uses
        preprocess = task.build_preprocess_fn(args, False)
        for text in TRICKY[:11]:
            ids = preprocess("utt", dict(text=text))["text"].tolist()
            assert ids == roberta(text)["input_ids"][1:-1], (task.__name__, text)
    # picklable for data-loader workers, also after use
    preprocess = SLEDTask.build_preprocess_fn(args, True)
    preprocess("utt", dict(text="warm up"))
    clone = pickle.loads(pickle.dumps(preprocess))
    assert clone("u", dict(text=TRICKY[3]))["text"].tolist() == roberta(TRICKY[3])["input_ids"][1:-1]


def test_training_parser_accepts_the_token_type(files):
    folder, tokenizer_json, _ = files
    args = SLEDTask.get_parser().parse_args(
        ["--output_dir", "x", "--token_type", BYTE_BPE, "--bpemodel", str(tokenizer_json), "--token_list", "t"]
    )
    assert args.token_type == BYTE_BPE
    with pytest.raises(SystemExit):
        TTSTask.get_parser().parse_args(["--output_dir", "x", "--token_type", "nonsense"])


def test_bad_tokenizer_files(tmp_path, files):
    folder, _, _ = files
    vocab = json.loads((folder / "vocab.json").read_text())
    swapped = dict(vocab, **{"<s>": 2, "</s>": 0})
    (tmp_path / "vocab.json").write_text(json.dumps(swapped))
    with pytest.raises(TokenizerFilesError, match=r"'<s>' is 2 \(expected 0\)"):
        read_vocab(tmp_path / "vocab.json")
    (tmp_path / "vocab.json").write_text(json.dumps(dict(vocab, extra=len(vocab) + 5)))
    with pytest.raises(TokenizerFilesError, match="without gaps"):
        read_vocab(tmp_path / "vocab.json")
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(TokenizerFilesError, match="not valid JSON"):
        read_vocab(tmp_path / "vocab.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ByteLevelBPETokenizer(tmp_path / "missing.json").text2tokens("hi")
