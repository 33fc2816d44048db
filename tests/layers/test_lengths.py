"""Variable-length sequences: lengths, masks and PackedSequence, on every cell and backend."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from conformance.cases import case_id, family_cases
from rnnkit import Recurrent
from rnnkit.cells import make_cell
from rnnkit.executors import RunRequest, flip_sequences, get_executor

F64 = torch.float64
T, B, I, H = 5, 4, 3, 4
LENGTHS = [2, 5, 1, 4]  # its sorting permutation is not its own inverse


def _native_runs(case) -> bool:
    name, options = case
    cell = make_cell(name, I, H, **options)
    return get_executor("native").supports(cell, RunRequest(torch.device("cpu"), F64)) is None


# every registered family x option example (tests/conformance/cases.py); torch's kernels run some
CELLS = [case for case in family_cases() if _native_runs(case)]
REFERENCE_ONLY = [case for case in family_cases() if not _native_runs(case)]
SEQUENTIAL = [case for case in CELLS if case[0] == "rnn_tanh" and not case[1]]  # one of each mode
SEQUENTIAL += [case for case in CELLS if case[0] in ("lstm", "gru") and not case[1]]
TORCH_TWINS = [case for case in CELLS if case[0] in ("lstm", "gru") and not case[1]]


def cid(case):
    return case_id(*case)


def configs():
    out = []
    for backend in ("reference", "native", "auto"):
        for case in CELLS + (REFERENCE_ONLY if backend != "native" else []):
            for bi in (False, True):
                for layers in (1, 2):
                    out.append(
                        pytest.param(
                            case, backend, bi, layers,
                            id=f"{cid(case)}-{backend}-{'bi' if bi else 'uni'}-L{layers}",
                        )
                    )
    return out


def build(case, backend, bi, layers, seed=0, **kwargs):
    name, opts = case
    torch.manual_seed(seed)
    return Recurrent(
        name, I, H, layers, bidirectional=bi, backend=backend, dtype=F64, **opts, **kwargs
    ).eval()


def inputs(m, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g, dtype=F64)
    LD = m.num_layers * m.num_directions
    state = tuple(torch.randn(LD, B, n, generator=g, dtype=F64) for n in m.cell.state_sizes())
    return x, state


def as_tuple(s):
    return s if isinstance(s, tuple) else (s,)


def pack_state(m, parts):
    return tuple(parts) if len(parts) > 1 else parts[0]


@pytest.mark.parametrize(("case", "backend", "bi", "layers"), configs())
def test_lengths_behaviour(case, backend, bi, layers):
    m = build(case, backend, bi, layers)
    x, state = inputs(m)
    lengths = torch.tensor(LENGTHS)
    out, final = m(x, pack_state(m, state), lengths=lengths)
    final = as_tuple(final)
    n = m.cells[-1].output_size

    # padding does not matter
    x_garbage = x.clone()
    for b, L in enumerate(LENGTHS):
        x_garbage[L:, b] = 1e3
    out_g, final_g = m(x_garbage, pack_state(m, state), lengths=lengths)
    torch.testing.assert_close(out_g, out, rtol=0, atol=1e-12)
    for a, b_ in zip(as_tuple(final_g), final, strict=True):
        torch.testing.assert_close(a, b_, rtol=0, atol=1e-12)

    for b, L in enumerate(LENGTHS):
        # exactly zero past the end
        assert (out[L:, b] == 0).all()
        if "relu" not in m.cell.gate_kinds().values():  # a relu layer may be silent at a step
            assert (out[:L, b] != 0).any(dim=-1).all()
        # the final state of the last layer is the output at the last valid step (forward) and
        # at step 0 (reverse)
        h_n = final[0]
        D = m.num_directions
        torch.testing.assert_close(out[L - 1, b, :n], h_n[(layers - 1) * D, b])
        if bi:
            torch.testing.assert_close(out[0, b, n:], h_n[(layers - 1) * D + 1, b])
        # the same as running this sequence alone, sliced to its length
        alone_state = pack_state(m, tuple(s[:, b : b + 1] for s in state))
        out_b, final_b = m(x[:L, b : b + 1], alone_state)
        torch.testing.assert_close(out[:L, b], out_b[:, 0], rtol=1e-9, atol=1e-10)
        for full, single in zip(final, as_tuple(final_b), strict=True):
            torch.testing.assert_close(full[:, b], single[:, 0], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("case", CELLS, ids=cid)
def test_reverse_direction_starts_at_last_valid_step(case, backend):
    m = build(case, backend, True, 1)
    x, _ = inputs(m)
    x[-1] = 50.0  # a step past most lengths; must not leak into the reverse direction
    lengths = torch.tensor(LENGTHS)
    out, _ = m(x, lengths=lengths)
    spec = m.cells[0]
    params = {k: v.detach() for k, v in m.layer_params(0, 1).items()}
    n = spec.output_size
    for b, L in enumerate(LENGTHS):
        xb = x[L - 1, b : b + 1]
        first = spec.step(params, spec.project_input(params, xb), spec.initial_state(1, dtype=F64))
        torch.testing.assert_close(out[L - 1, b, n:], first[0][0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("case", CELLS, ids=cid)
def test_residual_stack_with_lengths(case, backend):
    """Residual stacks run layer by layer (the native executor's per-layer reverse included)."""
    m = build(case, backend, True, 2, residual=True)
    assert not m.plan().whole_stack
    x, state = inputs(m)
    lengths = torch.tensor(LENGTHS)
    out, final = m(x, pack_state(m, state), lengths=lengths)
    for b, L in enumerate(LENGTHS):
        assert (out[L:, b] == 0).all()
        alone_state = pack_state(m, tuple(s[:, b : b + 1] for s in state))
        out_b, final_b = m(x[:L, b : b + 1], alone_state)
        torch.testing.assert_close(out[:L, b], out_b[:, 0], rtol=1e-9, atol=1e-10)
        for full, single in zip(as_tuple(final), as_tuple(final_b), strict=True):
            torch.testing.assert_close(full[:, b], single[:, 0], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("case", SEQUENTIAL, ids=cid)
def test_mask_equals_lengths(case, backend, batch_first):
    m = build(case, backend, True, 2, batch_first=batch_first)
    x, _ = inputs(m)
    lengths = torch.tensor(LENGTHS)
    mask = torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
    if batch_first:
        x, mask = x.transpose(0, 1), mask.t()
    out_l, final_l = m(x, lengths=lengths)
    out_m, final_m = m(x, mask=mask)
    torch.testing.assert_close(out_m, out_l, rtol=0, atol=0)
    for a, b in zip(as_tuple(final_m), as_tuple(final_l), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a float 0/1 mask is accepted too
    out_f, _ = m(x, mask=mask.to(F64))
    torch.testing.assert_close(out_f, out_l, rtol=0, atol=0)


def test_lengths_with_batch_first_and_unbatched_input():
    m = build(("gru", {}), "reference", True, 1, batch_first=True)
    x, _ = inputs(m)
    xb = x.transpose(0, 1)
    out, h = m(xb, lengths=torch.tensor(LENGTHS))
    assert out.shape == (B, T, 2 * H)
    for b, L in enumerate(LENGTHS):
        assert (out[b, L:] == 0).all()
        out_1, h_1 = m(xb[b, :L])  # unbatched, alone
        torch.testing.assert_close(out[b, :L], out_1)
        torch.testing.assert_close(h[:, b], h_1)
    # unbatched with a length
    out_u, h_u = m(xb[1], lengths=torch.tensor([LENGTHS[1]]))
    torch.testing.assert_close(out_u, out[1])
    torch.testing.assert_close(h_u, h[:, 1])


PACKED_CONFIGS = [
    pytest.param(case, backend, id=f"{cid(case)}-{backend}")
    for backend in ("reference", "native", "auto")
    for case in CELLS + (REFERENCE_ONLY if backend != "native" else [])
]


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize(("case", "backend"), PACKED_CONFIGS)
def test_packed_sequence(case, backend, enforce_sorted):
    m = build(case, backend, True, 2)
    x, state = inputs(m)
    lengths = torch.tensor([5, 4, 2, 1]) if enforce_sorted else torch.tensor(LENGTHS)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    out_p, final_p = m(packed, pack_state(m, state))
    assert isinstance(out_p, PackedSequence)
    torch.testing.assert_close(out_p.batch_sizes, packed.batch_sizes, rtol=0, atol=0)
    if enforce_sorted:
        assert out_p.sorted_indices is None and out_p.unsorted_indices is None
    else:
        assert torch.equal(out_p.sorted_indices, packed.sorted_indices)
        assert torch.equal(out_p.unsorted_indices, packed.unsorted_indices)
    out, final = m(x, pack_state(m, state), lengths=lengths)
    padded, lens = pad_packed_sequence(out_p, total_length=T)
    assert torch.equal(lens, lengths)
    torch.testing.assert_close(padded, out, rtol=1e-9, atol=1e-10)
    for a, b in zip(as_tuple(final_p), as_tuple(final), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("case", TORCH_TWINS, ids=cid)
def test_packed_sequence_matches_torch_nn(case):
    name, _ = case
    torch.manual_seed(0)
    ref_cls = torch.nn.LSTM if name == "lstm" else torch.nn.GRU
    ref = ref_cls(I, H, 2, bidirectional=True, dtype=F64)
    m = Recurrent(name, I, H, 2, bidirectional=True, dtype=F64, backend="reference")
    m.load_state_dict(ref.state_dict())
    x, _ = inputs(m)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    out_p, final_p = m(packed)
    ref_p, ref_final = ref(packed)
    torch.testing.assert_close(out_p.data, ref_p.data)
    for a, b in zip(as_tuple(final_p), as_tuple(ref_final), strict=True):
        torch.testing.assert_close(a, b)


# ---- errors --------------------------------------------------------------------------------
@pytest.fixture
def small():
    return build(("lstm", {}), "auto", False, 1)


@pytest.mark.parametrize(
    ("lengths", "match"),
    [
        ([5, 0, 3, 1], r"lengths must lie in \[1, 5\]"),
        ([5, 6, 3, 1], r"lengths must lie in \[1, 5\]"),
        ([5, -1, 3, 1], r"lengths must lie in \[1, 5\]"),
        ([5, 3, 1], r"one entry per sequence \(4\)"),
        ([5, 3, 1, 1, 2], r"one entry per sequence \(4\)"),
    ],
)
def test_bad_lengths(small, lengths, match):
    x, _ = inputs(small)
    with pytest.raises(ValueError, match=match):
        small(x, lengths=torch.tensor(lengths))


def test_bad_masks(small):
    x, _ = inputs(small)
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[2, 1] = False  # a hole: not a prefix
    with pytest.raises(ValueError, match="contiguous prefix"):
        small(x, mask=mask)
    suffix = torch.ones(T, B, dtype=torch.bool)
    suffix[0, 0] = False
    with pytest.raises(ValueError, match="contiguous prefix"):
        small(x, mask=suffix)
    empty = torch.ones(T, B, dtype=torch.bool)
    empty[:, 2] = False
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 5\]"):
        small(x, mask=empty)
    with pytest.raises(ValueError, match="mask must have shape"):
        small(x, mask=torch.ones(B, T, dtype=torch.bool))
    with pytest.raises(ValueError, match="not both"):
        small(x, lengths=torch.tensor(LENGTHS), mask=torch.ones(T, B, dtype=torch.bool))
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    with pytest.raises(ValueError, match="PackedSequence"):
        small(packed, lengths=torch.tensor(LENGTHS))


# ---- flip_sequences --------------------------------------------------------------------------
def flip_reference(x, lengths):
    y = x.clone()
    for b, L in enumerate(lengths.tolist()):
        y[:L, b] = x[:L, b].flip(0)
    return y


@pytest.mark.parametrize("shape", [(6, 4), (6, 4, 3), (6, 4, 2, 3)])
def test_flip_sequences(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    lengths = torch.tensor([6, 1, 3, 5])
    y = flip_sequences(x, lengths)
    assert torch.equal(y, flip_reference(x, lengths))
    assert torch.equal(flip_sequences(y, lengths), x)  # an involution
    assert torch.equal(flip_sequences(x, None), x.flip(0))
    assert torch.equal(flip_sequences(x, torch.full((4,), 6)), x.flip(0))


def test_flip_sequences_example_from_docstring():
    x = torch.tensor([[1, 4], [2, 5], [3, 0]])  # columns "a b c" and "d e _"
    y = flip_sequences(x, torch.tensor([3, 2]))
    assert y.tolist() == [[3, 5], [2, 4], [1, 0]]


def test_flip_sequences_keeps_gradient():
    x = torch.randn(4, 3, 2, requires_grad=True)
    lengths = torch.tensor([2, 4, 3])
    w = torch.randn(4, 3, 2)
    (flip_sequences(x, lengths) * w).sum().backward()
    assert torch.equal(x.grad, flip_reference(w, lengths))
