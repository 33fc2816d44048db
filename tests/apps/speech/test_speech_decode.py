"""CTC decoding against hand-computed cases, and WER/CER (issue #16)."""

import math

import pytest
import torch

from rnnkit.apps.speech.ctc_decode import decode, greedy, greedy_with_frames, prefix_beam_search
from rnnkit.apps.speech.metrics import error_rates
from rnnkit.apps.speech.vocab import check_text, encode
from rnnkit.apps.speech.vocab import decode as to_text
from rnnkit.errors import UserError


def _lp(rows):
    return torch.tensor(rows, dtype=torch.float64).log()


def test_greedy_merges_repeats_and_drops_blanks():
    # best path: a a _ a b b _ -> "a a b" (the blank separates the two a's)
    probs = [[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8], [.1, .1, .8], [.8, .1, .1]]
    assert greedy(_lp(probs)) == [1, 1, 2]
    assert greedy_with_frames(_lp(probs)) == [(1, 0), (1, 3), (2, 4)]
    # a stream's next piece: the previous frame's best token is not emitted again
    assert greedy_with_frames(_lp(probs[4:]), start=4, last=2) == []


def test_beam_sums_alignments_where_greedy_does_not():
    # two frames, P(blank) = .6, P(a) = .4 each. Greedy: "_ _" -> "" (p .36).
    # P("a") = P(aa) + P(a_) + P(_a) = .16 + .24 + .24 = .64: the beam search finds it.
    lp = _lp([[.6, .4], [.6, .4]])
    assert greedy(lp) == []
    best = prefix_beam_search(lp, beam=4)
    assert best[0][0] == [1] and math.isclose(best[0][1], math.log(.64), rel_tol=1e-9)
    assert best[1][0] == [] and math.isclose(best[1][1], math.log(.36), rel_tol=1e-9)
    assert decode(lp, beam=4) == [1] and decode(lp, beam=1) == []


def test_beam_repeated_token_needs_a_blank():
    # three frames over {blank, a}: P("aa") needs a _ a: .5*.5*.5 = .125 with these probabilities;
    # P("a") = every a-run without an inner blank: aaa, aa_, a__, _aa, _a_, __a = 6 * .125 = .75
    lp = _lp([[.5, .5]] * 3)
    scores = {tuple(p): s for p, s in prefix_beam_search(lp, beam=10)}
    assert math.isclose(scores[(1, 1)], math.log(.125), rel_tol=1e-9)
    assert math.isclose(scores[(1,)], math.log(.75), rel_tol=1e-9)
    assert math.isclose(scores[()], math.log(.125), rel_tol=1e-9)
    assert math.isclose(sum(math.exp(s) for s in scores.values()), 1.0, rel_tol=1e-9)


def test_beam_one_is_greedy_on_peaky_outputs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 6, generator=g) * 5
    lp = torch.log_softmax(logits, -1)
    assert prefix_beam_search(lp, beam=1)[0][0] == greedy(lp)


def test_error_rates_with_jiwer():
    r = error_rates(["one two three", "oh five"], ["one too three", ""])
    # words: 1 substitution + 2 deletions over 5 reference words
    assert r["wer"] == pytest.approx(3 / 5) and r["utterances"] == 2 and r["words"] == 5
    assert r["sentence_error_rate"] == 1.0
    assert error_rates(["seven"], ["seven"])["cer"] == 0.0


def test_vocabulary_round_trip_and_refusals():
    assert to_text(encode("oh seven")) == "oh seven"
    assert check_text("  Oh   SEVEN ", "x") == "oh seven"
    with pytest.raises(UserError, match="character '7'"):
        check_text("oh 7", "f.csv:3")
    with pytest.raises(UserError, match="empty"):
        check_text("  ", "f.csv:3")


def _frames(rows, V=5):
    """Rows of {token: probability} over blank, space, apostrophe, a, b (the rest spread evenly)."""
    out = []
    for r in rows:
        rest = (1 - sum(r.values())) / (V - len(r))
        out.append([r.get(i, rest) for i in range(V)])
    return _lp(out)


def test_lexicon_keeps_the_beam_inside_the_word_list():
    from rnnkit.apps.speech.ctc_decode import Lexicon

    alphabet = " 'ab"
    # greedy reads "b"; with only "a" in the lexicon the best allowed prefix is "a"
    lp = _frames([{4: .5, 3: .3}, {0: .9}])
    assert greedy(lp) == [4]
    only_a = Lexicon(["a"], alphabet)
    best = prefix_beam_search(lp, beam=4, lexicon=only_a)[0]
    assert best[0] == [3]
    # its probability: every alignment of "a" over the two frames: a_, aa and _a (frame 1 gives the
    # tokens other than the blank .1 / 4 each, frame 0 the blank .2 / 3)
    p_a = .3 * .9 + .3 * (.1 / 4) + (.2 / 3) * (.1 / 4)
    assert math.isclose(best[1], math.log(p_a), rel_tol=1e-9)
    # "ab" is no word of {a, b}: the only way from "a" to "b" is through a space
    lp = _frames([{3: .9}, {4: .6, 1: .3}, {4: .9}])
    assert greedy(lp) == [3, 4]
    words = prefix_beam_search(lp, beam=8, lexicon=Lexicon(["a", "b"], alphabet))
    assert words[0][0] in ([3, 1, 4], [3])
    assert all(p != [3, 4] for p, _ in words)
    assert decode(lp, 1, Lexicon(["ab"], alphabet)) == [3, 4]


def test_lexicon_refusals(tmp_path):
    from rnnkit.apps.speech.ctc_decode import Lexicon, load_lexicon
    from rnnkit.apps.speech.vocab import ALPHABET

    with pytest.raises(UserError, match="not found"):
        load_lexicon(tmp_path / "nope.txt", ALPHABET)
    (tmp_path / "w.txt").write_text("oh\nseven 7\n")
    with pytest.raises(UserError, match="character '7'"):
        load_lexicon(tmp_path / "w.txt", ALPHABET)
    (tmp_path / "e.txt").write_text("\n\n")
    with pytest.raises(UserError, match="empty"):
        load_lexicon(tmp_path / "e.txt", ALPHABET)
    assert len(Lexicon(["oh", "oh", "seven"], ALPHABET).words) == 2
