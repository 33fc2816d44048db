"""Ensemble decoding (rnnkit.layers.seq2seq_ensemble and `--ensemble`): the averaged distribution by
hand, one member or identical members decode as the member, mixed architectures, the CLI."""

import json
import math

import pytest
import torch

from _training_helpers import main_captured
from _translate_helpers import padded_source, train_reversal_run
from rnnkit.layers.seq2seq import Seq2Seq
from rnnkit.layers.seq2seq_ensemble import Seq2SeqEnsemble
from rnnkit.layers.seq2seq_search import beam_search, greedy_search
from rnnkit.layers.seq2seq_transformer import TransformerSeq2Seq

torch.set_num_threads(1)
BOS, EOS = 2, 3


def members(n, **kw):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(Seq2Seq(12, 8, 8, **kw).eval())
    return out


def test_step_is_the_log_of_the_mean_probability():
    a, b = members(2)
    ens = Seq2SeqEnsemble([a, b]).eval()
    src, lengths = padded_source(V=12)
    memory, state = ens.encode(src, lengths)
    tokens = torch.full((4,), BOS)
    logits, state, _ = ens.decoder.step(tokens, state, memory)
    want = []
    for m in (a, b):
        mem, st = m.encode(src, lengths)
        lg, _, _ = m.decoder.step(tokens, st, mem)
        want.append(torch.softmax(lg, -1))
    torch.testing.assert_close(logits, torch.log((want[0] + want[1]) / 2))
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(4))  # already normalised
    # the next step goes on from each member's own state
    logits2, _, _ = ens.decoder.step(logits.argmax(-1), state, memory)
    assert logits2.shape == (4, 12) and torch.isfinite(logits2).all()


def test_one_member_and_identical_members_decode_as_the_member():
    (m,) = members(1)
    src, lengths = padded_source(V=12)
    want_greedy = greedy_search(m, src, lengths, BOS, EOS)
    want_beam = beam_search(m, src, lengths, BOS, EOS, beam=3, n_best=3)
    for ens in (Seq2SeqEnsemble([m]), Seq2SeqEnsemble([m, m, m])):
        assert greedy_search(ens, src, lengths, BOS, EOS) == want_greedy
        got = beam_search(ens, src, lengths, BOS, EOS, beam=3, n_best=3)
        assert [[h.tokens for h in hs] for hs in got] == [[h.tokens for h in hs] for hs in want_beam]
        for hs, ws in zip(got, want_beam, strict=True):
            for h, w in zip(hs, ws, strict=True):
                assert math.isclose(h.score, w.score, rel_tol=1e-5, abs_tol=1e-5)


def test_mixed_architectures_and_beam_one_equals_greedy():
    torch.manual_seed(5)
    rnn = Seq2Seq(12, 8, 8, cell="gru").eval()
    tf = TransformerSeq2Seq(12, 8, encoder_layers=1, decoder_layers=1, heads=2).eval()
    ens = Seq2SeqEnsemble([rnn, tf])
    src, lengths = padded_source(V=12)
    greedy = greedy_search(ens, src, lengths, BOS, EOS)
    beam = beam_search(ens, src, lengths, BOS, EOS, beam=1)
    assert [h[0].tokens for h in beam] == greedy
    out = beam_search(ens, src, lengths, BOS, EOS, beam=4, n_best=4)
    for hyps in out:
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)


def test_an_empty_ensemble_is_refused():
    with pytest.raises(ValueError, match="at least one member"):
        Seq2SeqEnsemble([])


TINY = ["--tokenizer", "char", "--hidden", "32", "--embedding-size", "16", "--batch-size", "16", "--lr", "1e-2",
        "--epochs", "6", "--dropout", "0", "--label-smoothing", "0", "--threads", "1", "-q",
        "--set", "tensorboard=false", "--set", "plots=false"]


def test_cli_ensemble_of_runs(tmp_path, capsys):
    for name in "abc":
        (tmp_path / name).mkdir()
    run_a, root = train_reversal_run(tmp_path / "a", TINY)
    run_b, _ = train_reversal_run(tmp_path / "b", [*TINY, "--seed", "1"])
    capsys.readouterr()  # the trainings' output
    code, out, _ = main_captured(capsys, "translate", "evaluate", run_a, root / "valid.tsv", "--ensemble", run_b)
    assert code == 0
    result = json.loads(out)
    assert result["ensemble"] == [str(run_a), str(run_b)] and 0 <= result["exact_match"] <= 1
    (root / "in.txt").write_text("abcd\n\nhgf\n")
    code, out, _ = main_captured(capsys, "translate", "translate", run_a, root / "in.txt", "--ensemble", run_b,
                                 "--ensemble", run_a)
    assert code == 0 and len(out.split("\n")[:-1]) == 3
    # another vocabulary: refused in one line
    bpe = ["--tokenizer", "bpe", "--bpe-vocab", "300", "--hidden", "16", "--embedding-size", "8", "--epochs", "1",
           "--threads", "1", "-q", "--set", "tensorboard=false", "--set", "plots=false"]
    other, _ = train_reversal_run(tmp_path / "c", bpe)
    capsys.readouterr()
    code, _, err = main_captured(capsys, "translate", "evaluate", run_a, root / "valid.tsv", "--ensemble", other)
    assert code == 2 and err.count("\n") == 1 and "differs" in err
