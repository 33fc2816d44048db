"""The Triton scan kernel, run on CPU by Triton's interpreter (``TRITON_INTERPRET=1``).

The interpreter is chosen when triton is first imported, so the checks run in a subprocess with the
variable set: the pytest worker's own triton state (if any) is untouched. Small sizes only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import torch
    from rnnkit.cells import make_cell
    from rnnkit.executors import StepMasks
    from rnnkit.executors.reference import ReferenceExecutor
    from rnnkit.executors.scan import ScanExecutor
    from rnnkit.executors.triton_scan import linear_scan

    torch.manual_seed(0)
    tri = ScanExecutor("triton")

    def grads(ex, cell, params, x, h0, lengths, reverse, masks=None):
        r = ex.run(cell, params, x, (h0,), lengths, reverse, masks)
        w = torch.randn(r.outputs.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
        loss = (r.outputs * w).sum() + r.final_state[0].pow(2).sum()
        return (r.outputs, r.final_state[0], *torch.autograd.grad(loss, [x, h0, *params.values()]))

    import sys
    full = sys.argv[1] == "full"
    cases = [(n, T, r) for n in ("mingru", "minlstm") for T in (1, 5, 16, 37) for r in (False, True)]
    if not full:  # 37 spans three 16-step chunks, the last one partial
        cases = [("minlstm", 21, True)]
    worst = 0.0
    for name, T, reverse in cases:
            if True:
                cell = make_cell(name, 3, 5)
                params = {k: torch.randn(s, dtype=torch.float64).requires_grad_()
                          for k, s in cell.param_shapes().items()}
                x = torch.randn(T, 3, 3, dtype=torch.float64, requires_grad=True)
                h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
                lengths = torch.tensor([T, max(1, T // 2), max(1, T - 1)])
                z = StepMasks(None, (torch.tensor(0.25, dtype=torch.float64),))
                combos = ((None, None), (lengths, None), (lengths, z)) if full else ((lengths, z),)
                for L, masks in combos:
                    a = grads(ReferenceExecutor(), cell, params, x, h0, L, reverse, masks)
                    b = grads(tri, cell, params, x, h0, L, reverse, masks)
                    for u, v in zip(a, b):
                        worst = max(worst, (u - v).abs().max().item())
    print("max_abs_diff", worst)

    # float64 gradcheck of the scan itself, several chunks (block_t=4)
    a = torch.rand(11, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(6, dtype=torch.float64, requires_grad=True)
    for reverse in (False, True):
        ok = torch.autograd.gradcheck(
            lambda a, b, h0: linear_scan(a, b, h0, reverse, block_t=4, block_n=4), (a, b, h0))
        print("gradcheck", reverse, ok)
    # second order: the backward recomputes with the differentiable sequential scan
    small = [t.detach()[:5, :3].clone().requires_grad_() for t in (a, b)]
    ok = all(torch.autograd.gradgradcheck(
        lambda a, b, h0: linear_scan(a, b, h0, reverse, block_t=2, block_n=2),
        (*small, h0.detach()[:3].clone().requires_grad_())) for reverse in (False, True))
    print("gradgradcheck", ok)

    # long sequence, saturated gates: finite
    T = 2048 if full else 64
    a = torch.where(torch.rand(T, 8) < 0.5, 0.0, 1.0).requires_grad_()
    b = (torch.randn(T, 8) * 1e3).requires_grad_()
    h, last = linear_scan(a, b, torch.zeros(8), block_t=64)
    h.sum().backward()
    print("finite", bool(torch.isfinite(h).all() and torch.isfinite(a.grad).all()))
    """
)


def _check(mode: str) -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          env=env, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
    assert float(lines["max_abs_diff"]) < 1e-10, proc.stdout
    assert lines["gradcheck"] == "True True", proc.stdout  # the last one (reverse); each printed
    assert proc.stdout.count("\ngradcheck ") == 2 and "gradcheck False True\ngradcheck True True" in proc.stdout
    assert lines["finite"] == "True"
    assert lines["gradgradcheck"] == "True"


def test_triton_scan_matches_reference_in_interpreter():
    _check("quick")


@pytest.mark.slow
def test_triton_scan_matches_reference_in_interpreter_full():
    _check("full")


def test_scan_refuses_triton_on_cpu_without_interpreter(monkeypatch):
    import torch

    from rnnkit.cells import make_cell
    from rnnkit.executors import RunRequest
    from rnnkit.executors.scan import ScanExecutor

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = ScanExecutor("triton").supports(make_cell("mingru", 2, 3), RunRequest(torch.device("cpu"), torch.float32))
    assert reason is not None and "CUDA" in reason
