"""ONNX export of the translation app's recurrent encoder-decoder (rnnkit.deploy.translate_export,
`rnnkit export` on a translate run): the encoder graph and the decoder step graph give the model's
logits step by step, and rnnkit's greedy and beam searches find the same tokens on the files as on the
model, for every attention kind, LSTM/GRU/minGRU, one or two layers, separate vocabularies and sources
of lengths and batch sizes the trace did not see; bad requests are refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _training_helpers import main_captured
from _translate_helpers import reversal_files
from rnnkit.deploy import OnnxExportError
from rnnkit.deploy.translate_export import OnnxSeq2Seq, export_paths, export_seq2seq, verify
from rnnkit.layers.seq2seq import Seq2Seq
from rnnkit.layers.seq2seq_search import beam_search, greedy_search

pytest.importorskip("onnxruntime")

BOS, EOS = 2, 3

CASES = [
    pytest.param({"attention": "general"}, id="lstm-general"),
    pytest.param({"attention": "additive", "cell": "gru", "encoder_layers": 2, "decoder_layers": 2},
                 id="gru-additive-2"),
    pytest.param({"attention": "dot", "hidden_size": 16, "bidirectional": False, "cell": "mingru"},
                 id="mingru-dot-uni"),
    pytest.param({"share_embeddings": False, "src_vocab_size": 40, "tie_embeddings": False}, id="separate-vocab"),
    pytest.param({"input_feeding": False, "decoder_layers": 2}, id="no-input-feeding"),
]


def _sources(batch_lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 40, (max(batch_lengths), len(batch_lengths)), generator=g)
    for b, n in enumerate(batch_lengths):
        src[n:, b] = 0  # pad_id
    return src, torch.tensor(batch_lengths)


@pytest.mark.parametrize("kw", CASES)
def test_files_decode_as_the_model(kw, tmp_path: Path):
    torch.manual_seed(0)
    model = Seq2Seq(50, 16, **{"hidden_size": 32, **kw}).eval()
    with torch.no_grad():
        model.decoder.out.weight.mul_(4)  # peaked distributions: different models decode differently
    encoder, step = export_paths(tmp_path / "t.onnx")
    export_seq2seq(model, encoder, step)
    assert verify(model, encoder, step) <= 1e-4
    exported = OnnxSeq2Seq(encoder, step)
    for lengths, seed in (([9, 3, 6, 1], 0), ([13], 1)):
        src, lens = _sources(lengths, seed)
        assert greedy_search(exported, src, lens, BOS, EOS) == greedy_search(model, src, lens, BOS, EOS)
        want = beam_search(model, src, lens, BOS, EOS, beam=3, n_best=2)
        got = beam_search(exported, src, lens, BOS, EOS, beam=3, n_best=2)
        assert [[h.tokens for h in hs] for hs in got] == [[h.tokens for h in hs] for hs in want]
        for hs, ws in zip(got, want, strict=True):
            for h, w in zip(hs, ws, strict=True):
                assert abs(h.score - w.score) < 1e-4


def test_a_wrong_graph_is_caught_before_writing(tmp_path: Path, monkeypatch):
    import rnnkit.deploy.translate_export as translate_export

    model = Seq2Seq(50, 16, 32).eval()
    real = translate_export.build_encoder_onnx

    def wrong(m, **kw):
        proto = real(m, **kw)
        for node in proto.graph.node:
            if node.op_type == "Tanh" and node.output[0].startswith("bridge_tanh"):
                node.op_type = "Sigmoid"  # a different initial state
        return proto

    monkeypatch.setattr(translate_export, "build_encoder_onnx", wrong)
    with pytest.raises(OnnxExportError, match="differ from the model"):
        export_seq2seq(model, tmp_path / "e.onnx", tmp_path / "s.onnx")
    assert not list(tmp_path.iterdir())


def test_refusals(tmp_path: Path):
    with pytest.raises(OnnxExportError, match="train mode with dropout"):
        export_seq2seq(Seq2Seq(50, 16, 32, dropout=0.2), tmp_path / "e.onnx", tmp_path / "s.onnx")
    from rnnkit.layers.seq2seq_transformer import TransformerSeq2Seq

    with pytest.raises(OnnxExportError, match="Transformer"):
        export_seq2seq(TransformerSeq2Seq(50, 16, 1, 1, 2).eval(), tmp_path / "e.onnx", tmp_path / "s.onnx")
    assert not list(tmp_path.iterdir())


def test_cli_exports_a_trained_run(tmp_path: Path, capsys):
    (tmp_path / "data").mkdir()
    files = reversal_files(tmp_path / "data", 60, 10, seed=0)
    flags = ["--tokenizer", "char", "--hidden", "32", "--embedding-size", "16", "--batch-size", "16", "--epochs",
             "2", "--threads", "1", "--seed", "5", "-q", "--set", "plots=false"]
    code, _, err = main_captured(capsys, "translate", "train", files / "train.tsv", "--valid", files / "valid.tsv",
                                 "--out", tmp_path / "run", *flags)
    assert code == 0, err
    code, out, err = main_captured(capsys, "export", tmp_path / "run", "--out", tmp_path / "rev.onnx")
    assert code == 0, err
    assert "decoder step" in out
    assert (tmp_path / "rev_encoder.onnx").is_file() and (tmp_path / "rev_decoder_step.onnx").is_file()
    for bad in (["--step"], ["--lengths"], ["--length", "5"]):
        code, _, err = main_captured(capsys, "export", tmp_path / "run", *bad, "--out", tmp_path / "bad.onnx")
        assert code == 2 and err.count("\n") == 1, (bad, err)
    assert not list(tmp_path.glob("bad*"))

    # the app's translation (greedy) equals rnnkit's greedy search on the files
    from rnnkit.apps.translate import TranslateModel
    from rnnkit.apps.translate.decode import pad_batch
    from rnnkit.apps.translate.tokenizer import BOS as APP_BOS
    from rnnkit.apps.translate.tokenizer import EOS as APP_EOS
    from rnnkit.apps.translate.tokenizer import load_vocab

    app = TranslateModel.load(tmp_path / "run")
    vocab = load_vocab(tmp_path / "run")
    sentences = ["abcde", "xyz", "hello"]
    src, lengths = pad_batch([vocab.encode_source(s) for s in sentences])
    exported = OnnxSeq2Seq(tmp_path / "rev_encoder.onnx", tmp_path / "rev_decoder_step.onnx")
    tokens = greedy_search(exported, src, lengths, APP_BOS, APP_EOS)
    assert [vocab.decode(t) for t in tokens] == app.translate(sentences, beam=1)
