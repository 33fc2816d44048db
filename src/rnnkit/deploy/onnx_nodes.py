"""A small ONNX graph writer for the app exports that put nodes around a Recurrent stack's graph
(speech, translation): constants as initializers, one node per call named after its output."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class GraphNodes:
    """Nodes and initializers written around a Recurrent stack's graph (``build_onnx_model``), each
    named after its output."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.helper, self.numpy_helper = onnx, onnx.helper, onnx.numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._constants: dict[str, Any] = {}

    def const(self, name: str, value: Tensor | list[int] | float) -> str:
        if isinstance(value, list):
            array = torch.tensor(value, dtype=torch.int64).numpy()
        elif isinstance(value, float):
            array = torch.tensor(value, dtype=torch.float32).numpy()
        else:
            array = value.detach().to("cpu", torch.float32).contiguous().numpy()
        if name in self._constants:  # one initializer per name: asking again for the same value reuses it
            if not (self._constants[name].shape == array.shape and (self._constants[name] == array).all()):
                raise ValueError(f"two constants named {name!r}")
            return name
        self._constants[name] = array
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def add(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(self, x: str, layer: torch.nn.Linear, stem: str) -> str:
        mm = self.add("MatMul", [x, self.const(f"{stem}_wt", layer.weight.t())], f"{stem}_mm")
        return self.add("Add", [mm, self.const(f"{stem}_b", layer.bias)], stem)

    def conv(self, x: str, conv: torch.nn.Conv2d, stem: str) -> str:
        y = self.add("Conv", [x, self.const(f"{stem}_w", conv.weight), self.const(f"{stem}_b", conv.bias)],
                     f"{stem}_conv", strides=list(conv.stride))
        return self.add("Relu", [y], stem)
