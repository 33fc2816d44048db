"""TSV pairs, sentences and the joint vocabulary of rnnkit translate (apps/translate/data.py, tokenizer.py)."""

import re

import pytest

from rnnkit.apps.translate.data import read_pairs, read_sentences
from rnnkit.apps.translate.options import TranslateConfig
from rnnkit.apps.translate.task import encode_pairs
from rnnkit.apps.translate.tokenizer import BOS, EOS, PAD, UNK, CharVocab, build_vocab, load_vocab, save_vocab
from rnnkit.errors import UserError


def test_pairs_with_header_quotes_and_crlf(tmp_path):
    f = tmp_path / "p.tsv"
    f.write_bytes(b'de\ten\r\nEr sagt "ja".\tHe says "yes".\r\n\nGuten Tag!\tGood day!\n')
    assert read_pairs(f) == [('Er sagt "ja".', 'He says "yes".'), ("Guten Tag!", "Good day!")]
    assert read_pairs(f, header=False)[0] == ("de", "en")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "has no sentence pairs"),
    (b"de\ten\n", "has no sentence pairs after its header"),
    (b"de\ten\nno tab here\n", "line 2 has no tab"),
    (b"de\ten\na\tb\tc\n", "line 2 has 2 tabs"),
    (b"de\ten\n\tb\n", "line 2 has an empty source"),
    (b"de\ten\na\t  \n", "line 2 has an empty target"),
    (b"de\ten\nok\tfine\nbad \xff\tx\n", "not UTF-8 text: byte 0xff at offset 18 (line 3)"),
])
def test_bad_pairs_are_one_line_errors(tmp_path, content, message):
    f = tmp_path / "bad.tsv"
    f.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(message)) as exc:
        read_pairs(f)
    assert "\n" not in str(exc.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_pairs(tmp_path / "nope.tsv")
    with pytest.raises(UserError, match="is a folder"):
        read_pairs(tmp_path)
    with pytest.raises(UserError, match="nothing to translate"):
        read_sentences(None, "")


def test_sentences_keep_blank_lines():
    assert read_sentences(None, "a\n\nb\r\n") == ["a", "", "b"]


def test_char_vocab_specials_unknown_and_round_trip(tmp_path):
    v = CharVocab.train(["abc", "cba"])
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3) and v.vocab_size == 7
    assert v.decode(v.encode("cab")) == "cab"
    assert v.encode("az") == [v.index["a"], UNK]  # unseen characters: <unk>, never an error
    save_vocab(v, tmp_path)
    assert load_vocab(tmp_path).symbols == v.symbols


def test_bpe_joint_vocab_round_trip_and_unknown_text(tmp_path):
    v = build_vocab("bpe", ["Der Hund schläft.", "The dog sleeps."] * 20, 300)
    assert [v.tok.token_to_id(s) for s in ("<pad>", "<unk>", "<s>", "</s>")] == [0, 1, 2, 3]
    assert v.decode(v.encode("Der Hund schläft.")) == "Der Hund schläft."
    ids = v.encode("Ünbekannte Wörter ✓")  # byte level: any text encodes
    assert UNK not in ids and v.decode(ids) == "Ünbekannte Wörter ✓"
    save_vocab(v, tmp_path)
    assert load_vocab(tmp_path).encode("The dog") == v.encode("The dog")


def test_damaged_tokenizer_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserError, match="damaged"):
        load_vocab(tmp_path)


def test_too_long_policy():
    v = CharVocab.train(["abcdef"])
    pairs = [("abc", "cba"), ("abcdef", "fedcba")]
    kept, idx = encode_pairs(v, pairs, 4, "skip", "t.tsv", header=True)
    assert idx == [0] and len(kept) == 1
    with pytest.raises(UserError, match="line 3 has 6/6 source/target tokens, over --max-len 4"):
        encode_pairs(v, pairs, 4, "error", "t.tsv", header=True)


def test_options_are_checked():
    with pytest.raises(UserError, match="unknown cell"):
        TranslateConfig(cell="nope").validate()
    with pytest.raises(UserError, match="even --hidden"):
        TranslateConfig(hidden=33).validate()
    with pytest.raises(UserError, match="unknown attention"):
        TranslateConfig(attention="cosine").validate()
