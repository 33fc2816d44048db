"""Choosing an executor: the fastest one whose ``supports`` says yes, per layer, or torch's kernel for
a whole stack (:func:`plan_stack`).

``backend="auto"`` walks the priority list (an executor that supports a request may still yield it
to a named faster one through an optional ``yields_to(cell, request) -> name | None`` method);
naming a backend that cannot run the configuration
raises :class:`~rnnkit.errors.BackendUnavailable` with the executor's reason: never a silent slow path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rnnkit.cells.base import CellSpec
from rnnkit.errors import BackendUnavailable
from rnnkit.executors.base import Executor, RunRequest
from rnnkit.executors.fused_cpu import FusedCPUExecutor
from rnnkit.executors.native import NativeExecutor
from rnnkit.executors.reference import ReferenceExecutor
from rnnkit.executors.scan import ScanExecutor

_REGISTRY: dict[str, Executor] = {}
_PRIORITY: list[str] = []


def register_executor(executor: Executor, *, before: str | None = "reference") -> None:
    """Add an executor; ``before`` places it ahead of that one in auto's priority list."""
    _REGISTRY[executor.name] = executor
    if executor.name in _PRIORITY:
        _PRIORITY.remove(executor.name)
    if before is not None and before in _PRIORITY:
        _PRIORITY.insert(_PRIORITY.index(before), executor.name)
    else:
        _PRIORITY.append(executor.name)


register_executor(ReferenceExecutor(), before=None)
register_executor(NativeExecutor())
register_executor(FusedCPUExecutor(), before="native")
register_executor(ScanExecutor(), before="fused_cpu")


def backend_names() -> list[str]:
    """Executors in auto's order of preference."""
    return list(_PRIORITY)


def get_executor(name: str) -> Executor:
    if name not in _REGISTRY:
        raise BackendUnavailable(
            f"unknown backend {name!r}; choose 'auto' or one of: {', '.join(_PRIORITY)}"
        )
    return _REGISTRY[name]


def validate_backend(name: str) -> str:
    if name != "auto":
        get_executor(name)
    return name


def choose(cell: CellSpec, request: RunRequest, backend: str = "auto") -> tuple[Executor, dict[str, str]]:
    """The executor to run ``cell`` for ``request``, and why the ones ahead of it refused."""
    if backend != "auto":
        executor = get_executor(backend)
        reason = executor.supports(cell, request)
        if reason is not None:
            raise BackendUnavailable(f"backend {backend!r} cannot run this layer: {reason}")
        return executor, {}
    refused: dict[str, str] = {}
    for name in _PRIORITY:
        executor = _REGISTRY[name]
        reason = executor.supports(cell, request)
        if reason is None:
            # an executor may defer to a faster one for some configurations (``yields_to``)
            other = getattr(executor, "yields_to", lambda c, r: None)(cell, request)
            if other is not None and other in _REGISTRY and _REGISTRY[other].supports(cell, request) is None:
                reason = f"{other!r} is faster for this configuration"
        if reason is None:
            return executor, refused
        refused[name] = reason
    raise AssertionError("the reference executor supports everything")  # pragma: no cover


@dataclass
class ExecutionPlan:
    """How a forward pass will run: one native call for the whole stack, or an executor per
    (layer, direction), with the reasons faster executors refused."""

    whole_stack: bool
    executors: list[list[Executor]]
    refused: list[list[dict[str, str]]] = field(default_factory=list)
    stack_refused: str | None = None
    capture: str | None = None  # the tracer recording the call ("torch.jit.trace", "torch.export")
    autocast: bool = False  # torch.autocast is on for the call's device


def plan_stack(
    cells: list[CellSpec], num_directions: int, backend: str, request: RunRequest,
    layers_joined_by: str | None = None,
) -> ExecutionPlan:
    """The plan of a stack of ``cells`` (one per layer): torch's kernel for the whole stack in one call
    when the backend allows it, native is the choice for the cell and nothing joins the layers but
    torch.nn's inter-layer dropout (``layers_joined_by``: what else does, e.g. residual connections);
    else :func:`choose` per layer."""
    stack_refused = _whole_stack_refusal(cells[0], backend, request, layers_joined_by)
    if stack_refused is None:
        native = get_executor("native")
        return ExecutionPlan(True, [[native] * num_directions] * len(cells),
                             capture=request.capture, autocast=request.autocast)
    executors, refused = [], []
    for spec in cells:
        chosen, why = choose(spec, request, backend)
        executors.append([chosen] * num_directions)
        refused.append([why] * num_directions)
    return ExecutionPlan(False, executors, refused, stack_refused, request.capture, request.autocast)


def _whole_stack_refusal(cell: CellSpec, backend: str, request: RunRequest, layers_joined_by: str | None) -> str | None:
    if backend not in ("auto", "native"):
        return f"backend={backend!r}"
    reason = get_executor("native").supports(cell, request)
    if reason is not None:
        return reason
    if backend == "auto":
        preferred, _ = choose(cell, request)
        if preferred.name != "native":
            return f"auto prefers {preferred.name!r} for this cell"
    return layers_joined_by
