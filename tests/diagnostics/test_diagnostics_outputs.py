"""Gate statistics, spectra, plots, the recorder and the demo (whose numbers must match theory)."""

from __future__ import annotations

import json

import pytest
import torch

import rnnkit
from rnnkit.diagnostics import (
    GradientFlowRecorder,
    gate_statistics,
    recurrent_spectrum,
    run_demo,
)
from rnnkit.diagnostics.__main__ import main
from rnnkit.diagnostics.demo import AddingModel
from rnnkit.diagnostics.gates import gate_activations, summarize_gate
from rnnkit.tasks import adding_batch


# ---- gates ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,options", [("lstm", {}), ("lstm", {"peephole": True, "layer_norm": True}),
                                          ("gru", {}), ("gru", {"layer_norm": True})])
def test_gate_activations_rebuild_the_cell_step(cell, options):
    torch.manual_seed(0)
    m = rnnkit.Recurrent(cell, 3, 4, **options)
    spec, p = m.cells[0], m.layer_params(0)
    gx = spec.project_input(p, torch.randn(2, 3))
    state = tuple(torch.randn(2, n) for n in spec.state_sizes())
    g = gate_activations(spec, p, gx, state)
    new = spec.step(p, gx, state)
    if cell == "lstm":
        torch.testing.assert_close(g["f"] * state[1] + g["i"] * g["g"], new[1])
        torch.testing.assert_close(g["o"] * g["tanh_c"], new[0])
    else:
        torch.testing.assert_close((1 - g["z"]) * g["n"] + g["z"] * state[0], new[0])


def test_saturation_thresholds():
    s = summarize_gate("sigmoid", torch.tensor([0.01, 0.04, 0.5, 0.96, 0.99, 0.3, 0.05, 0.95]))
    assert (s.low, s.high) == (2 / 8, 2 / 8)
    t = summarize_gate("tanh", torch.tensor([-0.99, -0.5, 0.0, 0.951, 0.95]))
    assert (t.low, t.high) == (1 / 5, 1 / 5)
    assert summarize_gate("relu", torch.tensor([0.0, 0.0, 1.0, 2.0])).saturated == 0.5
    assert sum(s.histogram) == 8


def test_gate_statistics_see_forget_bias_and_large_weights():
    x = torch.randn(20, 4, 3)
    lstm = rnnkit.Recurrent("lstm", 3, 8, forget_bias=10.0, num_layers=2, bidirectional=True)
    stats = gate_statistics(lstm, x)
    assert len(stats.layers) == 2 and len(stats.layers[0]) == 2
    assert all(per_dir["f"].high == 1.0 for layer in stats.layers for per_dir in layer)
    elman = rnnkit.Recurrent("rnn_tanh", 3, 8)
    calm = gate_statistics(elman, x).layers[0][0]["h"].saturated
    with torch.no_grad():
        elman.weight_ih_l0.mul_(100)
    assert calm < 0.2 < 0.8 < gate_statistics(elman, x).layers[0][0]["h"].saturated


def test_gate_statistics_ignore_padding():
    m = rnnkit.Recurrent("gru", 2, 3)
    x = torch.randn(6, 2, 2)
    x[3:, 1] = 1e6  # padding: would saturate everything if counted
    stats = gate_statistics(m, x, lengths=torch.tensor([6, 3]))
    assert stats.layers[0][0]["n"].saturated < 0.5
    assert sum(stats.layers[0][0]["n"].histogram) == (6 + 3) * 3


# ---- spectrum ---------------------------------------------------------------------------------------
def test_spectrum_per_gate_block():
    m = rnnkit.Recurrent("gru", 2, 3)
    blocks = [torch.diag(torch.tensor(v)) for v in ([0.5, 0.2, 0.1], [2.0, -3.0, 1.0], [0.0, 0.0, 0.7])]
    with torch.no_grad():
        m.weight_hh_l0.copy_(torch.cat(blocks))
    spec = recurrent_spectrum(m, k=2)
    assert [b.gate for b in spec] == ["r", "z", "n"]
    assert spec[1].singular_values == pytest.approx([3.0, 2.0])
    assert [b.spectral_radius for b in spec] == pytest.approx([0.5, 3.0, 0.7])
    rot = torch.tensor([[0.0, -2.0], [2.0, 0.0]])  # radius 2 with complex eigenvalues
    e = rnnkit.Recurrent("rnn_tanh", 1, 2, bidirectional=True)
    with torch.no_grad():
        e.weight_hh_l0_reverse.copy_(rot)
    assert recurrent_spectrum(e)[1].spectral_radius == pytest.approx(2.0)


# ---- recorder ---------------------------------------------------------------------------------------
def test_recorder_writes_jsonl_and_pngs_atomically(tmp_path):
    torch.manual_seed(0)
    model = AddingModel("lstm", 8)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = GradientFlowRecorder(2, tmp_path / "diag")
    records = []
    for step in range(4):
        x, y = adding_batch(12, 4)
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        records.append(rec.on_train_step(model, (x, y), step))
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
        assert model.training and model.rnn.training
        opt.step()
    assert records[1] is None and records[3] is None
    lines = (tmp_path / "diag" / "diagnostics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 2]
    first = json.loads(lines[0])
    assert len(first["gradient_flow"]["norms"]["h"][0][0]) == 13
    assert len(first["gradient_flow"]["norms"]["c"][0][0]) == 13
    assert len(first["influence"]["by_lag"]) == 12
    assert {r["gate"] for r in first["gates"]} == {"i", "f", "g", "o", "tanh_c"}
    assert len(first["spectrum"]) == 4
    names = sorted(p.name for p in (tmp_path / "diag").iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    for step in (0, 2):
        for kind in ("gradient_flow", "influence", "gates"):
            png = tmp_path / "diag" / f"{kind}_step{step:07d}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="every_n_steps"):
        GradientFlowRecorder(0, tmp_path)


# ---- demo: theory, clipping, plots --------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo")
    try:
        return out, run_demo(out, quick=True, log=None)
    finally:
        torch.set_num_threads(threads)


def test_demo_at_init_shows_vanishing_gradients_and_chrono_memory(demo):
    """T=200, H=64, loss on the last output: Elman and torch-init LSTM lose the gradient (ratio below
    1e-20, fp32 underflow territory), the chrono-initialised LSTM keeps it above 1e-4."""
    _, r = demo
    assert (r["T"], r["hidden_size"]) == (200, 64)
    init = r["init"]
    assert init["elman"]["grad_ratio"] < 1e-20
    assert init["lstm"]["grad_ratio"] < 1e-20
    assert init["lstm_chrono"]["grad_ratio"] > 1e-4
    assert not init["lstm_chrono"]["horizon_reached"]  # remembers the whole sequence
    assert init["elman"]["horizon_reached"] and init["elman"]["horizon"] < 50
    assert init["lstm_chrono"]["saturation"]["f"] > 0.9  # forget gates open: the memory


def test_demo_exploding_gradient_and_clipping_bound_the_update(demo):
    _, r = demo
    e = r["exploding"]
    assert e["grad_ratio"] > 10  # the gradient grows going back in time
    free, clipped = e["without_clipping"], e["with_clipping"]
    assert free["grad_norm_before_clip"] > 100 and clipped["grad_norm_before_clip"] > 100
    assert free["update_norm"] == pytest.approx(free["lr"] * free["grad_norm_before_clip"], rel=1e-3)
    assert clipped["update_norm"] <= clipped["lr"] * clipped["max_norm"] * (1 + 1e-4)


def test_demo_writes_plots_and_summary(demo):
    out, r = demo
    for name in ("gradient_flow_init.png", "gradient_flow_trained.png", "influence_init.png",
                 "gates_init.png", "gradient_flow_exploding.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init"]["lstm_chrono"]["grad_ratio"] == pytest.approx(r["init"]["lstm_chrono"]["grad_ratio"])
    assert set(summary["trained"]) == {"elman", "lstm", "lstm_chrono", "gru", "mingru"}


def test_cli_passes_arguments(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("rnnkit.diagnostics.__main__.run_demo", lambda out, quick, seed: seen.update(
        out=out, quick=quick, seed=seed))
    assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    assert seen == {"out": str(tmp_path), "quick": True, "seed": 0}
    with pytest.raises(SystemExit):
        main(["demo"])
