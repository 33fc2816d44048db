"""The conformance cases, generated from the cell registry: every registered family x its option
examples (``rnnkit.cells.registry.option_examples``) x every executor whose ``supports()`` accepts it.
A family registered anywhere (even in a test file) before collection is picked up with no other change.
"""

from __future__ import annotations

import torch

from rnnkit.cells import make_cell
from rnnkit.cells.registry import cell_names, option_examples
from rnnkit.executors import RunRequest, backend_names, get_executor

F64 = torch.float64
CPU = torch.device("cpu")


def case_id(name: str, options: dict, backend: str | None = None) -> str:
    parts = [name, *(k if v is True else f"{k}={v}" for k, v in sorted(options.items()))]
    return "-".join(parts + ([backend] if backend else []))


def family_cases() -> list[tuple[str, dict]]:
    return [(name, options) for name in cell_names() for options in option_examples(name)]


def executor_cases(request: RunRequest | None = None) -> list[tuple[str, dict, str, str | None]]:
    """(family, options, executor, refusal) for every executor but the reference; ``refusal`` is
    ``supports()``' reason (the test reports it as the skip reason) or None."""
    request = request or RunRequest(CPU, F64)
    out = []
    for name, options in family_cases():
        cell = make_cell(name, 3, 4, **options)
        for backend in backend_names():
            if backend != "reference":
                out.append((name, options, backend, get_executor(backend).supports(cell, request)))
    return out


def random_params(cell, seed: int = 0, dtype=F64) -> dict[str, torch.Tensor]:
    """Parameters away from any special point (layer-norm gains near 1, IndRNN's u inside its box)."""
    g = torch.Generator().manual_seed(seed)
    params = {}
    for k, shape in cell.param_shapes().items():
        p = torch.randn(shape, generator=g, dtype=dtype) * 0.5
        if k.startswith("layer_norm_") and k.endswith("_weight"):
            p = p + 1.0
        params[k] = p.requires_grad_()
    return params
