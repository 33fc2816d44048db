"""torch.compile on rnnkit's modules: inference and a training step (forward, backward, optimizer
step) give eager's results (issue #24).

Before: a compiled training step of the LSTM at input 64, hidden 128 (batch x hidden above
``fused_cpu.SMALL_LSTM``, so torch's oneDNN kernel) crashed in AOTAutograd/Inductor
(``mkldnn_rnn_layer``: "expected Tensor()"). torch.nn's modules run outside the graph
(``torch._dynamo.config.allow_rnn = False``); rnnkit's native executor now does the same. The
``aot_eager`` backend exercises the same AOTAutograd path as Inductor, without Inductor's codegen.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import rnnkit

I, H, T = 64, 128, 6
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MAKERS = {
    "LSTM": lambda: rnnkit.LSTM(I, H),
    "GRU": lambda: rnnkit.GRU(I, H),
    "RNN": lambda: rnnkit.RNN(I, H),
    "Recurrent-lstm-layer_norm": lambda: rnnkit.Recurrent("lstm", I, H, layer_norm=True),
}


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad()
    loss = model(x)[0].square().mean()
    loss.backward()
    optimizer.step()
    return loss.detach()


def _check_against_eager(make, backend: str, batch: int, steps: int = 2) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = make()
    compiled_module = copy.deepcopy(eager)
    compiled = torch.compile(compiled_module, backend=backend)
    x = torch.randn(T, batch, I)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)[0], eager(x)[0], atol=1e-5, rtol=1e-5)
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.5)
    opt_c = torch.optim.SGD(compiled_module.parameters(), lr=0.5)
    for _ in range(steps):
        torch.testing.assert_close(_step(compiled, opt_c, x), _step(eager, opt_e, x), atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(eager.named_parameters(), compiled_module.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(
    ("name", "batch"),
    [("LSTM", 4), ("LSTM", 32), ("GRU", 32), ("RNN", 32), ("Recurrent-lstm-layer_norm", 32)],
)
def test_compiled_inference_and_training_step_match_eager(name, batch):
    """The LSTM runs on fused_cpu at batch 4 and on torch's kernel at 32 (batch x hidden > 2048);
    GRU, RNN and the layer-norm LSTM on fused_cpu at any batch."""
    _check_against_eager(MAKERS[name], "aot_eager", batch)


def test_compiled_lstm_training_step_with_inductor():
    """The reported crash, with the default backend (the kernel call stays outside the graph, so
    Inductor compiles only what surrounds it: a few seconds)."""
    _check_against_eager(MAKERS["LSTM"], "inductor", 32)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("batch", [4, 32])
def test_compiled_with_inductor_every_module(name, batch):
    _check_against_eager(MAKERS[name], "inductor", batch)
