"""rnnkit.save / rnnkit.load: round trips, no unpickling, one-line errors for damaged files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.io import CorruptRunFile, UnknownModel, register_model
from rnnkit.io.atomic import is_temp_file, write_bytes_atomic


@pytest.mark.parametrize("make", [
    lambda: rnnkit.LSTM(3, 5, 2, zoneout=(0.1, 0.2), layer_norm=True),
    lambda: rnnkit.LSTM(3, 5, proj_size=2, bidirectional=True),
    lambda: rnnkit.GRU(3, 4, batch_first=True),
    lambda: rnnkit.RNN(3, 4, nonlinearity="relu"),
    lambda: rnnkit.Recurrent("lstm", 3, 4, 2, peephole=True, forget_bias=1.0, residual=True),
    lambda: rnnkit.LSTMCell(3, 4, peephole=True),
    lambda: rnnkit.GRUCell(3, 4),
    lambda: rnnkit.RNNCell(3, 4, nonlinearity="relu"),
    lambda: rnnkit.GRU(3, 4).double(),
])
def test_layers_round_trip(tmp_path, make):
    torch.manual_seed(0)
    model = make()
    rnnkit.save(model, tmp_path)
    loaded = rnnkit.load(tmp_path)
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and a.dtype == b.dtype and torch.equal(a, b)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_never_unpickles(tmp_path):
    rnnkit.save(rnnkit.GRU(2, 3), tmp_path)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Evil(str(marker)))
    # a pickle under every name a careless loader might try, and as the weights file itself
    for name in ("model.pt", "model.pth", "model.bin", "model.pkl", "checkpoints/last.ckpt"):
        write_bytes_atomic(tmp_path / name, payload)
    rnnkit.load(tmp_path)
    assert not marker.exists()
    write_bytes_atomic(tmp_path / "model.safetensors", payload)
    with pytest.raises(CorruptRunFile, match=r"not a readable safetensors file"):
        rnnkit.load(tmp_path)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: loading it does create the marker
    assert marker.exists()


def test_corrupt_files_one_line_errors(tmp_path, capsys):
    rnnkit.save(rnnkit.LSTM(2, 3), tmp_path)
    good = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CorruptRunFile, match=r"model\.safetensors"):
        rnnkit.load(tmp_path)
    assert main(["adding", "evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.safetensors" in err and "Traceback" not in err

    (tmp_path / "model.safetensors").write_bytes(good)
    cfg = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(cfg[:20])
    with pytest.raises(CorruptRunFile, match="not valid JSON"):
        rnnkit.load(tmp_path)
    assert main(["adding", "evaluate", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1

    spec = json.loads(cfg)
    spec["model"]["name"] = "no_such_model"
    (tmp_path / "config.json").write_text(json.dumps(spec))
    with pytest.raises(UnknownModel, match="no_such_model"):
        rnnkit.load(tmp_path)
    spec["model"]["name"] = "rnnkit.LSTM"
    spec["model"]["config"]["hidden_size"] = 7  # weights no longer fit
    (tmp_path / "config.json").write_text(json.dumps(spec))
    with pytest.raises(CorruptRunFile, match="shape"):
        rnnkit.load(tmp_path)
    with pytest.raises(CorruptRunFile, match="not found"):
        rnnkit.load(tmp_path / "missing")


def test_register_model_from_config(tmp_path):
    @register_model("tests.tiny_head")
    class TinyHead(torch.nn.Module):
        def __init__(self, n: int):
            super().__init__()
            self.n = n
            self.lin = torch.nn.Linear(n, 1)
            self.tied = self.lin  # shared submodule: tensors saved once per name

        def get_config(self):
            return {"n": self.n}

    m = TinyHead(4)
    rnnkit.save(m, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["config"] == {"n": 4}
    assert torch.equal(rnnkit.load(tmp_path).lin.weight, m.lin.weight)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    write_bytes_atomic(target, b"old")


    with pytest.raises(TypeError):
        write_bytes_atomic(target, object())  # fails while writing the temporary file
    assert target.read_bytes() == b"old"
    assert not [p for p in tmp_path.iterdir() if is_temp_file(p)]
