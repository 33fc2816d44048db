"""ONNX export (rnnkit.export_onnx): every exported configuration run in onnxruntime equals the PyTorch
module (outputs and final states) at lengths and batch sizes other than the export example; the step
graph iterated equals the sequence graph; what the export does not compute raises.

Tolerance: 1e-5 against the float32 module. Layer norm over few units amplifies float32 rounding: the
float32 module itself was measured up to 1e-4 from the float64 module on such configurations. Where a
configuration with layer_norm misses 1e-5, the file must be within 5e-5 of the float64 module instead."""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.cells.lstm import LSTMSpec
from rnnkit.cells.registry import cell_names, option_examples

pytest.importorskip("onnx", reason="the deploy extra (onnx) is not installed: pip install 'rnnkit[deploy]'")
pytest.importorskip("onnxruntime", reason="the deploy extra (onnxruntime) is not installed")

from rnnkit.deploy import OnnxExportError, onnx_export, onnx_session

I, H = 5, 6
EXAMPLE = (4, 3)  # (T, B) of the export example
SHAPES = [(7, 2), (13, 5)]  # checked: both differ from the example
TOL = 1e-5
LN_TOL = 5e-5  # against the float64 module, for configurations with layer_norm (module docstring)

# (cell, Recurrent keywords) exported and checked
CASES = [
    ("lstm", {}),
    ("lstm", {"peephole": True}),
    ("lstm", {"num_layers": 2, "bidirectional": True}),
    ("lstm", {"num_layers": 3, "residual": True, "batch_first": True}),
    ("lstm", {"num_layers": 2, "dropout": 0.3}),  # eval: inter-layer dropout is off
    ("gru", {}),
    ("gru", {"num_layers": 2, "bias": False}),
    ("gru", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("rnn_tanh", {"num_layers": 2}),
    ("rnn_relu", {"bidirectional": True}),
    ("rnn_relu", {"num_layers": 2, "batch_first": True}),
    # lowered to ONNX Scan over the family's step
    ("lstm", {"num_layers": 2, "proj_size": 3, "layer_norm": True, "peephole": True, "bidirectional": True}),
    ("lstm", {"num_layers": 2, "zoneout": (0.2, 0.1), "batch_first": True}),
    ("gru", {"layer_norm": True, "num_layers": 2, "residual": True}),
    ("rnn_modrelu", {"num_layers": 2, "bidirectional": True}),
    ("indrnn", {"recurrent_max": 0.9, "nonlinearity": "tanh", "num_layers": 2}),
    ("indrnn", {"bias": False, "zoneout": 0.3}),
    ("mingru", {"num_layers": 2, "bidirectional": True}),
    ("mingru", {"activation": "identity", "num_layers": 2}),
    ("minlstm", {"num_layers": 2, "batch_first": True}),
    ("minlstm", {"activation": "identity", "zoneout": 0.2}),
]


def _ids(case):
    cell, kw = case
    return cell + "".join(f"-{k}={v}" for k, v in kw.items())


def _module(cell: str, kw: dict, seed: int = 0) -> rnnkit.Recurrent:
    torch.manual_seed(seed)
    kw = dict(kw)
    layers = kw.pop("num_layers", 1)
    return rnnkit.Recurrent(cell, I, H, layers, **kw).eval()


def _random_state(m: rnnkit.Recurrent, batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    LD = m.num_layers * m.num_directions
    return tuple(torch.randn(LD, batch, n, generator=g) * 0.5 for n in m._state_sizes)


def _torch_run(m: rnnkit.Recurrent, x: torch.Tensor, state: tuple[torch.Tensor, ...],
               lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
    with torch.no_grad():
        extra = {} if lengths is None else {"lengths": lengths}
        y, final = m(x, state if len(state) > 1 else state[0], **extra)
    return [y, *(final if isinstance(final, tuple) else (final,))]


def _feeds(x: torch.Tensor, state: tuple[torch.Tensor, ...], lengths: torch.Tensor | None = None) -> dict:
    feeds = {"input": x.numpy(), **{k: s.numpy() for k, s in zip(("h0", "c0"), state, strict=False)}}
    if lengths is not None:
        feeds["lengths"] = lengths.numpy()
    return feeds


def _max_errors(got, want) -> list[float]:
    assert len(got) == len(want)
    errors = []
    for a, b in zip(got, want, strict=True):
        assert tuple(a.shape) == tuple(b.shape)
        errors.append(float((torch.from_numpy(a) - b).abs().max()))
    return errors


def _check_close(got, m: rnnkit.Recurrent, x: torch.Tensor, state: tuple[torch.Tensor, ...], what,
                 lengths: torch.Tensor | None = None) -> None:
    """``got`` (onnxruntime's outputs) against the float32 module, or where that module's own rounding
    exceeds the tolerance, against the float64 module (see the module docstring)."""
    errors = _max_errors(got, _torch_run(m, x, state, lengths))
    if max(errors) < TOL:
        return
    assert any(getattr(c, "layer_norm", False) for c in m.cells), (what, errors)
    m64 = copy.deepcopy(m).double()
    exact = _torch_run(m64, x.double(), tuple(s.double() for s in state), lengths)
    to_exact = [float((torch.from_numpy(a).double() - b).abs().max()) for a, b in zip(got, exact, strict=True)]
    assert max(to_exact) < LN_TOL, (what, errors, to_exact)


def _sequence_input(m: rnnkit.Recurrent, T: int, B: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*((B, T) if m.batch_first else (T, B)), I, generator=g)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_sequence_graph_matches_module(case, tmp_path: Path):
    m = _module(*case)
    g = torch.Generator().manual_seed(1)
    path = tmp_path / "seq.onnx"
    rnnkit.export_onnx(m, path, example_input=_sequence_input(m, *EXAMPLE, g))
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["input", "h0", "c0"][: 1 + len(m._state_sizes)]
    assert [o.name for o in session.get_outputs()] == ["output", "h_n", "c_n"][: 1 + len(m._state_sizes)]
    for T, B in SHAPES:
        x, state = _sequence_input(m, T, B, g), _random_state(m, B, g)
        _check_close(session.run(None, _feeds(x, state)), m, x, state, (T, B))


@pytest.mark.parametrize("lowering", ["auto", "scan"])
@pytest.mark.parametrize("case", CASES[1::2], ids=_ids)
def test_lengths_input(case, lowering, tmp_path: Path):
    """lengths=True: forward(..., lengths=)'s semantics (state kept, zeros out past each length) in
    both lowerings, including reverse directions, at two shapes with random lengths in [1, T]."""
    m = _module(*case)
    g = torch.Generator().manual_seed(8)
    rnnkit.export_onnx(m, tmp_path / "len.onnx", lengths=True, lowering=lowering,
                       example_input=_sequence_input(m, *EXAMPLE, g))
    session = onnx_session(tmp_path / "len.onnx")
    for T, B in SHAPES:
        x, state = _sequence_input(m, T, B, g), _random_state(m, B, g)
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[0] = 1
        _check_close(session.run(None, _feeds(x, state, lengths)), m, x, state, (T, B, lengths), lengths)


@pytest.mark.parametrize("case", CASES[:11:2], ids=_ids)
def test_scan_lowering_of_plain_families(case, tmp_path: Path):
    """lowering="scan" writes the plain families' equations too: same results as ONNX's operators."""
    m = _module(*case)
    g = torch.Generator().manual_seed(6)
    auto = rnnkit.export_onnx(m, tmp_path / "auto.onnx")
    assert {n.op_type for n in auto.graph.node} & {"LSTM", "GRU", "RNN"} and "Scan" not in {
        n.op_type for n in auto.graph.node}
    model = rnnkit.export_onnx(m, tmp_path / "scan.onnx", lowering="scan")
    assert {n.op_type for n in model.graph.node} & {"LSTM", "GRU", "RNN"} == set()
    assert "Scan" in {n.op_type for n in model.graph.node}
    x, state = _sequence_input(m, 11, 3, g), _random_state(m, 3, g)
    _check_close(onnx_session(tmp_path / "scan.onnx").run(None, _feeds(x, state)), m, x, state, "scan")


@pytest.mark.parametrize("case", [c for c in CASES if not c[1].get("bidirectional")], ids=_ids)
def test_step_graph_iterated_equals_sequence_graph(case, tmp_path: Path):
    m = _module(*case)
    g = torch.Generator().manual_seed(2)
    rnnkit.export_onnx(m, tmp_path / "seq.onnx")
    rnnkit.export_onnx(m, tmp_path / "step.onnx", step=True, example_input=torch.randn(EXAMPLE[1], I, generator=g))
    seq, step = onnx_session(tmp_path / "seq.onnx"), onnx_session(tmp_path / "step.onnx")
    for T, B in SHAPES:
        x, state = _sequence_input(m, T, B, g), _random_state(m, B, g)
        whole = seq.run(None, _feeds(x, state))
        outs, s = [], state
        for t in range(T):
            x_t = x[:, t] if m.batch_first else x[t]
            y_t, *finals = step.run(None, _feeds(x_t, s))
            outs.append(torch.from_numpy(y_t))
            s = tuple(torch.from_numpy(f) for f in finals)
        stepped = [torch.stack(outs, dim=1 if m.batch_first else 0), *s]
        errors = _max_errors(whole, stepped)
        assert max(errors) < TOL, (T, B, errors)
        _check_close(whole, m, x, state, (T, B))


def test_torch_compatible_classes_and_train_mode_without_masks(tmp_path: Path):
    """rnnkit.LSTM (the torch.nn drop-in) exports; train mode with nothing stochastic is the same graph."""
    torch.manual_seed(0)
    m = rnnkit.LSTM(I, H, num_layers=2)  # training mode, dropout 0
    g = torch.Generator().manual_seed(3)
    rnnkit.export_onnx(m, tmp_path / "lstm.onnx")
    x, state = torch.randn(6, 4, I, generator=g), _random_state(m, 4, g)
    got = onnx_session(tmp_path / "lstm.onnx").run(None, _feeds(x, state))
    assert max(_max_errors(got, _torch_run(m, x, state))) < TOL


def _all_variants():
    for name in cell_names():
        for options in option_examples(name):
            yield name, options


@pytest.mark.parametrize("name,options", list(_all_variants()),
                         ids=[f"{n}-{o}" for n, o in _all_variants()])
def test_every_registered_family_and_option_exports(name, options, tmp_path: Path):
    torch.manual_seed(0)
    m = rnnkit.Recurrent(name, I, H, **options).eval()
    if name not in onnx_export.supported_families():  # a family registered without a lowering here
        with pytest.raises(OnnxExportError, match=f"cell family {name!r}"):
            rnnkit.export_onnx(m, tmp_path / "x.onnx")
        return
    g = torch.Generator().manual_seed(4)
    rnnkit.export_onnx(m, tmp_path / "x.onnx")
    x, state = torch.randn(9, 2, I, generator=g), _random_state(m, 2, g)
    _check_close(onnx_session(tmp_path / "x.onnx").run(None, _feeds(x, state)), m, x, state, options)


@dataclasses.dataclass(frozen=True)
class _SquaredLSTM(LSTMSpec):
    """A user's variant: other equations under an inherited kernel family and torch mode."""

    def gates(self, params, gx_t, state, recurrent_mask=None):
        gates = super().gates(params, gx_t, state, recurrent_mask)
        return {**gates, "c": gates["c"] ** 2}


def test_builtin_families_are_all_supported():
    assert set(onnx_export.supported_families()) >= {
        "gru", "indrnn", "lstm", "mingru", "minlstm", "rnn_modrelu", "rnn_relu", "rnn_tanh"}


def test_a_family_without_a_lowering_raises(tmp_path: Path):
    m = rnnkit.Recurrent(_SquaredLSTM, I, H).eval()
    with pytest.raises(OnnxExportError, match=r"cell family 'lstm' \(_SquaredLSTM\) is not supported"):
        rnnkit.export_onnx(m, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("kw,match", [
    ({"recurrent_dropout": 0.2}, r"training mode.*recurrent_dropout"),
    ({"variational_dropout": 0.2}, r"training mode.*variational_dropout"),
    ({"weight_drop": 0.2}, r"training mode.*weight_drop"),
    ({"num_layers": 2, "dropout": 0.2}, r"training mode.*dropout=0.2.*\.eval\(\)"),
    ({"zoneout": 0.1}, r"training mode.*zoneout"),
])
def test_training_only_configurations_raise(kw, match, tmp_path: Path):
    m = _module("lstm", kw).train()
    with pytest.raises(OnnxExportError, match=match):
        rnnkit.export_onnx(m, tmp_path / "x.onnx")
    rnnkit.export_onnx(m.eval(), tmp_path / "x.onnx")  # eval: off, or zoneout's expectation


def test_other_refusals(tmp_path: Path):
    with pytest.raises(OnnxExportError, match=r"LayerNormalization.*opset >= 17"):
        rnnkit.export_onnx(_module("gru", {"layer_norm": True}), tmp_path / "x.onnx", opset=16)
    with pytest.raises(OnnxExportError, match=r"float32.*float64"):
        rnnkit.export_onnx(_module("lstm", {}).double(), tmp_path / "x.onnx")
    with pytest.raises(OnnxExportError, match="bidirectional"):
        rnnkit.export_onnx(_module("gru", {"bidirectional": True}), tmp_path / "x.onnx", step=True)
    with pytest.raises(OnnxExportError, match="lengths belong to the sequence graph"):
        rnnkit.export_onnx(_module("gru", {}), tmp_path / "x.onnx", step=True, lengths=True)
    with pytest.raises(OnnxExportError, match="lowering must be one of"):
        rnnkit.export_onnx(_module("gru", {}), tmp_path / "x.onnx", lowering="loop")
    with pytest.raises(OnnxExportError, match=r"rnnkit.Recurrent.*Linear"):
        rnnkit.export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    for bad in (5, 13, 999, "17", True):
        with pytest.raises(OnnxExportError, match="unsupported ONNX opset"):
            rnnkit.export_onnx(_module("lstm", {}), tmp_path / "x.onnx", opset=bad)
    with pytest.raises(OnnxExportError, match="3-D"):
        rnnkit.export_onnx(_module("lstm", {}), tmp_path / "x.onnx", example_input=torch.randn(3, I))


@pytest.mark.parametrize("opset", [14, 18, 21])
def test_opsets(opset, tmp_path: Path):
    m = _module("lstm", {"num_layers": 2})
    model = rnnkit.export_onnx(m, tmp_path / "x.onnx", opset=opset, example_input=torch.randn(3, 2, I))
    assert model.opset_import[0].version == opset


def test_example_input_check_catches_a_wrong_graph(tmp_path: Path, monkeypatch):
    """The check ``example_input`` runs can fail: with the GRU's gate blocks left in torch's order the
    graph computes something else, and the export says so."""
    monkeypatch.setitem(onnx_export._GATE_ORDER, "GRU", (0, 1, 2))
    with pytest.raises(OnnxExportError, match="differs from the module"):
        rnnkit.export_onnx(_module("gru", {}), tmp_path / "x.onnx", example_input=torch.randn(5, 2, I))


def test_missing_onnx_is_a_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(OnnxExportError, match=r"rnnkit\[deploy\]"):
        rnnkit.export_onnx(_module("lstm", {}), tmp_path / "x.onnx")


# ---- the CLI: rnnkit export RUN_DIR --format onnx [--step] --out FILE ------------------------------------
def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from rnnkit.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("step", [False, True])
def test_cli_export_runs_in_onnxruntime(step: bool, tmp_path: Path, capsys):
    m = _module("gru", {"num_layers": 2, "batch_first": True})
    rnnkit.save(m, tmp_path / "run")
    out = tmp_path / "g.onnx"
    code, stdout, err = _cli(["export", str(tmp_path / "run"), "--format", "onnx", "--out", str(out)]
                             + (["--step"] if step else []), capsys)
    assert code == 0, err
    assert "wrote" in stdout and "checked in onnxruntime" in stdout
    g = torch.Generator().manual_seed(5)
    x, state = torch.randn(3, 8, I, generator=g), _random_state(m, 3, g)
    whole = _torch_run(m, x, state)
    if step:
        got = onnx_session(out).run(None, _feeds(x[:, 0], state))
        one = _torch_run(m, x[:, :1], state)
        assert max(_max_errors(got, [one[0][:, 0], *one[1:]])) < TOL
    else:
        assert max(_max_errors(onnx_session(out).run(None, _feeds(x, state)), whole)) < TOL


@pytest.mark.parametrize("setup,args,match", [
    ("float64", [], "supports float32 parameters"),
    ("lstm", ["--format", "tflite"], "--format 'tflite' is not available"),
    ("lstm", ["--opset", "3"], "unsupported ONNX opset 3"),
    ("bilstm", ["--step"], "bidirectional"),
    (None, [], "config.json not found"),
])
def test_cli_export_user_errors_are_one_line(setup, args, match, tmp_path: Path, capsys):
    run = tmp_path / "run"
    if setup == "bilstm":
        rnnkit.save(_module("lstm", {"bidirectional": True}), run)
    elif setup == "float64":
        rnnkit.save(_module("gru", {}).double(), run)
    elif setup is not None:
        rnnkit.save(_module(setup, {}), run)
    code, _, err = _cli(["export", str(run), "--out", str(tmp_path / "x.onnx"), *args], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert match in err
    assert not (tmp_path / "x.onnx").exists()


def test_orthogonal_parametrization_exports_its_current_weight(tmp_path: Path):
    m = _module("rnn_modrelu", {"num_layers": 2})
    rnnkit.orthogonal_recurrence(m)
    g = torch.Generator().manual_seed(7)
    rnnkit.export_onnx(m, tmp_path / "o.onnx")
    x, state = torch.randn(12, 3, I, generator=g), _random_state(m, 3, g)
    _check_close(onnx_session(tmp_path / "o.onnx").run(None, _feeds(x, state)), m, x, state, "orthogonal")


def test_cli_without_onnxruntime_is_one_line(tmp_path: Path, capsys, monkeypatch):
    rnnkit.save(_module("gru", {}), tmp_path / "run")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, _, err = _cli(["export", str(tmp_path / "run"), "--out", str(tmp_path / "x.onnx")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "rnnkit[deploy]" in err, err
    assert not (tmp_path / "x.onnx").exists()
