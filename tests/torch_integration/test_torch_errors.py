"""Bad arguments and shapes: rnnkit's drop-ins raise what torch.nn raises (same type, same message).

Each case is a function of a namespace holding ``RNN``, ``LSTM``, ``GRU`` and the cells: it runs once
with ``torch.nn`` to get the expected exception (so the test follows the installed torch) and once
with rnnkit's drop-ins, on each backend. Then rnnkit's own options, which torch.nn does not have,
must fail with messages that name the option and what to do.
"""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.errors import BackendUnavailable, UserError

T, B, I, H, P = 5, 3, 4, 6, 2
LENGTHS = torch.tensor([5, 3, 2])  # sorted: torch checks the state of a sorted PackedSequence


def _ours(backend: str) -> types.SimpleNamespace:
    layers = {name: functools.partial(getattr(rnnkit, name), backend=backend)
              for name in ("RNN", "LSTM", "GRU")}
    cells = {name: getattr(rnnkit, name) for name in ("RNNCell", "LSTMCell", "GRUCell")}
    return types.SimpleNamespace(**layers, **cells)


def _x(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype)


def _z(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape)


def _packed(features: int = I, dtype: torch.dtype = torch.float32):
    return pack_padded_sequence(_x(T, B, features, dtype=dtype), LENGTHS)


Case = Callable[[types.SimpleNamespace], object]

# ---- sequence layers: forward ------------------------------------------------------------------
FORWARD_CASES: dict[str, Case] = {}
for _name in ("RNN", "GRU", "LSTM"):
    _lstm = _name == "LSTM"

    def _state(*shape, lstm=_lstm):
        """A state of ``shape`` for RNN/GRU; for the LSTM, (h of that shape, c of the right one)."""
        if not lstm:
            return _z(*shape)
        c_shape = (*shape[:-1], H)
        return (_z(*shape), _z(*c_shape))

    FORWARD_CASES |= {
        f"{_name}-input-1d": lambda m, n=_name: getattr(m, n)(I, H)(_x(I)),
        f"{_name}-input-4d": lambda m, n=_name: getattr(m, n)(I, H)(_x(2, T, B, I)),
        f"{_name}-input-size": lambda m, n=_name: getattr(m, n)(I, H)(_x(T, B, I + 1)),
        f"{_name}-input-size-unbatched": lambda m, n=_name: getattr(m, n)(I, H)(_x(T, I - 1)),
        f"{_name}-input-size-batch-first": lambda m, n=_name: getattr(m, n)(
            I, H, batch_first=True)(_x(B, T, I + 2)),
        f"{_name}-dtype-float64": lambda m, n=_name: getattr(m, n)(I, H)(_x(T, B, I, dtype=torch.float64)),
        f"{_name}-dtype-float64-unbatched": lambda m, n=_name: getattr(m, n)(I, H, 2)(
            _x(T, I, dtype=torch.float64)),
        f"{_name}-state-num-layers": lambda m, n=_name, s=_state: getattr(m, n)(I, H, 2)(
            _x(T, B, I), s(1, B, H)),
        f"{_name}-state-num-directions": lambda m, n=_name, s=_state: getattr(m, n)(
            I, H, 2, bidirectional=True)(_x(T, B, I), s(2, B, H)),
        f"{_name}-state-batch": lambda m, n=_name, s=_state: getattr(m, n)(I, H)(
            _x(T, B, I), s(1, B + 1, H)),
        f"{_name}-state-batch-batch-first": lambda m, n=_name, s=_state: getattr(m, n)(
            I, H, batch_first=True)(_x(B, T, I), s(1, T, H)),
        f"{_name}-state-hidden-size": lambda m, n=_name, s=_state: getattr(m, n)(I, H)(
            _x(T, B, I), s(1, B, H + 1)),
        f"{_name}-state-unbatched-size": lambda m, n=_name, s=_state: getattr(m, n)(I, H, 3)(
            _x(T, I), s(3, H - 1)),
        f"{_name}-state-unbatched-layers": lambda m, n=_name, s=_state: getattr(m, n)(I, H, 3)(
            _x(T, I), s(2, H)),
        f"{_name}-state-3d-for-unbatched": lambda m, n=_name, s=_state: getattr(m, n)(I, H)(
            _x(T, I), s(1, 1, H)),
        f"{_name}-state-2d-for-batched": lambda m, n=_name, s=_state: getattr(m, n)(I, H)(
            _x(T, B, I), s(1, H)),
        f"{_name}-state-4d-for-batched": lambda m, n=_name, s=_state: getattr(m, n)(I, H)(
            _x(T, B, I), s(1, 1, B, H)),
    }

FORWARD_CASES |= {
    # the LSTM's two state components, each wrong on its own
    "LSTM-c-num-layers": lambda m: m.LSTM(I, H, 2)(_x(T, B, I), (_z(2, B, H), _z(1, B, H))),
    "LSTM-c-batch": lambda m: m.LSTM(I, H)(_x(T, B, I), (_z(1, B, H), _z(1, B - 1, H))),
    "LSTM-c-hidden-size": lambda m: m.LSTM(I, H)(_x(T, B, I), (_z(1, B, H), _z(1, B, H + 1))),
    "LSTM-c-2d-for-batched": lambda m: m.LSTM(I, H)(_x(T, B, I), (_z(1, B, H), _z(B, H))),
    "LSTM-c-3d-for-unbatched": lambda m: m.LSTM(I, H)(_x(T, I), (_z(1, H), _z(1, 1, H))),
    "LSTM-c-unbatched-size": lambda m: m.LSTM(I, H)(_x(T, I), (_z(1, H), _z(1, H - 1))),
    # with a projection, h has proj_size features and c has hidden_size
    "LSTM-proj-h-has-hidden-size": lambda m: m.LSTM(I, H, proj_size=P)(
        _x(T, B, I), (_z(1, B, H), _z(1, B, H))),
    "LSTM-proj-c-has-proj-size": lambda m: m.LSTM(I, H, proj_size=P)(
        _x(T, B, I), (_z(1, B, P), _z(1, B, P))),
    "LSTM-proj-unbatched-h": lambda m: m.LSTM(I, H, 2, proj_size=P, bidirectional=True)(
        _x(T, I), (_z(4, H), _z(4, H))),
    "LSTM-proj-bidirectional-layers": lambda m: m.LSTM(I, H, 2, proj_size=P, bidirectional=True)(
        _x(T, B, I), (_z(2, B, P), _z(4, B, H))),
    # PackedSequence (torch checks the RNN's and the GRU's input and state; its LSTM does not)
    "RNN-packed-input-size": lambda m: m.RNN(I, H)(_packed(I + 1)),
    "GRU-packed-input-size": lambda m: m.GRU(I, H)(_packed(I - 1)),
    "RNN-packed-dtype": lambda m: m.RNN(I, H)(_packed(dtype=torch.float64)),
    "GRU-packed-dtype": lambda m: m.GRU(I, H, 2)(_packed(dtype=torch.float64)),
    "RNN-packed-state-batch": lambda m: m.RNN(I, H)(_packed(), _z(1, B + 1, H)),
    "GRU-packed-state-layers": lambda m: m.GRU(I, H, 2, bidirectional=True)(_packed(), _z(2, B, H)),
    "GRU-packed-state-hidden-size": lambda m: m.GRU(I, H)(_packed(), _z(1, B, H + 2)),
    "RNN-relu-input-size": lambda m: m.RNN(I, H, nonlinearity="relu")(_x(T, B, I + 1)),
    "RNN-relu-state": lambda m: m.RNN(I, H, 1, "relu")(_x(T, B, I), _z(1, B, H - 1)),
}

# ---- sequence layers: constructor --------------------------------------------------------------
CONSTRUCTOR_CASES: dict[str, Case] = {}
for _name in ("RNN", "GRU", "LSTM"):
    CONSTRUCTOR_CASES |= {
        f"{_name}-{label}": lambda m, n=_name, a=args, k=kwargs: getattr(m, n)(*a, **k)
        for label, args, kwargs in [
            ("dropout-above-1", (I, H, 2), {"dropout": 1.5}),
            ("dropout-negative", (I, H, 2), {"dropout": -0.1}),
            ("dropout-bool", (I, H, 2), {"dropout": True}),
            ("dropout-string", (I, H, 2), {"dropout": "0.5"}),
            ("hidden-size-0", (I, 0), {}),
            ("hidden-size-negative", (I, -3), {}),
            ("hidden-size-float", (I, 4.0), {}),
            ("num-layers-0", (I, H, 0), {}),
            ("num-layers-negative", (I, H), {"num_layers": -1}),
            ("input-size-0", (0, H), {}),
            ("input-size-float", (4.0, H), {}),
            ("bias-not-bool", (I, H), {"bias": 1}),
            ("batch-first-not-bool", (I, H), {"batch_first": None}),
        ]
    }
CONSTRUCTOR_CASES |= {
    "LSTM-proj-size-negative": lambda m: m.LSTM(I, H, proj_size=-1),
    "LSTM-proj-size-equal-hidden": lambda m: m.LSTM(I, H, proj_size=H),
    "LSTM-proj-size-above-hidden": lambda m: m.LSTM(I, H, 1, True, False, 0.0, False, H + 1),
    "GRU-proj-size": lambda m: m.GRU(I, H, proj_size=2),
    "GRU-proj-size-0": lambda m: m.GRU(I, H, proj_size=0),
    "RNN-proj-size": lambda m: m.RNN(I, H, 2, proj_size=2),
    "RNN-nonlinearity-keyword": lambda m: m.RNN(I, H, nonlinearity="sigmoid"),
    "RNN-nonlinearity-positional": lambda m: m.RNN(I, H, 2, "gelu"),
    "RNN-nonlinearity-case": lambda m: m.RNN(I, H, nonlinearity="Tanh"),
    "LSTM-fourth-positional-is-bias": lambda m: m.LSTM(I, H, 1, "relu"),
    "GRU-fourth-positional-is-bias": lambda m: m.GRU(I, H, 1, "tanh"),
}

# ---- cells ---------------------------------------------------------------------------------------
CELL_CASES: dict[str, Case] = {}
for _name in ("RNNCell", "GRUCell", "LSTMCell"):
    _lstm = _name == "LSTMCell"

    def _hidden(h_shape, c_shape=None, lstm=_lstm):
        if not lstm:
            return _z(*h_shape)
        return (_z(*h_shape), _z(*(c_shape or h_shape)))

    CELL_CASES |= {
        f"{_name}-input-3d": lambda m, n=_name: getattr(m, n)(I, H)(_x(1, B, I)),
        f"{_name}-input-0d": lambda m, n=_name: getattr(m, n)(I, H)(torch.tensor(1.0)),
        f"{_name}-input-size": lambda m, n=_name: getattr(m, n)(I, H)(_x(B, I + 1)),
        f"{_name}-input-size-unbatched": lambda m, n=_name: getattr(m, n)(I, H)(_x(I - 1)),
        f"{_name}-input-dtype": lambda m, n=_name: getattr(m, n)(I, H)(_x(B, I, dtype=torch.float64)),
        f"{_name}-hidden-3d": lambda m, n=_name, h=_hidden: getattr(m, n)(I, H)(_x(B, I), h((1, B, H))),
        f"{_name}-hidden-size": lambda m, n=_name, h=_hidden: getattr(m, n)(I, H)(_x(B, I), h((B, H + 1))),
        f"{_name}-batch-mismatch": lambda m, n=_name, h=_hidden: getattr(m, n)(I, H)(_x(B, I), h((B + 1, H))),
        f"{_name}-hidden-2d-for-unbatched": lambda m, n=_name, h=_hidden: getattr(m, n)(I, H)(
            _x(I), h((1, H))),
        f"{_name}-hidden-1d-for-batched": lambda m, n=_name, h=_hidden: getattr(m, n)(I, H)(
            _x(B, I), h((H,))),
        f"{_name}-hidden-size-unbatched": lambda m, n=_name, h=_hidden: getattr(m, n)(I, H, False)(
            _x(I), h((H + 2,))),
    }
CELL_CASES |= {
    "LSTMCell-c-3d": lambda m: m.LSTMCell(I, H)(_x(B, I), (_z(B, H), _z(1, B, H))),
    "LSTMCell-c-hidden-size": lambda m: m.LSTMCell(I, H)(_x(B, I), (_z(B, H), _z(B, H - 1))),
    "LSTMCell-c-batch-mismatch": lambda m: m.LSTMCell(I, H)(_x(B, I), (_z(B, H), _z(B - 1, H))),
    "RNNCell-relu-hidden-size": lambda m: m.RNNCell(I, H, True, "relu")(_x(B, I), _z(B, H + 1)),
}


def _raised(case: Case, lib) -> BaseException | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case(lib)
    except Exception as e:
        return e
    return None


def _check_same_error(case: Case, ours) -> None:
    expected = _raised(case, nn)
    assert expected is not None, "torch.nn accepts this call: the case tests nothing"
    got = _raised(case, ours)
    assert got is not None, f"rnnkit accepts what torch.nn rejects with {expected!r}"
    assert (type(got), str(got)) == (type(expected), str(expected))


@pytest.fixture(params=["native", "reference"])
def ours(request) -> types.SimpleNamespace:
    return _ours(request.param)


@pytest.mark.parametrize("case", list(FORWARD_CASES.values()), ids=list(FORWARD_CASES))
def test_forward_error_matches_torch(case, ours):
    _check_same_error(case, ours)


@pytest.mark.parametrize("case", list(CONSTRUCTOR_CASES.values()), ids=list(CONSTRUCTOR_CASES))
def test_constructor_error_matches_torch(case):
    _check_same_error(case, _ours("auto"))


@pytest.mark.parametrize("case", list(CELL_CASES.values()), ids=list(CELL_CASES))
def test_cell_error_matches_torch(case):
    _check_same_error(case, _ours("auto"))


def test_error_order_with_two_mistakes():
    # torch.nn checks, in order: input dims, state dims, dtype, input_size, state sizes
    _check_same_error(lambda m: m.GRU(I, H)(_x(T, I + 1), _z(1, 1, H)), _ours("auto"))


def test_numpy_dropout_accepted_like_torch():
    import numpy as np

    p = np.float32(0.25)
    assert repr(rnnkit.GRU(I, H, 2, dropout=p)) == repr(nn.GRU(I, H, 2, dropout=p))


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_dropout_warning_matches_torch(name):
    with pytest.warns(UserWarning) as theirs:
        getattr(nn, name)(I, H, dropout=0.3)
    with pytest.warns(UserWarning) as ours:
        getattr(rnnkit, name)(I, H, dropout=0.3)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(rnnkit, name)(I, H, 2, dropout=0.3)


# ---- where rnnkit deliberately says more than torch.nn ---------------------------------------------
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_packed_lstm_state_is_checked(backend):
    """torch.nn.LSTM does not check the state of a PackedSequence (a kernel error follows);
    rnnkit checks it with the message torch.nn uses for padded input."""
    lstm = rnnkit.LSTM(I, H, 2, proj_size=P, backend=backend)
    with pytest.raises(RuntimeError, match=r"^Expected hidden\[0\] size \(2, 3, 2\), got \[2, 3, 6\]$"):
        lstm(_packed(), (_z(2, B, H), _z(2, B, H)))
    with pytest.raises(RuntimeError, match=r"^Expected hidden\[1\] size \(2, 3, 6\), got \[2, 4, 6\]$"):
        lstm(_packed(), (_z(2, B, P), _z(2, B + 1, H)))
    with pytest.raises(RuntimeError, match=r"input\.size\(-1\) must be equal to input_size\. Expected 4, got 5"):
        lstm(_packed(I + 1))


def test_rnncell_rejects_unknown_nonlinearity_when_built():
    """torch.nn.RNNCell accepts any nonlinearity and fails at the first forward
    (RuntimeError "Unknown nonlinearity: ..."); rnnkit fails at once, with the same words."""
    with pytest.raises(ValueError, match=r"^Unknown nonlinearity: sigmoid$"):
        rnnkit.RNNCell(I, H, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"^Unknown nonlinearity: gelu$"):
        rnnkit.RNNCell(I, H, True, "gelu")


# ---- rnnkit's own options ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: rnnkit.LSTM(I, H, zoneout=1.5), ValueError, r"zoneout must be a probability in \[0, 1\], got 1.5"),
        (lambda: rnnkit.GRU(I, H, zoneout=-0.1), ValueError, r"zoneout must be a probability in \[0, 1\], got -0.1"),
        (lambda: rnnkit.LSTM(I, H, zoneout=(0.1, 2.0)), ValueError, r"zoneout must be a probability"),
        (lambda: rnnkit.LSTM(I, H, zoneout=True), ValueError, r"zoneout must be a probability"),
        (lambda: rnnkit.LSTM(I, H, zoneout=(0.1, 0.1, 0.1)), ValueError,
         r"zoneout for the 'lstm' cell takes one probability or 2 \(one per state component\), got 3"),
        (lambda: rnnkit.RNN(I, H, recurrent_dropout=1.1), ValueError, r"recurrent_dropout must be a probability"),
        (lambda: rnnkit.GRU(I, H, variational_dropout=-1), ValueError, r"variational_dropout must be a probability"),
        (lambda: rnnkit.LSTM(I, H, weight_drop="0.1"), ValueError, r"weight_drop must be a probability"),
        (lambda: rnnkit.Recurrent("gru", I, H, proj_size=2), ValueError,
         r"proj_size is not an option of the 'gru' cell \(its options: layer_norm\)"),
        (lambda: rnnkit.Recurrent("gru", I, H, peephole=True), ValueError,
         r"peephole is not an option of the 'gru' cell"),
        (lambda: rnnkit.Recurrent("rnn_tanh", I, H, layer_norm=True), ValueError,
         r"layer_norm is not an option of the 'rnn_tanh' cell"),
        (lambda: rnnkit.Recurrent("lstmm", I, H), ValueError, r"unknown cell 'lstmm'; choose one of: .*lstm"),
        (lambda: rnnkit.LSTM(I, H, init="xavier"), ValueError,
         r"init must be one of 'torch', 'orthogonal', 'chrono', got 'xavier'"),
        (lambda: rnnkit.LSTMCell(I, H, init="he"), ValueError, r"init must be one of .*got 'he'"),
        (lambda: rnnkit.RNN(I, H, init="chrono"), ValueError, r"init='chrono' is defined for gated cells"),
        (lambda: rnnkit.LSTM(I, H, bias=False, forget_bias=1.0), ValueError, r"forget_bias .* needs bias=True"),
        (lambda: rnnkit.GRU(I, H, backend="cudnn"), BackendUnavailable,
         r"unknown backend 'cudnn'; choose 'auto' or one of: .*reference"),
        (lambda: rnnkit.Recurrent("lstm", I, H, backend="Native"), BackendUnavailable, r"unknown backend 'Native'"),
    ],
)
def test_rnnkit_option_errors_are_clear(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: rnnkit.LSTM(I, H, layer_norm=True, backend="native"), "layer_norm"),
        (lambda: rnnkit.GRU(I, H, 2, layer_norm=True, backend="native"), "layer_norm"),
        (lambda: rnnkit.Recurrent("lstm", I, H, layer_norm=True, backend="native"), "layer_norm"),
        (lambda: rnnkit.LSTM(I, H, peephole=True, backend="native"), "peephole"),
        (lambda: rnnkit.GRU(I, H, zoneout=0.1, backend="native"), "zoneout"),
    ],
)
def test_native_backend_refuses_what_it_cannot_run(make, reason):
    with pytest.raises(BackendUnavailable, match=rf"backend 'native' cannot run this layer: .*{reason}") as info:
        make()(_x(T, B, I))
    assert isinstance(info.value, UserError)
    assert isinstance(info.value, ValueError)


def test_packed_input_takes_no_lengths():
    with pytest.raises(ValueError, match="a PackedSequence carries its own lengths"):
        rnnkit.Recurrent("gru", I, H)(_packed(), lengths=LENGTHS)
