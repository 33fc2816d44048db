"""ONNX export of the speech app's CTC models (rnnkit.deploy.speech_export, `rnnkit export` on a speech
run): the sequence graph (samples in, log-probabilities out) equals the model's whole-utterance forward,
the chunk graph iterated over a stream equals it frame by frame, for several cells, both
normalisations, batch sizes and lengths; bad requests are refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _speech_helpers import tone_set
from _training_helpers import main_captured
from rnnkit.apps.speech.model import RecurrentCTC
from rnnkit.deploy import OnnxExportError
from rnnkit.deploy.speech_export import export_speech, run_exported

pytest.importorskip("onnxruntime")


def _model(**kw) -> RecurrentCTC:
    torch.manual_seed(0)
    model = RecurrentCTC(**{"hidden": 16, "layers": 2, "channels": 4, "n_mels": 20, **kw}).eval()
    # statistics and an output layer far from zero, so that the frames differ and the test can fail
    model.set_statistics(torch.linspace(-8, -3, 20), torch.linspace(0.5, 2, 20))
    with torch.no_grad():
        model.out.weight.mul_(20)
    return model


def _audio(batch: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    tone = torch.sin(2 * torch.pi * (200 + 300 * torch.rand(batch, 1, generator=g)) * t)
    return 0.3 * tone + 0.05 * torch.randn(batch, n, generator=g)


CASES = [
    pytest.param({"bidirectional": True}, id="offline-lstm"),
    pytest.param({"bidirectional": True, "cell": "gru", "norm": "utterance"}, id="offline-gru-utterance"),
    pytest.param({"bidirectional": False}, id="stream-lstm"),
    pytest.param({"bidirectional": False, "cell": "mingru"}, id="stream-mingru"),
    pytest.param({"bidirectional": False, "cell": "lstm", "layers": 1}, id="stream-lstm-1-layer"),
]


@pytest.mark.parametrize("kw", CASES)
def test_sequence_graph_equals_the_model(kw, tmp_path: Path):
    model = _model(**kw)
    path = tmp_path / "m.onnx"
    export_speech(model, path, example_samples=_audio(2, 5000, 0))
    for batch, n in ((1, 16000), (3, 7321), (4, 400)):  # lengths and batches the check did not see
        got, want = run_exported(model, str(path), _audio(batch, n, n), step=False)
        assert got.shape == want.shape
        assert want.std() > 0.5  # frames that differ
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("kw", [c for c in CASES if not c.values[0]["bidirectional"]])
def test_chunk_graph_streamed_equals_the_whole_utterance(kw, tmp_path: Path):
    model = _model(**kw)
    path = tmp_path / "chunk.onnx"
    export_speech(model, path, step=True, example_samples=_audio(2, 4000, 0))
    for batch, n in ((1, 16000), (3, 240 + 640 * 7 + 100)):
        got, want = run_exported(model, str(path), _audio(batch, n, n), step=True)
        assert got.shape[1] == (n - 240) // 640  # one frame per whole chunk
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_a_wrong_graph_is_caught_before_writing(tmp_path: Path, monkeypatch):
    import rnnkit.deploy.speech_export as speech_export

    model = _model(bidirectional=True)
    real = speech_export._dft_kernel
    monkeypatch.setattr(speech_export, "_dft_kernel", lambda n, w: real(n, w) * 1.1)
    with pytest.raises(OnnxExportError, match="differ from the model"):
        export_speech(model, tmp_path / "m.onnx", example_samples=_audio(1, 4000, 0))
    assert not (tmp_path / "m.onnx").exists()


def test_refusals(tmp_path: Path):
    with pytest.raises(OnnxExportError, match="streaming model"):
        export_speech(_model(bidirectional=True), tmp_path / "m.onnx", step=True)
    with pytest.raises(OnnxExportError, match="train mode with dropout"):
        export_speech(RecurrentCTC(hidden=8, layers=2, channels=4, n_mels=20, dropout=0.2), tmp_path / "m.onnx")
    with pytest.raises(OnnxExportError, match="RecurrentCTC"):
        export_speech(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


def test_cli_exports_a_trained_run_and_onnxruntime_transcribes(tmp_path: Path, capsys):
    """`rnnkit export` on a run of `rnnkit speech train`: both graphs, and the greedy transcript of the
    sequence graph's output equals the app's."""
    import soundfile as sf

    from rnnkit.apps.speech import SpeechModel
    from rnnkit.deploy.onnx_export import onnx_session

    csv_file = tone_set(tmp_path / "d")
    run = tmp_path / "run"
    flags = ["--threads", "1", "-q", "--seed", "0", "--hidden", "8", "--layers", "1", "--channels", "4",
             "--n-mels", "16", "--batch-size", "4", "--epochs", "2", "--mode", "streaming", "--set", "plots=false"]
    code, _, err = main_captured(capsys, *["speech", "train", str(csv_file), "--out", str(run), *flags])
    assert code == 0, err
    code, out, err = main_captured(capsys, *["export", str(run)])
    assert code == 0, err
    assert "sequence graph" in out and (run / "model.onnx").is_file()
    code, out, err = main_captured(capsys, *["export", str(run), "--step"])
    assert code == 0, err
    assert "chunk graph" in out and (run / "model_step.onnx").is_file()
    code, _, err = main_captured(capsys, *["export", str(run), "--lengths"])
    assert code == 2 and err.count("\n") == 1 and "--lengths" in err

    session = onnx_session(run / "model.onnx")
    alphabet = session.get_modelmeta().custom_metadata_map["alphabet"]
    wave, _ = sf.read(tmp_path / "d" / "u0.wav", dtype="float32")
    (logprobs,) = session.run(None, {"samples": wave[None]})
    best = logprobs[0].argmax(-1)
    text = "".join(alphabet[t - 1] for i, t in enumerate(best) if t != 0 and (i == 0 or t != best[i - 1]))
    assert " ".join(text.split()) == SpeechModel.load(run).transcribe(wave)  # the app normalises white space
    assert np.isfinite(logprobs).all()
