"""rnnkit.apps.text: corpus reading, the split, tokenisers, metrics."""

import math

import pytest
import torch

from rnnkit.apps.text.data import read_documents, read_text_file, split_documents
from rnnkit.apps.text.metrics import bits_per_char, perplexity
from rnnkit.apps.text.tokenizer import BpeTokenizer, CharTokenizer, load_tokenizer, save_tokenizer
from rnnkit.errors import UserError

torch.set_num_threads(1)


def _docs(tmp_path, n=8):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(n):
        (folder / f"doc{i:02d}.txt").write_text(f"document {i}: " + f"words of number {i} " * (50 + 10 * i))
    return folder


def test_document_split_is_deterministic_and_disjoint(tmp_path):
    docs = read_documents([_docs(tmp_path)])
    a = split_documents(docs, 0.15, 0.15, seed=3)
    b = split_documents(read_documents([tmp_path / "corpus"]), 0.15, 0.15, seed=3)
    assert a.mode == "documents"
    for which in ("train", "valid", "test"):
        assert a.names(which) == b.names(which)
    names = a.names("train") + a.names("valid") + a.names("test")
    assert sorted(names) == sorted(d.name for d in docs) and len(set(names)) == len(names)
    assert a.valid and a.test and a.train
    assert split_documents(docs, 0.15, 0.15, seed=4).names("valid") != a.names("valid") or len(docs) < 3


def test_single_file_split_is_contiguous_blocks(tmp_path):
    f = tmp_path / "one.txt"
    text = "".join(chr(97 + i % 26) for i in range(1000))
    f.write_text(text)
    s = split_documents(read_documents([f]), 0.1, 0.1)
    assert s.mode == "blocks"
    assert s.text("train") + s.text("valid") + s.text("test") == text
    assert len(s.text("valid")) == 100 and len(s.text("test")) == 100


def test_concatenation_file_is_a_leak(tmp_path):
    folder = _docs(tmp_path)
    (folder / "all.txt").write_text("\n".join(p.read_text() for p in sorted(folder.glob("doc*.txt"))))
    with pytest.raises(UserError, match="would leak"):
        split_documents(read_documents([folder]), 0.15, 0.15)


def test_non_utf8_names_the_offset(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\u00e9 ok".encode("utf-8") + b"\nna\xefve")
    with pytest.raises(UserError, match=r"byte 0xef at offset 11 \(line 2\)"):
        read_text_file(f)


def test_missing_and_empty(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_documents([tmp_path / "nope.txt"])
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(UserError, match="corpus is empty"):
        read_documents([tmp_path / "empty.txt"])
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="no files matching"):
        read_documents([tmp_path / "d"])


def test_default_corpus_is_the_python_docs():
    docs = read_documents([])
    assert len(docs) > 20 and sum(len(d.text) for d in docs) > 100_000
    s = split_documents(docs)
    assert s.mode == "documents" and s.valid and s.test


def test_char_tokenizer_unknowns_and_roundtrip(tmp_path):
    tok = CharTokenizer.train("hello world")
    assert tok.decode(tok.encode("hello")) == "hello"
    assert tok.encode("hex")[-1] == 0  # corpus text: <unk>
    with pytest.raises(UserError, match="outside the model's vocabulary: 'x'"):
        tok.encode("hex", on_unknown="error")
    assert tok.decode(tok.encode("hex", on_unknown="skip")) == "he"
    save_tokenizer(tok, tmp_path)
    assert load_tokenizer(tmp_path).chars == tok.chars


def test_bpe_tokenizer_roundtrip_and_saved(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 50 + "caf\u00e9 na\u00efve \u65e5\u672c"
    tok = BpeTokenizer.train([text], vocab_size=300)
    ids = tok.encode(text)
    assert len(ids) < len(text) / 2
    assert tok.decode(ids) == text
    assert tok.decode(tok.encode("\u00dcnseen \u2603")) == "\u00dcnseen \u2603"  # byte level: no unknowns
    save_tokenizer(tok, tmp_path)
    assert load_tokenizer(tmp_path).encode(text) == ids


def test_metrics():
    assert bits_per_char(math.log(2)) == pytest.approx(1.0)
    assert bits_per_char(math.log(2), tokens_per_char=0.25) == pytest.approx(0.25)
    assert perplexity(math.log(7)) == pytest.approx(7.0)
