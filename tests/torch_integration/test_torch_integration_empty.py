"""Empty inputs and zero sizes: rnnkit's drop-ins raise what torch.nn raises (type and message), and
compute what it computes where it accepts them (issue #24).

Before: an input with no time steps (T=0) returned empty outputs and a zero state on every backend,
where torch.nn raises "Expected sequence length to be larger than 0 in RNN".
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit

I, H, B = 4, 6, 3
NAMES = ("RNN", "GRU", "LSTM")


def _outcome(call):
    try:
        return "ok", call()
    except Exception as e:  # the test compares whatever torch raises
        return "raised", e


def _state(name: str, batch: int, layers: int = 1):
    h = torch.zeros(layers, batch, H)
    return (h, torch.zeros(layers, batch, H)) if name == "LSTM" else h


CASES = {
    "T0": lambda name: (dict(), torch.randn(0, B, I), None),
    "T0-unbatched": lambda name: (dict(), torch.randn(0, I), None),
    "T0-batch-first": lambda name: (dict(batch_first=True), torch.randn(B, 0, I), None),
    "T0-with-state": lambda name: (dict(), torch.randn(0, B, I), _state(name, B)),
    "T0-and-wrong-state": lambda name: (dict(), torch.randn(0, B, I), _state(name, B + 1)),
    "T0-and-wrong-input-size": lambda name: (dict(), torch.randn(0, B, I + 1), None),
    "T0-bidirectional-2": lambda name: (dict(num_layers=2, bidirectional=True), torch.randn(0, B, I), None),
    "B0": lambda name: (dict(), torch.randn(5, 0, I), None),
    "B0-with-state": lambda name: (dict(), torch.randn(5, 0, I), _state(name, 0)),
    "B0-batch-first": lambda name: (dict(batch_first=True), torch.randn(0, 5, I), None),
    "T0-B0": lambda name: (dict(), torch.randn(0, 0, I), None),
    "I0-input": lambda name: (dict(), torch.randn(5, B, 0), None),
}


@pytest.mark.parametrize("backend", ["auto", "native", "reference", "fused_cpu"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_empty_inputs_like_torch(name, case, backend):
    kwargs, x, state = CASES[case](name)
    torch.manual_seed(0)
    theirs = getattr(nn, name)(I, H, **kwargs)
    ours = getattr(rnnkit, name)(I, H, backend=backend, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    expected, want = _outcome(lambda: theirs(x, state))
    got, have = _outcome(lambda: ours(x, state))
    if expected == "raised":
        assert got == "raised", f"torch.nn raised {want!r}, rnnkit returned"
        assert type(have) is type(want) and str(have) == str(want)
        return
    assert got == "ok", f"torch.nn accepted, rnnkit raised {have!r}"
    for a, b in zip(torch.utils._pytree.tree_leaves(have), torch.utils._pytree.tree_leaves(want), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("sizes", [(0, H), (I, 0), (0, 0)], ids=["input0", "hidden0", "both0"])
def test_zero_sizes_raise_like_torch(name, sizes):
    expected, want = _outcome(lambda: getattr(nn, name)(*sizes))
    got, have = _outcome(lambda: getattr(rnnkit, name)(*sizes))
    assert expected == got == "raised"
    assert type(have) is type(want) and str(have) == str(want)


def test_recurrent_refuses_an_empty_sequence_like_the_drop_ins():
    with pytest.raises(RuntimeError, match=r"^Expected sequence length to be larger than 0 in RNN$"):
        rnnkit.Recurrent("lstm", I, H, layer_norm=True)(torch.randn(0, B, I))
