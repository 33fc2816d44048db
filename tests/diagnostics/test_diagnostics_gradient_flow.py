"""Gradient flow through time: exact against closed forms and against an independent autograd loop,
on stacked and bidirectional layers and every executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import rnnkit
from rnnkit.cells import CellSpec, register_cell
from rnnkit.diagnostics import DiagnosticsMismatch, gradient_flow, input_influence, trace


@dataclass(frozen=True)
class LinearScalarSpec(CellSpec):
    """h_t = a * h_{t-1} + x_t with a = weight_hh (1 x 1), x_t = weight_ih * input (weight_ih = 1)."""

    name: ClassVar[str] = "linear_scalar_test"
    num_gates: ClassVar[int] = 1

    def gates(self, params, gx_t, state, recurrent_mask=None):
        return {"h": params["weight_hh"][0, 0] * state[0] + gx_t}

    def state_from_gates(self, params, gates, state):
        return (gates["h"],)


register_cell("linear_scalar_test", LinearScalarSpec)


def linear_module(a: float, bidirectional: bool = False) -> rnnkit.Recurrent:
    m = rnnkit.Recurrent("linear_scalar_test", 1, 1, bias=False, bidirectional=bidirectional,
                         dtype=torch.float64)
    with torch.no_grad():
        for d in range(m.num_directions):
            m.layer_params(0, d)["weight_ih"].fill_(1.0)
            m.layer_params(0, d)["weight_hh"].fill_(a)
    return m


@pytest.mark.parametrize("a", [0.9, -0.7, 1.1])
def test_linear_recurrence_follows_a_to_the_power_t_minus_k(a):
    T = 60
    x = torch.randn(T, 1, 1, dtype=torch.float64)
    flow = gradient_flow(linear_module(a), x)  # loss = h_T
    expected = torch.tensor([abs(a) ** (T - k) for k in range(T + 1)], dtype=torch.float64)
    torch.testing.assert_close(flow.norms["h"][0, 0], expected, rtol=1e-6, atol=0)
    assert flow.ratio() == pytest.approx(abs(a) ** T, rel=1e-6)


def test_linear_recurrence_bidirectional_indexing():
    """Loss = sum of the last output = forward h_T + reverse state after x_{T-1} (boundary T-1).
    Reverse boundaries below T-1 are computed *after* it, so their gradient is exactly 0; the reverse
    initial state (boundary T) gets a."""
    T, a = 10, 0.5
    x = torch.randn(T, 3, 1, dtype=torch.float64)
    flow = gradient_flow(linear_module(a, bidirectional=True), x)
    batch = 3**0.5  # the gradient is the same for each of the 3 sequences
    fwd = torch.tensor([a ** (T - k) for k in range(T + 1)], dtype=torch.float64) * batch
    rev = torch.zeros(T + 1, dtype=torch.float64)
    rev[T - 1], rev[T] = batch, a * batch
    torch.testing.assert_close(flow.norms["h"][0, 0], fwd, rtol=1e-6, atol=0)
    torch.testing.assert_close(flow.norms["h"][0, 1], rev, rtol=1e-6, atol=0)


def test_linear_influence_and_horizon():
    """y_T = sum_t a^(T-1-t) x_t, so |dy_T/dx_t| = a^lag and the 1e-2 horizon is ceil(log(1e-2)/log a)."""
    T, a = 80, 0.8
    inf = input_influence(linear_module(a), torch.randn(T, 2, 1, dtype=torch.float64))
    torch.testing.assert_close(inf.by_lag, torch.tensor([a**k for k in range(T)], dtype=torch.float64),
                               rtol=1e-6, atol=0)
    lag, reached = inf.horizon(1e-2)
    assert reached and lag == 21  # 0.8**20 = 0.0115 >= 1e-2 > 0.8**21
    assert input_influence(linear_module(0.999), torch.randn(T, 1, 1, dtype=torch.float64)).horizon() == (T, False)


def manual_elman_grads(m: rnnkit.Recurrent, x: torch.Tensor, w_out: torch.Tensor):
    """Independent computation: an explicit loop, every state a retained tensor, one backward."""
    T, B, _ = x.shape
    D = m.num_directions
    states: dict[tuple[int, int], list[torch.Tensor]] = {}
    inp = x
    for layer in range(m.num_layers):
        outs = []
        for d in range(D):
            p = m.layer_params(layer, d)
            h0 = torch.zeros(B, m.hidden_size, dtype=x.dtype, requires_grad=True)
            seq = [h0]
            out = [None] * T
            order = range(T - 1, -1, -1) if d else range(T)
            for t in order:
                h = torch.tanh(inp[t] @ p["weight_ih"].T + p["bias_ih"] + seq[-1] @ p["weight_hh"].T + p["bias_hh"])
                h.retain_grad()
                seq.append(h)
                out[t] = h
            # boundary order: forward [h0, h1..hT]; reverse [s(x_0..), ..., s(x_{T-1}), initial]
            states[(layer, d)] = seq if d == 0 else [*seq[1:][::-1], seq[0]]
            outs.append(torch.stack(out))
        inp = torch.cat(outs, dim=-1)
    loss = (inp[-1] * w_out).sum()
    loss.backward()
    return {k: torch.stack([s.grad.norm() for s in v]) for k, v in states.items()}, loss


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_random_elman_matches_step_by_step_autograd(backend, bidirectional):
    torch.manual_seed(0)
    T, B, I, H = 12, 3, 4, 5
    m = rnnkit.Recurrent("rnn_tanh", I, H, num_layers=2, bidirectional=bidirectional, backend=backend,
                         dtype=torch.float64)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)  # larger weights: a less trivial gradient profile
    x = torch.randn(T, B, I, dtype=torch.float64)
    w_out = torch.randn(m.output_size, dtype=torch.float64)
    expected, loss = manual_elman_grads(m, x, w_out)
    m.zero_grad(set_to_none=True)

    flow = gradient_flow(m, x, lambda out: (out[0][-1] * w_out).sum())
    assert flow.loss == pytest.approx(float(loss.detach()), rel=1e-12)
    for (layer, d), norms in expected.items():
        torch.testing.assert_close(flow.norms["h"][layer, d], norms, rtol=1e-9, atol=1e-300)
    assert all(p.grad is None for p in m.parameters()), "diagnostics must not touch .grad"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
@pytest.mark.parametrize("backend", ["auto", "reference", "native"])
def test_every_executor_stacked_bidirectional_lengths_batch_first(cell, backend):
    """The replay is checked against the module's own forward on the executor it picks."""
    torch.manual_seed(1)
    m = rnnkit.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, batch_first=True, backend=backend)
    x = torch.randn(2, 9, 3)
    flow = gradient_flow(m, x, lambda out: out[0][:, -1].pow(2).sum(), lengths=torch.tensor([9, 5]))
    assert set(flow.norms) == ({"h", "c"} if cell == "lstm" else {"h"})
    assert flow.norms["h"].shape == (2, 2, 10)
    assert torch.isfinite(flow.norms["h"]).all() and flow.norms["h"].sum() > 0


def test_module_in_training_mode_is_restored_and_unchanged():
    m = rnnkit.Recurrent("lstm", 2, 3, dropout=0.5, num_layers=2)
    m.train()
    gradient_flow(m, torch.randn(5, 2, 2))
    assert m.training
    assert "_run" not in m.__dict__  # the replay is gone


def test_mismatch_between_replay_and_module_is_reported():
    m = rnnkit.Recurrent("gru", 2, 3).eval()
    original = m._run

    def wrong(x, hx, lengths, return_states):
        out, finals, states = original(x, hx, lengths, return_states)
        return out + 1.0, finals, states

    m._run = wrong  # a module whose own forward disagrees with its cell's math
    with pytest.raises(DiagnosticsMismatch), trace(m) as _tape:
        m(torch.randn(4, 1, 2))


def test_unbatched_and_default_loss():
    m = rnnkit.Recurrent("gru", 2, 3)
    flow = gradient_flow(m, torch.randn(6, 2))
    assert flow.norms["h"].shape == (1, 1, 7)
    assert flow.norms["h"][0, 0, -1] == pytest.approx(3**0.5)  # d(sum h_T)/dh_T = ones(3)
