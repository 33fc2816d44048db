"""``rnnkit.explain(module, *example_inputs)``: which executor runs each recurrent layer, and why."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from rnnkit.layers.recurrent import ExecutionPlan, Recurrent


def explain_layer(
    layer: Recurrent, name: str = "", return_states: bool = False, plan: ExecutionPlan | None = None
) -> list[str]:
    """The report's lines for one layer: ``plan`` (a call's, from :meth:`Recurrent.plan_for`) or,
    without it, the plan of a call whose batch size is unknown."""
    if plan is None:
        plan = layer.plan(return_states=return_states)
    mode = "training" if layer.training else "eval"
    head = f"{name or type(layer).__name__} ({layer.cell_name}, {mode}, backend={layer.backend!r})"
    step_note = (["  step(): int8 weights and per-step int8 activations on the C++ step (rnnkit.quantize_step)"]
                 if layer.step_precision == "int8" else [])
    if plan.whole_stack:
        ex = plan.executors[0][0]
        return [f"{head}: all {layer.num_layers} layer(s) in one call to {ex.name}: {ex.description}", *step_note]
    lines = [f"{head}: per layer ({plan.stack_refused})"]
    for i, per_direction in enumerate(plan.executors):
        for d, ex in enumerate(per_direction):
            where = f"layer {i}" + (" reverse" if d else "") if layer.bidirectional else f"layer {i}"
            why = "; ".join(f"{k}: {v}" for k, v in plan.refused[i][d].items())
            lines.append(f"  {where}: {ex.name}" + (f" (not {why})" if why else ""))
    dtype = next((p.dtype for p in layer.parameters()), None)
    notes = {note for per_direction in plan.executors for ex in per_direction
             if dtype is not None and (note := ex.precision(dtype)) is not None}
    lines.extend(f"  {note}" for note in sorted(notes))
    return lines + step_note


def call_plans(module: nn.Module, *example_inputs: Any, **example_kwargs: Any) -> list[tuple[str, ExecutionPlan]]:
    """``(name, plan)`` for every call of an rnnkit layer that ``module(*example_inputs,
    **example_kwargs)`` makes, each built as that layer's forward builds it.

    A :class:`Recurrent` is planned from its arguments without running. Any other module runs once,
    on a copy (its buffers, e.g. batch-norm statistics, and the random state stay untouched) and
    without autograd (the plan does not depend on it), so that each layer sees its real input."""
    if isinstance(module, Recurrent):
        return [("", module.plan_for(*example_inputs, **example_kwargs))]
    copied = copy.deepcopy(module)
    plans: list[tuple[str, ExecutionPlan]] = []
    hooks = []
    for name, sub in copied.named_modules():
        if isinstance(sub, Recurrent):
            def record(layer: nn.Module, args: tuple, kwargs: dict, name: str = name) -> None:
                if "hx" in kwargs:  # the drop-ins' name for the state
                    kwargs = dict(kwargs)
                    kwargs["state"] = kwargs.pop("hx")
                plans.append((name, Recurrent.plan_for(layer, *args, **kwargs)))  # type: ignore[arg-type]

            hooks.append(sub.register_forward_pre_hook(record, with_kwargs=True))
    devices = sorted({p.device for p in copied.parameters() if p.device.type == "cuda"}, key=str)
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        copied(*example_inputs, **example_kwargs)
    for hook in hooks:
        hook.remove()
    return plans


def explain(module: nn.Module, *example_inputs: Any, **example_kwargs: Any) -> str:
    """A report, one block per recurrent layer inside ``module``: the executor that will run it and
    the reasons faster ones refused.

    Without example inputs it assumes a call of the current device, dtype and train/eval mode with an
    unknown batch size (``auto`` also chooses by batch size, and by masks, lengths, ``vmap``,
    autocast and tracing). With them (``explain(model, x)`` or ``explain(model, x, state)``, keyword
    arguments too) it reports the executors of exactly that call: one block per layer call."""
    lines: list[str] = []
    if example_inputs or example_kwargs:
        layers = dict(module.named_modules())
        for name, plan in call_plans(module, *example_inputs, **example_kwargs):
            lines.extend(explain_layer(layers[name], name, plan=plan))  # type: ignore[arg-type]
    else:
        for name, sub in module.named_modules():
            if isinstance(sub, Recurrent):
                lines.extend(explain_layer(sub, name))
    if not lines:
        return "no rnnkit recurrent layers in this module"
    return "\n".join(lines)
