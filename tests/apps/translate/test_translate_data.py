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


def test_pair_files_make_the_tsv_train_reads(tmp_path, capsys):
    from rnnkit.apps.translate.data import read_pairs
    from rnnkit.cli import main

    (tmp_path / "de.txt").write_text("Guten Morgen.\n\nDanke!\n")
    (tmp_path / "en.txt").write_text("Good morning.\n\nThanks!\n")
    assert main(["translate", "pair-files", str(tmp_path / "de.txt"), str(tmp_path / "en.txt"),
                 "--out", str(tmp_path / "p.tsv"), "--header", "de,en"]) == 0
    assert read_pairs(tmp_path / "p.tsv") == [("Guten Morgen.", "Good morning."), ("Danke!", "Thanks!")]
    assert (tmp_path / "p.tsv").read_text().startswith("de\ten\n")
    before = (tmp_path / "p.tsv").read_bytes()
    (tmp_path / "short.txt").write_text("one\n")
    (tmp_path / "tab.txt").write_text("a\tb\n\nc\n")
    (tmp_path / "gap.txt").write_text("x\ny\n\n")
    for args, message in (
            (["de.txt", "en.txt", "--out", "p.tsv"], "already exists"),
            (["de.txt", "short.txt", "--out", "q.tsv"], "3 lines and"),
            (["tab.txt", "en.txt", "--out", "q.tsv"], "line 1 holds a tab"),
            (["de.txt", "gap.txt", "--out", "q.tsv"], "de.txt: line 2 is empty but its pair is not"),
            (["de.txt", "missing.txt", "--out", "q.tsv"], "missing.txt"),
            (["de.txt", "en.txt", "--out", "q.tsv", "--header", "de"], "two names")):
        argv = [str(tmp_path / a) if a.endswith(".txt") or a.endswith(".tsv") else a for a in args]
        assert main(["translate", "pair-files", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)
    assert (tmp_path / "p.tsv").read_bytes() == before and not (tmp_path / "q.tsv").exists()


def test_separate_bpe_vocabularies_have_disjoint_ids_and_round_trip(tmp_path):
    pytest.importorskip("tokenizers")
    from rnnkit.apps.translate.tokenizer import EOS, SeparateBpeVocab, build_vocab, load_vocab, save_vocab

    src = ["der Hund schläft", "die Katze trinkt Milch", "ein Vogel singt"] * 20
    tgt = ["the dog sleeps", "the cat drinks milk", "a bird sings"] * 20
    v = build_vocab("bpe-separate", src, 300, tgt)
    assert isinstance(v, SeparateBpeVocab) and v.vocab_size == v.source.vocab_size + v.target.vocab_size - 4
    s_ids, t_ids = v.encode_source("der Hund"), v.encode_target("the cat drinks milk")
    assert max(s_ids) < v.source.vocab_size <= min(t_ids) and max(t_ids) < v.vocab_size
    assert v.decode([*t_ids, EOS]) == "the cat drinks milk"
    assert v.decode([s_ids[0], *t_ids]).endswith("the cat drinks milk")  # a source piece as output: <unk>, dropped
    assert v.target_pieces(t_ids)[0].startswith("\u2581")
    save_vocab(v, tmp_path)
    w = load_vocab(tmp_path)
    assert isinstance(w, SeparateBpeVocab) and w.encode_target("the dog") == v.encode_target("the dog")
    (tmp_path / "tokenizer.json").write_text('{"rnnkit_translate_bpe_separate": {"source": "x"}}')
    from rnnkit.errors import UserError

    with pytest.raises(UserError, match="source and a target"):
        load_vocab(tmp_path)
