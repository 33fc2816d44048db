"""nn.Modules users build with."""

from rnnkit.layers.recurrent import ExecutionPlan, Recurrent

__all__ = ["ExecutionPlan", "Recurrent"]
