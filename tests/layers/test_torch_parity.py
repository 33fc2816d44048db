"""rnnkit's drop-ins against torch.nn: outputs, final states and every gradient, weights loaded
both ways, on both the ``reference`` and the ``native`` executor.

The sequence-layer matrix is a covering design, not the full Cartesian product: every combination
of the main axes (cell, layers, directions, input kind, backend) is run once, and the rarer axes
(batch_first, initial state given, bias, which way the weights are loaded) are rotated over it by
independent parities, so that every pair of axis values appears (checked by
``test_matrix_covers_every_pair_of_axis_values``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnkit

T, B, I, H, P = 7, 4, 5, 6, 3
ATOL, RTOL = 1e-5, 1e-4
SORTED_LENGTHS = [7, 5, 5, 2]
UNSORTED_LENGTHS = [3, 7, 1, 5]

# cell -> (torch class, rnnkit class, constructor keywords)
CELLS = {
    "rnn_tanh": (nn.RNN, rnnkit.RNN, {}),
    "rnn_relu": (nn.RNN, rnnkit.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, rnnkit.LSTM, {}),
    "lstm_proj": (nn.LSTM, rnnkit.LSTM, {"proj_size": P}),
    "gru": (nn.GRU, rnnkit.GRU, {}),
}
LAYERS = (1, 3)
BIDIRECTIONAL = (False, True)
KINDS = ("dense", "unbatched", "packed_sorted", "packed_unsorted")
BACKENDS = ("reference", "native")


@dataclass(frozen=True)
class Config:
    cell: str
    num_layers: int
    bidirectional: bool
    kind: str
    backend: str
    batch_first: bool
    hx_given: bool
    bias: bool
    load: str  # "torch->ours" or "ours->torch"
    seed: int

    @property
    def id(self) -> str:
        return (
            f"{self.cell}-L{self.num_layers}-{'bi' if self.bidirectional else 'uni'}-{self.kind}"
            f"-{'bf' if self.batch_first else 'tf'}-{'hx' if self.hx_given else 'nohx'}"
            f"-{'bias' if self.bias else 'nobias'}-{'t2o' if self.load == 'torch->ours' else 'o2t'}"
            f"-{self.backend}"
        )


def _matrix() -> list[Config]:
    configs = []
    main = itertools.product(
        enumerate(CELLS), enumerate(LAYERS), enumerate(BIDIRECTIONAL), enumerate(KINDS),
        enumerate(BACKENDS),
    )
    for n, ((c, cell), (li, layers), (d, bidir), (k, kind), (e, backend)) in enumerate(main):
        k0, k1, c0 = k & 1, k >> 1, c & 1
        configs.append(
            Config(
                cell, layers, bidir, kind, backend,
                batch_first=bool(li ^ k0 ^ e),
                hx_given=not (d ^ k1 ^ e),
                bias=not (li ^ d ^ k0 ^ k1 ^ c0),
                load="torch->ours" if li ^ d ^ k1 ^ e ^ c0 else "ours->torch",
                seed=n,
            )
        )
    return configs


MATRIX = _matrix()
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")


def test_matrix_covers_every_pair_of_axis_values():
    axes = {
        "cell": CELLS, "num_layers": LAYERS, "bidirectional": BIDIRECTIONAL, "kind": KINDS,
        "backend": BACKENDS, "batch_first": (False, True), "hx_given": (False, True),
        "bias": (False, True), "load": ("torch->ours", "ours->torch"),
    }
    assert len(MATRIX) >= 100
    for a, b in itertools.combinations(axes, 2):
        seen = {(getattr(cfg, a), getattr(cfg, b)) for cfg in MATRIX}
        assert seen == set(itertools.product(axes[a], axes[b])), (a, b)


# ---- helpers ----------------------------------------------------------------------------------
def _close(ours: torch.Tensor | None, theirs: torch.Tensor | None, what: str) -> None:
    assert (ours is None) == (theirs is None), what
    if theirs is not None:
        assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def _close_each(ours, theirs, what: str) -> None:
    """Element by element (states, outputs, gradients of a tuple), numbered in the message."""
    assert len(ours) == len(theirs), what
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        _close(a, b, f"{what} [{k}]")


def _leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def _build(cfg: Config) -> tuple[nn.Module, nn.Module]:
    torch_cls, ours_cls, extra = CELLS[cfg.cell]
    kwargs = dict(
        num_layers=cfg.num_layers, bias=cfg.bias, batch_first=cfg.batch_first,
        bidirectional=cfg.bidirectional, **extra,
    )
    torch.manual_seed(cfg.seed)
    theirs = torch_cls(I, H, **kwargs)
    torch.manual_seed(cfg.seed + 10_000)  # different weights, so that loading has to happen
    ours = ours_cls(I, H, backend=cfg.backend, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, p in theirs.state_dict().items():
        assert ours.state_dict()[name].shape == p.shape, name
    if cfg.load == "torch->ours":
        ours.load_state_dict(theirs.state_dict(), strict=True)
    else:
        theirs.load_state_dict(ours.state_dict(), strict=True)
    for name, p in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], p), name
    return theirs, ours


def _inputs(cfg: Config) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, list[int] | None]:
    """The (padded, for packed kinds) input, the initial state components, and lengths."""
    g = torch.Generator().manual_seed(cfg.seed)
    D = 2 if cfg.bidirectional else 1
    lengths = None
    if cfg.kind == "unbatched":
        x = torch.randn(T, I, generator=g)
    else:
        x = torch.randn(B, T, I, generator=g) if cfg.batch_first else torch.randn(T, B, I, generator=g)
        if cfg.kind.startswith("packed"):
            lengths = SORTED_LENGTHS if cfg.kind == "packed_sorted" else UNSORTED_LENGTHS
    hx = None
    if cfg.hx_given:
        batch = () if cfg.kind == "unbatched" else (B,)
        sizes = {"lstm": (H, H), "lstm_proj": (P, H)}.get(cfg.cell, (H,))
        hx = tuple(torch.randn(cfg.num_layers * D, *batch, n, generator=g) for n in sizes)
    return x, hx, lengths


def _forward(cfg: Config, module: nn.Module, x, hx, lengths):
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(
            x, torch.tensor(lengths), batch_first=cfg.batch_first,
            enforce_sorted=cfg.kind == "packed_sorted",
        )
    state = None if hx is None else (hx if cfg.cell.startswith("lstm") else hx[0])
    out, final = module(inp, state) if cfg.seed % 2 else module(inp, hx=state)
    return out, (final if isinstance(final, tuple) else (final,))


def _loss(out, finals, seed: int) -> torch.Tensor:
    """A weighted sum, so that every output element gets its own gradient."""
    g = torch.Generator().manual_seed(seed + 1)
    data = out.data if isinstance(out, PackedSequence) else out
    loss = (data * torch.randn(data.shape, generator=g)).sum()
    for f in finals:
        loss = loss + (f * torch.randn(f.shape, generator=g)).sum()
    return loss


# ---- the matrix -------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", MATRIX, ids=[c.id for c in MATRIX])
def test_sequence_layer_matches_torch(cfg: Config):
    theirs, ours = _build(cfg)
    plan = ours.plan()
    if cfg.backend == "native":
        assert plan.whole_stack
    else:
        assert not plan.whole_stack
        assert {e.name for per_layer in plan.executors for e in per_layer} == {"reference"}
    x, hx, lengths = _inputs(cfg)
    runs = {}
    for name, module in (("theirs", theirs), ("ours", ours)):
        xl = _leaf(x)
        hl = None if hx is None else tuple(_leaf(h) for h in hx)
        out, finals = _forward(cfg, module, xl, hl, lengths)
        _loss(out, finals, cfg.seed).backward()
        runs[name] = (out, finals, xl.grad, None if hl is None else [h.grad for h in hl])

    out_t, finals_t, gx_t, gh_t = runs["theirs"]
    out_o, finals_o, gx_o, gh_o = runs["ours"]
    if lengths is not None:
        assert isinstance(out_o, PackedSequence)
        _close(out_o.data, out_t.data, "output.data")
        assert torch.equal(out_o.batch_sizes, out_t.batch_sizes)
        for field in ("sorted_indices", "unsorted_indices"):
            a, b = getattr(out_o, field), getattr(out_t, field)
            assert (a is None) == (b is None), field
            assert b is None or torch.equal(a, b), field
    else:
        assert isinstance(out_o, torch.Tensor)
        _close(out_o, out_t, "output")
    _close_each(finals_o, finals_t, "final state (h_n, c_n)")
    _close(gx_o, gx_t, "grad of input")
    if hx is not None:
        _close_each(gh_o, gh_t, "grad of initial state")
    params_t = dict(theirs.named_parameters())
    params_o = dict(ours.named_parameters())
    assert list(params_o) == list(params_t)
    for name, p in params_t.items():
        _close(params_o[name].grad, p.grad, f"grad of {name}")


@pytest.mark.parametrize("cell", list(CELLS))
def test_native_dropout_between_layers_matches_torch_in_training(cell):
    """With the native backend, rnnkit calls torch's kernel as torch.nn does: the same seed gives
    the same dropout masks between layers."""
    torch_cls, ours_cls, extra = CELLS[cell]
    torch.manual_seed(0)
    theirs = torch_cls(I, H, 3, dropout=0.5, bidirectional=True, **extra)
    ours = ours_cls(I, H, 3, dropout=0.5, bidirectional=True, backend="native", **extra)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I)
    outs = []
    for module in (theirs, ours):
        torch.manual_seed(1)
        out, final = module(x)
        outs.append([out, *(final if isinstance(final, tuple) else (final,))])
    for a, b in zip(outs[1], outs[0], strict=True):
        _close(a, b, "output with dropout")
    theirs.eval()
    ours.eval()
    _close(ours(x)[0], theirs(x)[0], "output in eval mode")
    assert not torch.allclose(outs[0][0], theirs(x)[0]), "dropout was not active in training"


@pytest.mark.parametrize(
    ("cell", "backend"),
    [
        ("rnn_tanh", "native"), ("lstm", "native"), ("gru", "native"), ("rnn_tanh", "reference"),
        ("lstm", "reference"), ("gru", "reference"),
    ],
)
def test_cpu_autocast_runs_like_torch(cell, backend):
    """Under autocast torch.nn accepts input of the autocast dtype into a float32 module."""
    torch_cls, ours_cls, extra = CELLS[cell]
    torch.manual_seed(0)
    theirs = torch_cls(I, H, 2, **extra)
    ours = ours_cls(I, H, 2, backend=backend, **extra)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_t, _ = theirs(x)
        out_o, _ = ours(x)
    assert out_o.dtype == out_t.dtype
    torch.testing.assert_close(out_o, out_t, atol=2e-2, rtol=2e-2)


# ---- construction: keys, init, repr, attributes -----------------------------------------------
CONSTRUCTIONS = [
    (cell, layers, bidir, bias)
    for cell in CELLS
    for layers in LAYERS
    for bidir in BIDIRECTIONAL
    for bias in (True, False)
]


@pytest.mark.parametrize(("cell", "layers", "bidir", "bias"), CONSTRUCTIONS)
def test_same_keys_shapes_init_and_attributes(cell, layers, bidir, bias):
    torch_cls, ours_cls, extra = CELLS[cell]
    kwargs = dict(num_layers=layers, bidirectional=bidir, bias=bias, **extra)
    torch.manual_seed(7)
    theirs = torch_cls(I, H, **kwargs)
    torch.manual_seed(7)
    ours = ours_cls(I, H, **kwargs)
    sd_t, sd_o = theirs.state_dict(), ours.state_dict()
    assert list(sd_o) == list(sd_t)
    for name, p in sd_t.items():
        # rnnkit initialises in torch's order, so the same seed gives the same weights
        assert torch.equal(sd_o[name], p), name
    assert ours._flat_weights_names == theirs._flat_weights_names
    assert [[p.shape for p in w] for w in ours.all_weights] == [
        [p.shape for p in w] for w in theirs.all_weights
    ]
    for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "proj_size", "mode"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    if torch_cls is nn.RNN:
        assert ours.nonlinearity == theirs.nonlinearity
    assert repr(ours) == repr(theirs)


REPR_CASES = [
    ("RNN", (3, 4), {}),
    ("RNN", (3, 4, 2, "relu"), {}),
    ("RNN", (3, 4, 2, "relu", False, True, 0.5, True), {}),
    ("RNN", (3, 4), {"nonlinearity": "relu", "num_layers": 1}),
    ("RNN", (3, 4), {"nonlinearity": "tanh", "bias": False, "dropout": 0.0}),
    ("LSTM", (3, 4), {}),
    ("LSTM", (3, 4, 2, False, True, 0.25, True, 2), {}),
    ("LSTM", (3, 4), {"proj_size": 3, "batch_first": True}),
    ("LSTM", (10, 20), {"num_layers": 3, "dropout": 1, "bidirectional": True}),
    ("GRU", (3, 4), {}),
    ("GRU", (3, 4, 3, True, False, 0.1, True), {}),
    ("GRU", (3, 4), {"bias": False, "batch_first": True}),
    ("RNNCell", (3, 4), {}),
    ("RNNCell", (3, 4, False, "relu"), {}),
    ("RNNCell", (3, 4), {"nonlinearity": "relu"}),
    ("LSTMCell", (3, 4), {}),
    ("LSTMCell", (3, 4, False), {}),
    ("GRUCell", (3, 4), {"bias": False}),
    ("GRUCell", (7, 2), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), REPR_CASES)
def test_repr_and_init_match(name, args, kwargs):
    torch.manual_seed(3)
    theirs = getattr(nn, name)(*args, **kwargs)
    torch.manual_seed(3)
    ours = getattr(rnnkit, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, p in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], p), key


def test_rnnkit_options_show_in_repr_only_when_set():
    assert repr(rnnkit.LSTM(3, 4, backend="reference")) == "LSTM(3, 4, backend='reference')"
    assert "zoneout=0.1" in repr(rnnkit.GRU(3, 4, zoneout=0.1))
    assert "layer_norm=True" in repr(rnnkit.LSTMCell(3, 4, layer_norm=True))


# ---- cells ------------------------------------------------------------------------------------
CELL_CLASSES = {
    "rnn_tanh": (nn.RNNCell, rnnkit.RNNCell, {}),
    "rnn_relu": (nn.RNNCell, rnnkit.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTMCell, rnnkit.LSTMCell, {}),
    "gru": (nn.GRUCell, rnnkit.GRUCell, {}),
}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("hx_given", [True, False], ids=["hx", "nohx"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("cell", list(CELL_CLASSES))
def test_cell_matches_torch(cell, batched, hx_given, bias):
    torch_cls, ours_cls, extra = CELL_CLASSES[cell]
    torch.manual_seed(11)
    theirs = torch_cls(I, H, bias=bias, **extra)
    torch.manual_seed(11)
    ours = ours_cls(I, H, bias=bias, **extra)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, p in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], p), key
    g = torch.Generator().manual_seed(5)
    batch = (B,) if batched else ()
    x = torch.randn(*batch, I, generator=g)
    n_state = 2 if cell == "lstm" else 1
    hx = tuple(torch.randn(*batch, H, generator=g) for _ in range(n_state)) if hx_given else None
    weights = [torch.randn(*batch, H, generator=g) for _ in range(n_state)]

    results = []
    for module in (theirs, ours):
        xl = _leaf(x)
        hl = None if hx is None else tuple(_leaf(h) for h in hx)
        state = None if hl is None else (hl if cell == "lstm" else hl[0])
        out = module(xl, hx=state) if hx_given else module(xl)
        assert isinstance(out, tuple) == (cell == "lstm")
        outs = out if isinstance(out, tuple) else (out,)
        sum((o * w).sum() for o, w in zip(outs, weights, strict=True)).backward()
        grads = {name: p.grad for name, p in module.named_parameters()}
        results.append((outs, xl.grad, None if hl is None else [h.grad for h in hl], grads))
    (outs_t, gx_t, gh_t, gp_t), (outs_o, gx_o, gh_o, gp_o) = results
    _close_each(outs_o, outs_t, "output")
    _close(gx_o, gx_t, "grad of input")
    if hx is not None:
        _close_each(gh_o, gh_t, "grad of hx")
    assert list(gp_o) == list(gp_t)
    for name, grad in gp_t.items():
        _close(gp_o[name], grad, f"grad of {name}")


# ---- conversion -------------------------------------------------------------------------------
CONVERSIONS = [
    lambda: nn.RNN(I, H, 2, nonlinearity="relu", bidirectional=True),
    lambda: nn.RNN(I, H, bias=False, batch_first=True),
    lambda: nn.LSTM(I, H, 2, proj_size=P, batch_first=True),
    lambda: nn.LSTM(I, H, bidirectional=True, bias=False),
    lambda: nn.GRU(I, H, 3, dropout=0.5, bidirectional=True),
    lambda: nn.RNNCell(I, H, nonlinearity="relu"),
    lambda: nn.LSTMCell(I, H, bias=False),
    lambda: nn.GRUCell(I, H),
]


def _outputs(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = module(x)
    flat = []
    for item in out if isinstance(out, tuple) else (out,):
        flat.extend(item if isinstance(item, tuple) else (item,))
    return flat


@pytest.mark.parametrize("make", CONVERSIONS, ids=lambda make: repr(make()))
def test_from_torch_and_to_torch_round_trip(make):
    torch.manual_seed(2)
    theirs = make().eval()
    is_cell = isinstance(theirs, nn.RNNCellBase)
    x = torch.randn(B, I) if is_cell else torch.randn(B, T, I)  # (T=B, B=T) when not batch_first

    ours = rnnkit.from_torch(theirs)
    assert type(ours) is getattr(rnnkit, type(theirs).__name__)
    assert repr(ours) == repr(theirs)
    assert not ours.training
    assert rnnkit.from_torch(ours) is ours
    for a, b in zip(_outputs(ours, x), _outputs(theirs, x), strict=True):
        _close(a, b, "from_torch output")

    back = ours.to_torch()
    assert type(back) is type(theirs)
    assert repr(back) == repr(theirs)
    assert not back.training
    assert list(back.state_dict()) == list(theirs.state_dict())
    for key, p in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[key], p), key
    for a, b in zip(_outputs(back, x), _outputs(theirs, x), strict=True):
        _close(a, b, "to_torch output")
    assert rnnkit.to_torch(ours).state_dict().keys() == theirs.state_dict().keys()


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda: rnnkit.LSTM(I, H, layer_norm=True), "layer_norm"),
        (lambda: rnnkit.GRU(I, H, layer_norm=True), "layer_norm"),
        (lambda: rnnkit.LSTM(I, H, peephole=True), "peephole"),
        (lambda: rnnkit.LSTM(I, H, zoneout=0.1), "zoneout"),
        (lambda: rnnkit.GRU(I, H, zoneout=(0.2,)), "zoneout"),
        (lambda: rnnkit.RNN(I, H, zoneout=0.1), "zoneout"),
        (lambda: rnnkit.LSTMCell(I, H, peephole=True), "peephole"),
        (lambda: rnnkit.LSTMCell(I, H, layer_norm=True), "layer_norm"),
        (lambda: rnnkit.GRUCell(I, H, layer_norm=True), "layer_norm"),
    ],
)
def test_to_torch_refuses_what_torch_cannot_compute(make, option):
    module = make()
    with pytest.raises(ValueError, match=rf"to_torch: torch\.nn has no equivalent of .*{option}"):
        module.to_torch()
    with pytest.raises(ValueError, match=option):
        rnnkit.to_torch(module)


def test_to_torch_warns_when_dropping_training_only_regularisers():
    ours = rnnkit.LSTM(I, H, 2, recurrent_dropout=0.2, weight_drop=0.1)
    with pytest.warns(UserWarning, match="recurrent_dropout, weight_drop"):
        theirs = ours.to_torch()
    assert isinstance(theirs, nn.LSTM)
    ours.eval()
    theirs.eval()
    x = torch.randn(T, B, I)
    for a, b in zip(_outputs(ours, x), _outputs(theirs, x), strict=True):
        _close(a, b, "output")
