"""``rnnkit.explain(module, *example_inputs)`` names the executors that run that call (issue #24).

A recorder wraps every registered executor's ``run`` and the native ``run_stack`` and notes which
ran, for many shapes and settings: batch sizes around ``fused_cpu.SMALL_LSTM`` (where auto switches
the plain LSTM between fused_cpu and oneDNN), train/eval, dropout, zoneout, layer norm,
bidirectional, float64, lengths, per-step states, named backends, autocast. explain's plan must name
exactly the executors that ran, in order, every time.

Before: explain took no input, so for a small batch it said ``native`` where ``fused_cpu`` ran.
"""

from __future__ import annotations

import contextlib
import itertools

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.executors import dispatch
from rnnkit.executors.fused_cpu import SMALL_LSTM
from rnnkit.executors.native import NativeExecutor
from rnnkit.explain import call_plans
from rnnkit.layers.recurrent import ExecutionPlan

I, H, T = 8, 64, 3
THRESHOLD_BATCH = SMALL_LSTM // H  # the largest batch at which auto runs a plain LSTM on fused_cpu


@contextlib.contextmanager
def recording(monkeypatch):
    """Yields a list that collects the name of each executor a forward runs (outermost calls only:
    native's ``run`` goes through its ``run_stack``)."""
    ran: list[str] = []
    depth = [0]

    def wrap(executor, method: str, label: str):
        original = getattr(executor, method)

        def recorded(*args, **kwargs):
            if depth[0] == 0:
                ran.append(label)
            depth[0] += 1
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(executor, method, recorded)

    for name in dispatch.backend_names():
        executor = dispatch.get_executor(name)
        wrap(executor, "run", name)
        if isinstance(executor, NativeExecutor):
            wrap(executor, "run_stack", "native (whole stack)")
    yield ran


def _expected(plan: ExecutionPlan) -> list[str]:
    if plan.whole_stack:
        return ["native (whole stack)"]
    return [ex.name for per_direction in plan.executors for ex in per_direction]


CELLS = {
    "lstm": dict(cell="lstm"),
    "gru": dict(cell="gru"),
    "rnn_tanh": dict(cell="rnn_tanh"),
    "lstm-layer_norm": dict(cell="lstm", layer_norm=True),
    "gru-layer_norm": dict(cell="gru", layer_norm=True),
    "mingru": dict(cell="mingru"),
}
OPTIONS = {
    "plain": {},
    "bidirectional-2": dict(num_layers=2, bidirectional=True),
    "dropout-2": dict(num_layers=2, dropout=0.3),
    "zoneout": dict(zoneout=0.2),
    "recurrent_dropout": dict(recurrent_dropout=0.2),
    "variational_dropout": dict(variational_dropout=0.2),
    "weight_drop": dict(weight_drop=0.2),
    "residual-2": dict(num_layers=2, residual=True),
}
BATCHES = (1, THRESHOLD_BATCH - 1, THRESHOLD_BATCH, THRESHOLD_BATCH + 1)
CALLS = {
    "float32": {},
    "float64": dict(dtype=torch.float64),
    "lengths": dict(lengths=True),
    "return_states": dict(return_states=True),
    "unbatched": dict(unbatched=True),
}


def _cases():
    """Every cell x option x mode at each batch around the threshold, plus call variants (dtype,
    lengths, per-step states, unbatched) and named backends on a subset."""
    for cell, option, training, batch in itertools.product(CELLS, OPTIONS, (True, False), BATCHES):
        if cell == "mingru" and option in ("recurrent_dropout", "weight_drop"):
            continue  # refused: the cell has no weight_hh
        yield cell, option, training, batch, "float32", "auto"
    for cell, call, batch in itertools.product(("lstm", "gru", "lstm-layer_norm"), CALLS, (2, THRESHOLD_BATCH + 1)):
        yield cell, "bidirectional-2", False, batch, call, "auto"
    for cell, backend in itertools.product(("lstm", "gru"), ("reference", "fused_cpu", "native")):
        yield cell, "plain", True, 4, "float32", backend


def _module(cell: str, option: str, training: bool, call: str, backend: str) -> rnnkit.Recurrent:
    kwargs = dict(CELLS[cell])
    kwargs.update(OPTIONS[option])
    dtype = CALLS[call].get("dtype", torch.float32)
    module = rnnkit.Recurrent(kwargs.pop("cell"), I, H, backend=backend, dtype=dtype, **kwargs)
    return module.train(training)


def _arguments(call: str, batch: int, dtype: torch.dtype) -> tuple[tuple, dict]:
    spec = CALLS[call]
    if spec.get("unbatched"):
        return (torch.randn(T, I, dtype=dtype),), {}
    x = torch.randn(T, batch, I, dtype=dtype)
    kwargs: dict = {}
    if spec.get("lengths"):
        kwargs["lengths"] = torch.randint(1, T + 1, (batch,))
    if spec.get("return_states"):
        kwargs["return_states"] = True
    return (x,), kwargs


CASES = list(_cases())


def test_the_cases_cross_the_thresholds_and_reach_every_executor(monkeypatch):
    """The grid is worth its time: it runs every executor auto can choose on CPU, and the plain
    LSTM on both sides of SMALL_LSTM."""
    seen: set[str] = set()
    for case in CASES:
        module = _module(*case[:3], case[4], case[5])
        args, kwargs = _arguments(case[4], case[3], module.weight_ih_l0.dtype)
        seen.update(_expected(module.plan_for(*args, **kwargs)))
    assert {"fused_cpu", "native (whole stack)", "reference", "scan", "native"} <= seen
    assert len(CASES) >= 400


@pytest.mark.parametrize("chunk", range(4))
def test_explain_names_the_executors_that_ran(monkeypatch, chunk):
    torch.manual_seed(0)
    disagreements = []
    with recording(monkeypatch) as ran:
        for case in CASES[chunk::4]:
            cell, option, training, batch, call, backend = case
            module = _module(cell, option, training, call, backend)
            args, kwargs = _arguments(call, batch, module.weight_ih_l0.dtype)
            (_, plan), = call_plans(module, *args, **kwargs)
            ran.clear()
            module(*args, **kwargs)
            if ran != _expected(plan):
                disagreements.append((case, _expected(plan), list(ran)))
    assert not disagreements, disagreements[:5]


@pytest.mark.parametrize("make", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
@pytest.mark.parametrize("batch", [2, THRESHOLD_BATCH + 1])
def test_drop_ins_under_autocast_and_tracing(monkeypatch, make, batch):
    """The transforms active at the call change the plan too: under autocast and jit.trace, auto
    runs torch's kernels."""
    module = make(I, H, 2, bidirectional=True).eval()
    x = torch.randn(T, batch, I)
    with recording(monkeypatch) as ran:
        for context in (torch.autocast("cpu", dtype=torch.bfloat16), contextlib.nullcontext()):
            with context:
                (_, plan), = call_plans(module, x)
                ran.clear()
                module(x)
            assert ran == _expected(plan)


class TwoLayers(nn.Module):
    """A model with two rnnkit layers of different batch-dependent plans and a batch norm."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = rnnkit.LSTM(I, H, batch_first=True)
        self.norm = nn.BatchNorm1d(H)
        self.decoder = rnnkit.GRU(H, H, layer_norm=True, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.encoder(x)
        y = self.norm(y.transpose(1, 2)).transpose(1, 2)
        return self.decoder(y, hx=None)[0]


def test_explain_of_a_model_reports_each_layer_call_without_side_effects(monkeypatch):
    torch.manual_seed(0)
    model = TwoLayers()
    x = torch.randn(2, T, I)  # batch 2: the encoder's LSTM runs on fused_cpu, not oneDNN
    stats = model.norm.running_mean.clone()
    rng = torch.get_rng_state()
    report = rnnkit.explain(model, x)
    assert torch.equal(model.norm.running_mean, stats) and torch.equal(torch.get_rng_state(), rng)
    lines = report.splitlines()
    assert lines[0].startswith("encoder (lstm, training") and "fused_cpu" in lines[1], report
    assert any(line.startswith("decoder (gru") for line in lines), report
    # without the input, explain cannot know the batch and says oneDNN: the complaint
    assert "all 1 layer(s) in one call to native" in rnnkit.explain(model).splitlines()[0]
    expected = [name for _, plan in call_plans(model, x) for name in _expected(plan)]
    with recording(monkeypatch) as ran:
        model(x)
    assert ran == expected == ["fused_cpu", "fused_cpu"]
