"""torch.export archives (rnnkit.deploy.export_pt2, `rnnkit export --format pt2`): the saved program,
loaded back, equals the module at lengths and batch sizes other than the example, states included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.deploy import OnnxExportError, export_pt2

I, H = 4, 6


@pytest.mark.parametrize("cell,kw", [
    ("lstm", {"layer_norm": True, "num_layers": 2}),
    ("gru", {"bidirectional": True, "batch_first": True}),
    ("mingru", {"num_layers": 2}),
    ("rnn_modrelu", {}),
], ids=["lstm-ln", "gru-bi-bf", "mingru", "modrelu"])
def test_saved_program_matches_module(cell, kw, tmp_path: Path):
    torch.manual_seed(0)
    kw = dict(kw)
    m = rnnkit.Recurrent(cell, I, H, kw.pop("num_layers", 1), **kw).eval()
    export_pt2(m, tmp_path / "m.pt2")
    program = torch.export.load(tmp_path / "m.pt2").module()
    g = torch.Generator().manual_seed(3)
    for T, B in [(9, 2), (3, 6), (1, 1)]:  # the traced example is (5, 3)
        x = torch.randn(*((B, T) if m.batch_first else (T, B)), I, generator=g)
        state = tuple(torch.randn(m.num_layers * m.num_directions, B, n, generator=g) for n in m._state_sizes)
        arg = state if len(state) > 1 else state[0]
        with torch.no_grad():
            y, final = m(x, arg)
            y2, final2 = program(x, arg)
        torch.testing.assert_close(y2, y, rtol=0, atol=1e-5)
        for a, b in zip(final2 if isinstance(final2, tuple) else (final2,),
                        final if isinstance(final, tuple) else (final,), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_training_only_configuration_raises(tmp_path: Path):
    m = rnnkit.Recurrent("lstm", I, H, recurrent_dropout=0.3)  # training mode
    with pytest.raises(OnnxExportError, match=r"training mode.*recurrent_dropout"):
        export_pt2(m, tmp_path / "m.pt2")
    with pytest.raises(OnnxExportError, match=r"rnnkit.Recurrent"):
        export_pt2(torch.nn.Linear(2, 2), tmp_path / "m.pt2")


def test_cli_pt2(tmp_path: Path, capsys):
    from rnnkit.cli import main

    torch.manual_seed(0)
    m = rnnkit.Recurrent("indrnn", I, H, 2, zoneout=0.1).eval()
    rnnkit.save(m, tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--format", "pt2"]) == 0, capsys.readouterr().err
    program = torch.export.load(tmp_path / "run" / "model.pt2").module()
    x = torch.randn(6, 5, I)
    h0 = torch.randn(2, 5, H)
    with torch.no_grad():
        torch.testing.assert_close(program(x, h0)[0], m(x, h0)[0], rtol=0, atol=1e-5)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--format", "pt2", "--step"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--step applies to --format onnx" in err


def test_program_runs_in_a_new_process_before_the_extension_loads(tmp_path: Path):
    """A new process that imports rnnkit and loads the archive has the operators' schemas but not yet
    their C++ kernels: the first call loads the extension (the Python stand-in kernel) and equals the
    module; the same call with a tensor that requires grad is refused instead of losing its gradient."""
    import subprocess
    import sys

    torch.manual_seed(0)
    m = rnnkit.Recurrent("gru", I, H, layer_norm=True).eval()
    export_pt2(m, tmp_path / "m.pt2")
    x, h0 = torch.randn(7, 2, I), torch.randn(1, 2, H)
    with torch.no_grad():
        y, _ = m(x, h0)
    torch.save({"x": x, "h0": h0, "y": y}, tmp_path / "io.pt")
    script = f"""
import torch, rnnkit
io = torch.load({str(tmp_path / 'io.pt')!r})
program = torch.export.load({str(tmp_path / 'm.pt2')!r}).module()
x = io["x"].requires_grad_()
try:
    program(x, io["h0"])
    print("not refused")
except RuntimeError as e:
    assert "before rnnkit's fused_cpu extension was loaded" in str(e), e
y, _ = program(io["x"], io["h0"])
torch.testing.assert_close(y, io["y"], rtol=0, atol=1e-6)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok"], out.stdout
