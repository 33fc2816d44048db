"""The torch feature matrix: every rnnkit module family x every PyTorch feature users apply to
torch.nn's recurrent modules. Each entry either matches (✔: the same numbers as the truth, within
the parity tests' tolerance) or raises an error (✘, with its message); an answer that differs is
"silently different" and fails the test.

The truth: for a drop-in (``rnnkit.LSTM`` ...) torch.nn's module with the same weights, with the same
feature applied where the feature changes the numbers (autocast, quantization); for a ``Recurrent``
family, the same configuration on the reference executor, run eagerly.

The table in ``docs/torch-features.md`` is this test's output: each row test checks its line there.
After a change, regenerate it with ``.venv/bin/python tests/torch_integration/test_torch_features.py``.
"""

from __future__ import annotations

import copy
import io
import pickle
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.cells.registry import spec_class

DOC = Path(__file__).resolve().parents[2] / "docs" / "torch-features.md"  # run as a script too
I, H = 4, 6


@dataclass(frozen=True)
class Row:
    name: str
    make: Callable[..., nn.Module]  # rnnkit's module; keyword ``backend`` for Recurrent rows
    torch_make: Callable[[], nn.Module] | None  # torch.nn's counterpart, for drop-ins
    cell: bool = False  # a single-step cell module: input (B, I) instead of (T, B, I)

    def pair(self) -> tuple[nn.Module, nn.Module]:
        torch.manual_seed(0)
        ours = self.make()
        truth = self.torch_make() if self.torch_make else self.make(backend="reference")
        truth.load_state_dict(ours.state_dict())
        return ours.eval(), truth.eval()

    def inputs(self, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Two inputs of different shapes (batch and time): a traced or exported model must hold
        for a shape it did not see."""
        g = torch.Generator().manual_seed(1)
        shapes = [(3, I), (2, I)] if self.cell else [(5, 3, I), (7, 2, I)]
        return tuple(torch.randn(s, generator=g).to(dtype) for s in shapes)  # type: ignore[return-value]


def _recurrent(cell: str, **options):
    return lambda backend="auto": rnnkit.Recurrent(cell, I, H, 2, backend=backend, **options)


ROWS = [
    Row("LSTM", lambda: rnnkit.LSTM(I, H, 2), lambda: nn.LSTM(I, H, 2)),
    Row("LSTM proj_size", lambda: rnnkit.LSTM(I, H, 1, proj_size=3), lambda: nn.LSTM(I, H, 1, proj_size=3)),
    Row("GRU bidirectional", lambda: rnnkit.GRU(I, H, 2, bidirectional=True),
        lambda: nn.GRU(I, H, 2, bidirectional=True)),
    Row("RNN tanh", lambda: rnnkit.RNN(I, H, 2), lambda: nn.RNN(I, H, 2)),
    Row("RNN relu", lambda: rnnkit.RNN(I, H, 1, nonlinearity="relu"),
        lambda: nn.RNN(I, H, 1, nonlinearity="relu")),
    Row("LSTMCell", lambda: rnnkit.LSTMCell(I, H), lambda: nn.LSTMCell(I, H), cell=True),
    Row("GRUCell", lambda: rnnkit.GRUCell(I, H), lambda: nn.GRUCell(I, H), cell=True),
    Row("RNNCell", lambda: rnnkit.RNNCell(I, H), lambda: nn.RNNCell(I, H), cell=True),
    # rnnkit's own families (a test module may register a toy cell while pytest collects)
    *(Row(f"Recurrent {name}", _recurrent(name), None) for name in rnnkit.cells.cell_names()
      if spec_class(name).__module__.startswith("rnnkit.")),
    Row("Recurrent lstm layer_norm peephole", _recurrent("lstm", layer_norm=True, peephole=True), None),
    Row("Recurrent gru layer_norm", _recurrent("gru", layer_norm=True), None),
    Row("Recurrent lstm zoneout (eval)", _recurrent("lstm", zoneout=0.2), None),
]


# ---- features -------------------------------------------------------------------------------
# Each returns (ours, truth): lists of tensors to compare. An exception from ``ours`` is the
# entry's message; one from ``truth`` is a bug in this test.

def _tensors(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    out: list[torch.Tensor] = []
    for r in result:
        out.extend(_tensors(r))
    return out


def _loss(module, x):
    return sum((t.float() * (k + 1)).pow(2).sum() for k, t in enumerate(_tensors(module(x))))


def forward(row, ours, truth):
    _, x = row.inputs()
    return _tensors(ours(x)), _tensors(truth(x))


def gradients(row, ours, truth):
    def grads(module):
        x = row.inputs()[1].requires_grad_()
        return list(torch.autograd.grad(_loss(module, x), [x, *module.parameters()]))

    return grads(ours), grads(truth)


def gradient_penalty(row, ours, truth):
    """WGAN-GP style double backward, d/dθ [L + ||dL/dx||^2], in float64: the penalty's gradients
    reach 1e6 with layer norm, where float32 rounding alone exceeds the tolerance."""
    def grads(module):
        module = copy.deepcopy(module).double()
        x = row.inputs(torch.float64)[1].requires_grad_()
        loss = _loss(module, x)
        (dx,) = torch.autograd.grad(loss, x, create_graph=True)
        return list(torch.autograd.grad(loss + dx.pow(2).sum(), list(module.parameters())))

    return grads(ours), grads(truth)


def gradgradcheck_f64(row, ours, truth):
    ours = copy.deepcopy(ours).double()
    x = row.inputs(torch.float64)[1][..., :2, :].clone().requires_grad_()  # small: B=2 (cells: 2 rows)
    ok = torch.autograd.gradgradcheck(lambda t: tuple(_tensors(ours(t))), (x,), eps=1e-6, atol=1e-6)
    return [torch.tensor(float(ok))], [torch.tensor(1.0)]


def func_grad(row, ours, truth):
    def grads(module):
        params = {k: v.detach() for k, v in module.named_parameters()}
        return list(torch.func.grad(
            lambda p: _loss(lambda x: torch.func.functional_call(module, p, (x,)), row.inputs()[1])
        )(params).values())

    return grads(ours), grads(truth)


def func_vmap(row, ours, truth):
    x = torch.stack([row.inputs()[1] * k for k in (1, 2, 3)])
    per_sample = [_tensors(truth(t)) for t in x]
    return _tensors(torch.func.vmap(ours)(x)), [torch.stack(list(outs)) for outs in zip(*per_sample, strict=True)]


def func_jacrev(row, ours, truth):
    x = row.inputs()[1][..., :1, :]  # a small Jacobian

    def jac(module):
        return _tensors(torch.func.jacrev(lambda t: _tensors(module(t))[0])(x))

    return jac(ours), jac(truth)


def func_jvp(row, ours, truth):
    x = row.inputs()[1]
    tangent = torch.ones_like(x)

    def jvp(module):
        return list(torch.func.jvp(lambda t: _tensors(module(t))[0], (x,), (tangent,)))

    return jvp(ours), jvp(truth)


def jit_trace(row, ours, truth):
    x, other = row.inputs()
    with torch.no_grad():
        traced = torch.jit.trace(ours, (x,))
    return _tensors(traced(other)), _tensors(truth(other))


def jit_script(row, ours, truth):
    _, x = row.inputs()
    return _tensors(torch.jit.script(ours)(x)), _tensors(truth(x))


def compile_inference(row, ours, truth):
    """fullgraph=True: the kernels are custom operators, so nothing breaks the graph."""
    _, x = row.inputs()
    torch._dynamo.reset()  # each row's compiles count from zero (Dynamo's recompile limit)
    with torch.no_grad():
        return _tensors(torch.compile(ours, backend="aot_eager", fullgraph=True)(x)), _tensors(truth(x))


def compile_training(row, ours, truth):
    """One SGD step of a compiled module, then its output: the step's gradients went through it."""
    torch._dynamo.reset()

    def step(module, compiled):
        module = copy.deepcopy(module)
        run = torch.compile(module, backend="aot_eager") if compiled else module
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        _loss(run, row.inputs()[1]).backward()
        opt.step()
        with torch.no_grad():
            return _tensors(module(row.inputs()[1]))

    return step(ours, True), step(truth, False)


def export(row, ours, truth):
    """Exported with dynamic batch (and time) dimensions, run on the other shape."""
    x, other = row.inputs()
    dims = {0: torch.export.Dim("B", min=2, max=64)} if row.cell else {
        0: torch.export.Dim("T", min=2, max=64), 1: torch.export.Dim("B", min=2, max=64)}
    exported = torch.export.export(ours, (x,), dynamic_shapes=(dims,)).module()
    return _tensors(exported(other)), _tensors(truth(other))


def autocast_bf16(row, ours, truth):
    _, x = row.inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return _tensors(ours(x)), _tensors(truth(x))


class Warned(Exception):
    """A feature that ran but warned that it did not apply (shown like a refusal, with its text)."""


def quantize_dynamic(row, ours, truth):
    """rnnkit.quantize_dynamic on ours; torch's on torch.nn's (torch's skips rnnkit's classes: it
    matches module types exactly). For Recurrent rows the truth is the float reference."""
    _, x = row.inputs()
    quantize = getattr(rnnkit, "quantize_dynamic", None)
    if quantize is None:
        raise NotImplementedError("torch.ao.quantization.quantize_dynamic matches exact types and "
                                  "skips rnnkit's modules; no rnnkit.quantize_dynamic yet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        q_ours = quantize(nn.Sequential(ours))
    left = [str(w.message) for w in caught if str(w.message).startswith("rnnkit.quantize_dynamic")]
    if left:  # a layer it cannot quantize stays in float, and it says so: the entry shows that
        raise Warned(left[0])
    q_truth = (torch.ao.quantization.quantize_dynamic(nn.Sequential(truth), dtype=torch.qint8)
               if row.torch_make else truth)
    return _tensors(q_ours(x)), _tensors(q_truth(x))


def deepcopy_and_pickle(row, ours, truth):
    _, x = row.inputs()
    ours(x)  # a module that has run (it may hold caches) must still copy
    copied = pickle.loads(pickle.dumps(copy.deepcopy(ours)))
    buffer = io.BytesIO()
    torch.save(copied.state_dict(), buffer)
    buffer.seek(0)
    copied.load_state_dict(torch.load(buffer, weights_only=True))
    return _tensors(copied(x)), _tensors(truth(x))


def _converted(dtype):
    def feature(row, ours, truth):
        x = row.inputs()[1].to(dtype)
        return _tensors(copy.deepcopy(ours).to(dtype)(x)), _tensors(copy.deepcopy(truth).to(dtype)(x))

    feature.__name__ = f"to_{str(dtype).removeprefix('torch.')}"
    return feature


def data_parallel(row, ours, truth):
    _, x = row.inputs()
    return _tensors(nn.DataParallel(ours)(x)), _tensors(truth(x))


FEATURES: dict[str, Callable] = {
    "forward": forward,
    "backward": gradients,
    "double backward (gradient penalty)": gradient_penalty,
    "gradgradcheck float64": gradgradcheck_f64,
    "torch.func.grad": func_grad,
    "torch.func.vmap": func_vmap,
    "torch.func.jacrev": func_jacrev,
    "torch.func.jvp (forward AD)": func_jvp,
    "torch.jit.trace (other shape)": jit_trace,
    "torch.jit.script": jit_script,
    "torch.compile inference (fullgraph)": compile_inference,
    "torch.compile training step": compile_training,
    "torch.export (dynamic T, B)": export,
    "autocast bfloat16": autocast_bf16,
    "quantize_dynamic": quantize_dynamic,
    "deepcopy / pickle / state_dict": deepcopy_and_pickle,
    ".double()": _converted(torch.float64),
    ".half()": _converted(torch.float16),
    ".bfloat16()": _converted(torch.bfloat16),
    "DataParallel (CPU)": data_parallel,
}

_TOLERANCE = {torch.float64: 1e-8, torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}
# autocast computes in bfloat16 whatever the output dtype: two implementations round differently
# (the parity tests' bf16 tolerance)
_FEATURE_TOLERANCE = {"autocast_bf16": 2e-2}


def evaluate(row: Row, feature: Callable) -> tuple[str, str]:
    """("ok", "") or ("raises", first line of the message) or ("DIFFERENT", what differs)."""
    ours, truth = row.pair()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, expected = feature(row, ours, truth)
    except Exception as exc:  # the entry is "raises"; the message says what and why
        text = str(exc).strip().splitlines()
        return "raises", f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
    if len(got) != len(expected):
        return "DIFFERENT", f"{len(got)} outputs, expected {len(expected)}"
    for a, b in zip(got, expected, strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            return "DIFFERENT", f"{a.dtype}{tuple(a.shape)} where the truth is {b.dtype}{tuple(b.shape)}"
        tol = _FEATURE_TOLERANCE.get(feature.__name__, _TOLERANCE.get(b.dtype, 2e-5))
        scale = max(1.0, b.detach().abs().max().item()) if b.numel() else 1.0
        if b.numel() and (a.detach().double() - b.detach().double()).abs().max().item() > tol * scale:
            return "DIFFERENT", f"max difference {(a - b).abs().max().item():.3g}"
    return "ok", ""


# ---- the document ---------------------------------------------------------------------------

def row_entries(row: Row) -> list[tuple[str, str]]:
    return [evaluate(row, feature) for feature in FEATURES.values()]


def render(results: dict[str, list[tuple[str, str]]]) -> str:
    """The markdown: one table (✔ / ✘n), then the footnotes: each distinct message once."""
    notes: list[str] = []
    lines = ["| module | " + " | ".join(FEATURES) + " |", "|---" * (len(FEATURES) + 1) + "|"]
    for name, entries in results.items():
        cells = []
        for outcome, message in entries:
            if outcome == "ok":
                cells.append("✔")
                continue
            message = _generic(message)
            if message not in notes:
                notes.append(message)
            cells.append(("✘" if outcome == "raises" else "**DIFFERENT** ") + str(notes.index(message) + 1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    footnotes = [f"{k}. {m}" for k, m in enumerate(notes, 1)]
    return HEADER + "\n".join(lines) + "\n\n✘n: the call raises; its message:\n\n" + "\n".join(footnotes) + "\n"


def _generic(message: str) -> str:
    """The message without what varies between rows (sizes, addresses), so rows share footnotes."""
    message = re.sub(r"0x[0-9a-f]+", "0x…", message)
    return message.replace("|", "/")


HEADER = """# rnnkit and PyTorch's features

Generated by `tests/torch_integration/test_torch_features.py` (regenerate: run it with `.venv/bin/python`);
`make test` checks that every row below is what the code does now. ✔: the same numbers as the truth
(torch.nn's module with the same weights for the drop-ins, with the feature applied where it changes
the numbers; the reference executor for `Recurrent` families), within the parity tests' tolerance.
✘n: the call raises the error in note n (or, marked `Warned`, runs and warns that it did not apply).
No entry may be silently different: such an entry fails the
test. ONNX export needs the `onnx` package, which rnnkit does not install yet (issue #19);
DistributedDataParallel is tested in `tests/training/test_training_ddp.py`.

"""


def _doc_rows() -> dict[str, str]:
    rows = {}
    if DOC.exists():
        for line in DOC.read_text(encoding="utf-8").splitlines():
            if line.startswith("| ") and not line.startswith("| module"):
                rows[line.split(" | ")[0][2:]] = line
    return rows


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_no_feature_is_silently_different_and_the_doc_row_is_current(row):
    entries = row_entries(row)
    different = [f"{feature}: {message}" for feature, (outcome, message) in zip(FEATURES, entries, strict=True)
                 if outcome == "DIFFERENT"]
    assert not different, f"silently different for {row.name}: {different}"
    # the doc's row, with this row's footnote numbers resolved through the doc's own footnotes
    doc_line = _doc_rows().get(row.name)
    assert doc_line is not None, f"{row.name} is missing from {DOC.name}: regenerate it"
    notes = dict(re.findall(r"^(\d+)\. (.*)$", DOC.read_text(encoding="utf-8"), flags=re.M))
    documented = [c.strip() for c in doc_line.strip("|").split("|")[1:]]
    for feature, (outcome, message), cell in zip(FEATURES, entries, documented, strict=True):
        if outcome == "ok":
            assert cell == "✔", f"{row.name} / {feature}: works now, {DOC.name} says {cell}: regenerate"
        else:
            number = cell.removeprefix("✘")
            assert notes.get(number) == _generic(message), (
                f"{row.name} / {feature}: raises {message!r}, {DOC.name} says {cell}: regenerate")


if __name__ == "__main__":
    results = {}
    for row in ROWS:
        results[row.name] = row_entries(row)
        print(row.name, "".join("." if o == "ok" else "x" if o == "raises" else "D" for o, _ in results[row.name]),
              file=sys.stderr)
    DOC.write_text(render(results), encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
