"""``rnnkit.explain(module)``: which executor runs each recurrent layer, and why."""

from __future__ import annotations

from torch import nn

from rnnkit.layers.recurrent import Recurrent


def explain_layer(layer: Recurrent, name: str = "", return_states: bool = False) -> list[str]:
    plan = layer.plan(return_states=return_states)
    mode = "training" if layer.training else "eval"
    head = f"{name or type(layer).__name__} ({layer.cell_name}, {mode}, backend={layer.backend!r})"
    if plan.whole_stack:
        ex = plan.executors[0][0]
        return [f"{head}: all {layer.num_layers} layer(s) in one call to {ex.name}: {ex.description}"]
    lines = [f"{head}: per layer ({plan.stack_refused})"]
    for i, per_direction in enumerate(plan.executors):
        for d, ex in enumerate(per_direction):
            where = f"layer {i}" + (" reverse" if d else "") if layer.bidirectional else f"layer {i}"
            why = "; ".join(f"{k}: {v}" for k, v in plan.refused[i][d].items())
            lines.append(f"  {where}: {ex.name}" + (f" (not {why})" if why else ""))
    return lines


def explain(module: nn.Module) -> str:
    """A report, one block per recurrent layer inside ``module``: the executor that will run it
    (given its current device, dtype and train/eval mode) and the reasons faster ones refused."""
    lines: list[str] = []
    for name, sub in module.named_modules():
        if isinstance(sub, Recurrent):
            lines.extend(explain_layer(sub, name))
    if not lines:
        return "no rnnkit recurrent layers in this module"
    return "\n".join(lines)
