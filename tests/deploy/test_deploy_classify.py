"""ONNX export of classification runs (rnnkit.deploy.classify_export, `rnnkit export` on a classify run):
every architecture and an ensemble give the model's class log-probabilities in onnxruntime for padded
batches of cases of different lengths; the CLI writes the file of a trained run with its class names
and agrees with `rnnkit classify predict`; bad requests are refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from _training_helpers import main_captured
from rnnkit.apps.classify.ensemble import ClassifierEnsemble
from rnnkit.apps.classify.model import Classifier
from rnnkit.deploy import OnnxExportError
from rnnkit.deploy.classify_export import example_input, export_classifier
from rnnkit.deploy.onnx_export import onnx_session

pytest.importorskip("onnxruntime")

LENGTH = 9
CLASSES = ["a", "b", "c"]


def _classifier(**kw) -> Classifier:
    torch.manual_seed(0)
    kw = {"hidden": 8, "filters": [4, 4, 4], "mean": [1.0, -2.0], "std": [0.5, 2.0], **kw}
    model = Classifier(2, CLASSES, **kw).eval()
    with torch.no_grad():
        model.head.weight.mul_(30)  # log-probabilities far from uniform, so a wrong graph shows
    return model


CASES = [
    pytest.param({"arch": "rnn", "cell": "lstm", "pooling": "last"}, id="rnn-lstm-last"),
    pytest.param({"arch": "rnn", "cell": "gru", "bidirectional": True, "num_layers": 2, "pooling": "attention"},
                 id="rnn-bigru-attention"),
    pytest.param({"arch": "lstm_fcn"}, id="lstm_fcn"),
    pytest.param({"arch": "mlstm_fcn", "cell": "mingru", "pooling": "mean"}, id="mlstm_fcn-mingru"),
    pytest.param({"arch": "conv_rnn", "pooling": "max"}, id="conv_rnn"),
    pytest.param({"arch": "transformer", "pooling": "mean"}, id="transformer"),
]


def _check_against_model(model, path: Path) -> None:
    session = onnx_session(path)
    for batch, seed in ((1, 11), (6, 12)):
        x, lengths = example_input(model, batch, LENGTH, seed=seed)
        with torch.no_grad():
            want = model(x, lengths)
        if isinstance(model, Classifier):
            want = torch.log_softmax(want, -1)
        (got,) = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
        assert want.std() > 0.2
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("kw", CASES)
def test_graph_equals_the_model(kw, tmp_path: Path):
    model = _classifier(**kw)
    export_classifier(model, tmp_path / "m.onnx", LENGTH)
    _check_against_model(model, tmp_path / "m.onnx")
    props = {p.key: p.value for p in __import__("onnx").load(tmp_path / "m.onnx").metadata_props}
    assert json.loads(props["classes"]) == CLASSES and props["length"] == str(LENGTH)


def test_ensemble(tmp_path: Path):
    model = ClassifierEnsemble(members=2, seed=1, n_dims=2, classes=CLASSES, hidden=8, filters=[4, 4, 4],
                               arch="lstm_fcn").eval()
    with torch.no_grad():
        for net in model.nets:
            net.head.weight.mul_(30)
    export_classifier(model, tmp_path / "m.onnx", LENGTH)
    _check_against_model(model, tmp_path / "m.onnx")


def test_refusals_write_nothing(tmp_path: Path):
    with pytest.raises(OnnxExportError, match="train mode with dropout"):
        export_classifier(Classifier(2, CLASSES, hidden=8, dropout=0.3), tmp_path / "m.onnx", LENGTH)
    with pytest.raises(OnnxExportError, match="length must be"):
        export_classifier(_classifier(), tmp_path / "m.onnx", 0)
    with pytest.raises(OnnxExportError, match="opset"):
        export_classifier(_classifier(), tmp_path / "m.onnx", LENGTH, opset=14)
    with pytest.raises(OnnxExportError, match="classify app's model"):
        export_classifier(torch.nn.Linear(2, 2), tmp_path / "m.onnx", LENGTH)
    assert not list(tmp_path.iterdir())


def test_cli_exports_a_trained_run(tmp_path: Path, capsys):
    from rnnkit.apps.classify.cli import example_csv

    data = example_csv(tmp_path / "data")
    run = tmp_path / "run"
    flags = ["--epochs", "2", "--hidden", "8", "--set", "filters=8,8,8", "--seed", "3", "-q"]
    code, _, err = main_captured(capsys, "classify", "train", "--out", run, "--data", data, *flags)
    assert code == 0, err
    code, out, err = main_captured(capsys, "export", run)
    assert code == 0, err
    assert "logprobs" in out
    for bad in (["--step"], ["--lengths"], ["--length", "0"]):
        code, _, err = main_captured(capsys, "export", run, *bad, "--out", tmp_path / "bad.onnx")
        assert code == 2 and err.count("\n") == 1, (bad, err)
    assert not (tmp_path / "bad.onnx").exists()

    # the file's classes and probabilities agree with `rnnkit classify predict` on the training data
    code, _, err = main_captured(capsys, "classify", "predict", run, "--data", data, "--output", tmp_path / "p.csv",
                                 "-q")
    assert code == 0, err
    predicted = pd.read_csv(tmp_path / "p.csv", dtype={"case_id": str})
    session = onnx_session(run / "model.onnx")
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    length = int(session.get_modelmeta().custom_metadata_map["length"])
    frame = pd.read_csv(data, dtype={"case_id": str})
    value_cols = ["dim_0", "dim_1"]
    for case_id, rows in list(frame.groupby("case_id", sort=False))[:5]:
        values = rows[value_cols].to_numpy(np.float32)
        x = np.zeros((1, length, values.shape[1]), np.float32)
        x[0, : len(values)] = values
        (logp,) = session.run(None, {"x": x, "lengths": np.array([len(values)], np.int64)})
        row = predicted[predicted["case_id"] == case_id].iloc[0]
        assert classes[int(logp[0].argmax())] == row["predicted"]
