"""ONNX export of the text app's recurrent language model (rnnkit.deploy.text_export): onnxruntime
against the PyTorch model at lengths and batch sizes other than the export check's, the step graph
iterated against the sequence graph, refusals, and ``rnnkit export`` on a saved model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.apps.text.model import RecurrentLM, TransformerLM
from rnnkit.cli import main
from rnnkit.deploy.onnx_export import OnnxExportError, onnx_session
from rnnkit.deploy.text_export import export_text_lm

pytest.importorskip("onnxruntime")
VOCAB = 23
CONFIGS = {
    "lstm-tied": dict(embedding_size=12, hidden_size=12),
    "lstm-2layers-layer_norm-tied-projected": dict(embedding_size=10, hidden_size=16, num_layers=2, layer_norm=True),
    "gru-untied": dict(cell="gru", embedding_size=8, hidden_size=14, tie_weights=False),
    "mingru-tied": dict(cell="mingru", embedding_size=12, hidden_size=12),
}


def _model(config: dict) -> RecurrentLM:
    torch.manual_seed(0)
    model = RecurrentLM(VOCAB, **config)
    with torch.no_grad():  # a trained model's biases are not zero
        model.decoder.bias.normal_()
    return model.eval()


def _state(model: RecurrentLM, batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    return tuple(torch.randn(model.rnn.num_layers, batch, n, generator=g) for n in model.rnn._state_sizes)


def _feeds(ids: torch.Tensor, state: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return {"ids": ids.numpy(), **{k: s.numpy() for k, s in zip(("h0", "c0"), state, strict=False)}}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sequence_and_step_graphs_match_the_model(name, tmp_path):
    model = _model(CONFIGS[name])
    seq_path, step_path = tmp_path / "lm.onnx", tmp_path / "lm_step.onnx"
    export_text_lm(model, seq_path, example_ids=torch.randint(0, VOCAB, (4, 3)))
    export_text_lm(model, step_path, example_ids=torch.randint(0, VOCAB, (3,)), step=True)
    seq, step = onnx_session(seq_path), onnx_session(step_path)
    for T, B in ((7, 2), (13, 5)):
        ids = torch.randint(0, VOCAB, (T, B), generator=torch.Generator().manual_seed(T))
        state = _state(model, B)
        with torch.no_grad():
            logits, final, _ = model(ids, state if len(state) > 1 else state[0])
        finals = final if isinstance(final, tuple) else (final,)
        got = seq.run(None, _feeds(ids, state))
        for a, b in zip(got, (logits, *finals), strict=True):
            np.testing.assert_allclose(a, b.numpy(), atol=1e-5, rtol=0)
        carried = state
        for t in range(T):
            out = step.run(None, _feeds(ids[t], carried))
            np.testing.assert_allclose(out[0], got[0][t], atol=1e-5, rtol=0)
            carried = tuple(torch.from_numpy(s) for s in out[1:])
        for a, b in zip(carried, got[1:], strict=True):
            np.testing.assert_allclose(a.numpy(), b, atol=1e-5, rtol=0)


def test_train_mode_with_dropout_and_other_models_are_refused(tmp_path):
    model = RecurrentLM(VOCAB, embedding_size=8, hidden_size=8, output_dropout=0.3).train()
    with pytest.raises(OnnxExportError, match=r"\.eval\(\)"):
        export_text_lm(model, tmp_path / "a.onnx")
    with pytest.raises(OnnxExportError, match="RecurrentLM"):
        export_text_lm(TransformerLM(VOCAB, d_model=8, num_layers=1, num_heads=2, context=4), tmp_path / "b.onnx")
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_cli_exports_a_saved_language_model(tmp_path, capsys):
    model = _model(CONFIGS["lstm-tied"])
    rnnkit.save(model, tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--step"]) == 0, capsys.readouterr().err
    assert "step graph of the text language model" in capsys.readouterr().out
    session = onnx_session(tmp_path / "run" / "model_step.onnx")
    assert [i.name for i in session.get_inputs()] == ["ids", "h0", "c0"]
    assert main(["export", str(tmp_path / "run"), "--lengths"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--lengths" in err
    assert not (tmp_path / "run" / "model.onnx").exists()
