"""The Transformer baseline of rnnkit translate (layers/seq2seq_transformer.py, apps/translate/model.py):
the search interface, parameter matching, a CLI run saved and loaded, attention heat maps, bad options."""

import json

import pytest
import torch

import rnnkit
from _translate_helpers import padded_source, train_reversal_run
from rnnkit.apps.translate.model import build, param_count, rnn_param_count, transformer_width
from rnnkit.apps.translate.options import TranslateConfig
from rnnkit.cli import main
from rnnkit.layers.seq2seq_search import beam_search, greedy_attention, greedy_search
from rnnkit.layers.seq2seq_transformer import TransformerSeq2Seq, sinusoidal_positions

torch.set_num_threads(1)
BOS, EOS, PAD = 2, 3, 0


def _model(seed=0, V=20, d=16):
    torch.manual_seed(seed)
    return TransformerSeq2Seq(V, d, 2, 2, 4, dropout=0.1).eval()


def test_positions_are_the_sinusoids():
    p = sinusoidal_positions(5, 8)
    assert p.shape == (5, 8)
    torch.testing.assert_close(p[3, 2], torch.sin(torch.tensor(3 / 10000 ** (2 / 8))))
    torch.testing.assert_close(p[3, 3], torch.cos(torch.tensor(3 / 10000 ** (2 / 8))))


def test_steps_equal_teacher_forcing_and_padding_changes_nothing():
    m = _model()
    src, lengths = padded_source()
    tgt = torch.randint(4, 20, (5, 4))
    tgt[0] = BOS
    with torch.no_grad():
        full = m(src, lengths, tgt)
        memory, state = m.encode(src, lengths)
        steps = []
        for t in range(5):
            logits, state, w = m.decoder.step(tgt[t], state, memory)
            steps.append(logits)
            assert torch.all(w[~memory.mask] == 0)
            torch.testing.assert_close(w.sum(-1), torch.ones(4))
        torch.testing.assert_close(torch.stack(steps), full, atol=1e-5, rtol=1e-5)
        other = src.clone()
        other[3:, 1] = 17  # anything at the padding of the second sentence
        torch.testing.assert_close(m(other, lengths, tgt), full)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_1_is_greedy_and_n_best_sorted(seed):
    m = _model(seed)
    src, lengths = padded_source(seed=seed)
    greedy = greedy_search(m, src, lengths, BOS, EOS)
    assert [h[0].tokens for h in beam_search(m, src, lengths, BOS, EOS, beam=1)] == greedy
    for hyps in beam_search(m, src, lengths, BOS, EOS, beam=4, n_best=4):
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert all(BOS not in h.tokens for h in hyps)
    tokens, weights = greedy_attention(m, src[:3, 1], BOS, EOS)
    assert tokens == greedy[1] and weights.shape[1] == 3


@pytest.mark.parametrize(("vocab", "hidden", "emb", "cell", "layers"), [
    (2000, 128, 128, "lstm", 2), (75, 256, 128, "lstm", 2), (40, 64, 32, "gru", 1), (5000, 256, 256, "lstm", 3)])
def test_parameter_count_matches_the_rnn_within_10_percent(vocab, hidden, emb, cell, layers):
    opts = TranslateConfig(hidden=hidden, embedding_size=emb, cell=cell, arch="transformer",
                           transformer_layers=layers).validate()
    target = rnn_param_count(opts, vocab)
    rnn = build(TranslateConfig(hidden=hidden, embedding_size=emb, cell=cell), vocab)
    assert param_count(rnn) == target  # the meta-device count is the real model's
    model = build(opts, vocab)
    assert isinstance(model, TransformerSeq2Seq)
    n = param_count(model)
    assert abs(n / target - 1) <= 0.10, (n, target)
    assert transformer_width(target, vocab, layers, 4)[2] == n


TINY = ["--tokenizer", "char", "--hidden", "64", "--embedding-size", "32", "--batch-size", "16", "--lr", "3e-3",
        "--epochs", "6", "--dropout", "0", "--label-smoothing", "0", "--threads", "1", "--arch", "transformer",
        "--set", "warmup_steps=50", "--set", "tensorboard=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small character Transformer trained on string reversal (400 pairs, 150 steps)."""
    return train_reversal_run(tmp_path_factory.mktemp("translate_tf"), TINY)


def test_transformer_run_is_saved_loaded_and_scores_the_same(trained, capsys):
    run, root = trained
    m = json.loads((run / "metrics.json").read_text())["translate"]
    assert m["parameters"] == param_count(rnnkit.load(run))
    assert abs(m["parameters"] / m["rnn_parameters"] - 1) <= 0.10
    assert m["valid"]["chrf"] > 25  # it learned something in 150 steps (a broken model stays near 10)
    assert json.loads((run / "config.json").read_text())["model"]["name"] == "translate.transformer"
    assert isinstance(rnnkit.load(run), TransformerSeq2Seq)
    capsys.readouterr()
    assert main(["translate", "evaluate", str(run), str(root / "valid.tsv")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["chrf"], res["exact_match"]) == (m["valid"]["chrf"], m["valid"]["exact_match"])
    (root / "in.txt").write_text("abcd\n\nxyz\n")
    assert main(["translate", "translate", str(run), str(root / "in.txt"), "--beam", "1"]) == 0
    greedy = capsys.readouterr().out
    assert main(["translate", "translate", str(run), str(root / "in.txt"), "--beam", "1"]) == 0
    assert capsys.readouterr().out == greedy and len(greedy.split("\n")) == 4


def test_attention_heat_maps_are_written(trained):
    run, _ = trained
    names = json.loads((run / "metrics.json").read_text())["translate"]["attention_plots"]
    assert names == [f"attention_{i}.png" for i in range(1, 5)]
    for name in names:
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("flags", "message"), [
    (["--arch", "lstm"], "unknown arch"),
    (["--heads", "0"], "heads must be at least 1"),
    (["--transformer-layers", "0"], "transformer_layers must be at least 1"),
    (["--set", "sampling=0.2"], "scheduled sampling"),
])
def test_bad_transformer_options_are_one_line_exit_2(trained, tmp_path, capsys, flags, message):
    _, root = trained
    code = main(["translate", "train", str(root / "train.tsv"), "--out", str(tmp_path / "r"), *TINY, *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_evaluate_threads_and_a_bad_thread_count(trained, capsys):
    run, root = trained
    threads = torch.get_num_threads()
    try:
        assert main(["translate", "evaluate", str(run), str(root / "valid.tsv"), "--threads", "1"]) == 0
        capsys.readouterr()
        code = main(["translate", "translate", str(run), str(root / "valid.tsv"), "--threads", "0"])
        err = capsys.readouterr().err
        assert code == 2 and "--threads must be from 1 to 1024" in err and len(err.strip().splitlines()) == 1
    finally:
        torch.set_num_threads(threads)
