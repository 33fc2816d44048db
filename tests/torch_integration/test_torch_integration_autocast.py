"""CPU autocast (bfloat16) on rnnkit's modules behaves as on torch.nn (issue #24).

torch.nn under ``torch.autocast("cpu", dtype=torch.bfloat16)`` with a float32 input: the LSTM runs
oneDNN's ``mkldnn_rnn_layer`` (on autocast's lower-precision list) and returns bfloat16, the RNN
returns bfloat16, the GRU float32. Before, auto ran fused_cpu for the GRU/RNN and the small-batch
LSTM, which ignores autocast (float32 out). Now rnnkit's C++ kernels refuse autocast, so auto runs
torch's kernels (bit-identical to torch.nn, same dtypes) and, where torch has no kernel (layer norm,
peepholes, zoneout, minGRU), the reference loop, whose operations autocast casts one by one.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.errors import BackendUnavailable

I, H, T = 16, 32, 5
NAMES = ("LSTM", "GRU", "RNN")
BF16 = dict(atol=2e-2, rtol=2e-2)  # the parity tests' tolerance under autocast
EXACT = dict(atol=0, rtol=0)  # the same torch kernels run: equal, not merely close


def _pair(name: str, **kwargs):
    torch.manual_seed(0)
    theirs = getattr(nn, name)(I, H, **kwargs)
    ours = getattr(rnnkit, name)(I, H, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16], ids=["f32-input", "bf16-input"])
@pytest.mark.parametrize("batch", [2, 64], ids=["B2", "B64"])
@pytest.mark.parametrize("kwargs", [{}, dict(num_layers=2, bidirectional=True)], ids=["1", "2bi"])
@pytest.mark.parametrize("name", NAMES)
def test_drop_ins_under_autocast_match_torch(name, kwargs, batch, input_dtype):
    theirs, ours = _pair(name, **kwargs)
    x = torch.randn(T, batch, I).to(input_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, want_state = theirs(x)
        got, got_state = ours(x)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, **EXACT)
    for a, b in zip(torch.utils._pytree.tree_leaves(got_state), torch.utils._pytree.tree_leaves(want_state),
                    strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **EXACT)


@pytest.mark.parametrize("name", NAMES)
def test_training_step_under_autocast_matches_torch(name):
    theirs, ours = _pair(name)
    x = torch.randn(T, 2, I)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, got = theirs(x)[0], ours(x)[0]
    want.float().square().sum().backward()
    got.float().square().sum().backward()
    for (n, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, **BF16, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("LSTMCell", {}), ("GRUCell", {}), ("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}),
     ("GRUCell", {"bias": False})],
)
def test_cells_under_autocast_match_torch(name, kwargs):
    """Plain cells call torch's cell function under autocast (their Python step rounded the GRU's
    gates differently: 1e-3 off)."""
    torch.manual_seed(0)
    theirs = getattr(nn, name)(I, H, **kwargs)
    ours = getattr(rnnkit, name)(I, H, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    for x in (torch.randn(4, I), torch.randn(I)):  # batched and unbatched
        with torch.autocast("cpu", dtype=torch.bfloat16):
            want, got = theirs(x), ours(x)
        for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            torch.testing.assert_close(a, b, **EXACT)


def test_named_compiled_backend_refuses_autocast():
    ours = rnnkit.GRU(I, H, backend="fused_cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(
        BackendUnavailable, match=r"torch\.autocast: its kernels ignore autocast.*'native'"
    ):
        ours(torch.randn(T, 2, I))


@pytest.mark.parametrize(
    "make",
    [lambda: rnnkit.Recurrent("lstm", I, H, layer_norm=True),
     lambda: rnnkit.LSTM(I, H, peephole=True),
     lambda: rnnkit.GRU(I, H, zoneout=0.1).eval(),
     lambda: rnnkit.Recurrent("mingru", I, H)],
    ids=["layer_norm", "peephole", "zoneout", "mingru"],
)
def test_configurations_without_torch_kernel_follow_autocast_in_the_reference(make):
    """No torch.nn equivalent: the reference loop runs, its matrix products in bfloat16 (autocast's
    casts), close to the float32 result; before, the fused kernels ran them in float32."""
    torch.manual_seed(0)
    module = make()
    x = torch.randn(T, 3, I)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plan = module.plan_for(x)
        got = module(x)[0]
    assert {ex.name for per in plan.executors for ex in per} == {"reference"}
    torch.testing.assert_close(got.float(), module(x)[0], atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("kwargs", [{}, dict(num_layers=2, bidirectional=True)], ids=["1", "2bi"])
@pytest.mark.parametrize("name", NAMES)
def test_reference_backend_under_autocast_gives_torch_dtypes(name, kwargs):
    """The reference loop, autocast op by op, returned float32 for the LSTM where torch.nn returns
    bfloat16 (its whole LSTM kernel is on autocast's lower-precision list): the LSTM's loop now
    gets the autocast dtype's input and state, as torch's kernel does."""
    theirs, ours = _pair(name, **kwargs)
    ours.backend = "reference"
    x = torch.randn(T, 3, I)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want, want_state = theirs(x)
        got, got_state = ours(x)
    for a, b in zip(torch.utils._pytree.tree_leaves((got, got_state)),
                    torch.utils._pytree.tree_leaves((want, want_state)), strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **BF16)
