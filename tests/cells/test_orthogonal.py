"""rnnkit.orthogonal_recurrence: W_hh = exp(A - A^T) through torch's parametrization."""

import pytest
import torch

import rnnkit
from rnnkit.layers.orthogonal import rotation_blocks


def _orthogonality_error(w: torch.Tensor) -> float:
    return (w @ w.T - torch.eye(w.shape[0], dtype=w.dtype)).abs().max().item()


def _check_step_equals_forward(m, x: torch.Tensor) -> None:
    """Streaming ``x`` step by step gives ``forward``'s outputs."""
    with torch.no_grad():
        full, _ = m(x)
        s, ys = None, []
        for t in range(x.shape[0]):
            y, s = m.step(x[t], s)
            ys.append(y)
    torch.testing.assert_close(torch.stack(ys), full, atol=1e-6, rtol=1e-5)


def test_rotation_blocks_are_orthogonal_rotations():
    w = rotation_blocks(7, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert _orthogonality_error(w) < 1e-12
    assert torch.linalg.det(w).item() == pytest.approx(1.0)
    assert w[-1, -1] == 1 and w[0, 2:].abs().sum() == 0  # 2x2 blocks on the diagonal, then a 1


@pytest.mark.parametrize("cell", ["rnn_modrelu", "rnn_tanh"])
def test_weights_stay_orthogonal_while_training(cell):
    torch.manual_seed(0)
    m = rnnkit.Recurrent(cell, 3, 6, num_layers=2, bidirectional=True)
    rnnkit.orthogonal_recurrence(m)
    names = ["weight_hh_l0", "weight_hh_l0_reverse", "weight_hh_l1", "weight_hh_l1_reverse"]
    start = {n: getattr(m, n).detach().clone() for n in names}
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(5):
        y, _ = m(torch.randn(7, 2, 3))
        opt.zero_grad()
        (y ** 2).sum().backward()
        opt.step()
    for n in names:
        w = getattr(m, n)
        assert _orthogonality_error(w) < 1e-5, n
        assert not torch.allclose(w, start[n]), n  # it did learn


def test_fused_matches_reference_with_the_parametrized_weight():
    torch.manual_seed(1)
    fused = rnnkit.Recurrent("rnn_modrelu", 4, 5, num_layers=2, dtype=torch.float64)
    rnnkit.orthogonal_recurrence(fused, init="keep")
    ref = rnnkit.Recurrent("rnn_modrelu", 4, 5, num_layers=2, dtype=torch.float64, backend="reference")
    rnnkit.orthogonal_recurrence(ref, init="keep")
    ref.load_state_dict(fused.state_dict())
    assert fused.plan().executors[0][0].name == "fused_cpu"
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    outs = []
    for m in (fused, ref):
        y, h = m(x)
        (y.sum() + h.sum()).backward()
        outs.append((y, {n: p.grad.clone() for n, p in m.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for n, g in outs[0][1].items():
        torch.testing.assert_close(g, outs[1][1][n], msg=n)


def test_step_after_the_weights_change():
    """step() of a parametrized module takes the Python path: it sees every update, including one
    made after it had streamed (and cached a C++ stepper) before the constraint was added."""
    torch.manual_seed(2)
    m = rnnkit.Recurrent("rnn_modrelu", 3, 4).eval()
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        _, s = m.step(x[0])
        m.step(x[1], s)  # the fast lane is set
    rnnkit.orthogonal_recurrence(m)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(2):
        _check_step_equals_forward(m, x)
        y, _ = m(x)
        opt.zero_grad()
        y.sum().backward()
        opt.step()


def test_errors():
    with pytest.raises(ValueError, match="square W_hh"):
        rnnkit.orthogonal_recurrence(rnnkit.Recurrent("lstm", 3, 4))
    with pytest.raises(ValueError, match="init must be one of"):
        rnnkit.orthogonal_recurrence(rnnkit.Recurrent("rnn_tanh", 3, 4), init="henaff")


def test_step_with_a_parametrized_input_weight():
    torch.manual_seed(3)
    m = rnnkit.Recurrent("rnn_modrelu", 4, 4).eval()
    torch.nn.utils.parametrizations.orthogonal(m, "weight_ih_l0")
    _check_step_equals_forward(m, torch.randn(3, 2, 4))
