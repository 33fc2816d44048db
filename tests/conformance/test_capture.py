"""Graph capture of every registered cell family x its option examples, in float32 and bfloat16:
``torch.export`` with dynamic time and batch, and ``torch.compile(fullgraph=True)``, each equal to
eager on shapes the capture did not see (inference; a two-layer ``Recurrent``)."""

from __future__ import annotations

import pytest
import torch

import rnnkit

from .cases import case_id, family_cases

pytestmark = pytest.mark.usefixtures("fresh_dynamo")  # compiles many modules (conftest)

DTYPES = [torch.float32, torch.bfloat16]
SHAPES = [(9, 7, 4), (2, 2, 4), (17, 3, 4)]


def _module(name: str, options: dict, dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    return rnnkit.Recurrent(name, 4, 6, 2, **options).eval().to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", family_cases(), ids=lambda c: case_id(*c))
def test_export_with_dynamic_time_and_batch(case, dtype):
    module = _module(*case, dtype)
    dims = {0: torch.export.Dim("T", min=2, max=512), 1: torch.export.Dim("B", min=2, max=512)}
    program = torch.export.export(module, (torch.randn(5, 3, 4, dtype=dtype),), dynamic_shapes=(dims,))
    with torch.no_grad():
        for shape in SHAPES:
            x = torch.randn(*shape, dtype=dtype)
            torch.testing.assert_close(program.module()(x), module(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", family_cases(), ids=lambda c: case_id(*c))
def test_compile_fullgraph(case, dtype):
    module = _module(*case, dtype)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager", dynamic=True)
    with torch.no_grad():
        for shape in SHAPES:
            x = torch.randn(*shape, dtype=dtype)
            torch.testing.assert_close(compiled(x), module(x))
