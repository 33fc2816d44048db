"""Deployment: ONNX export with explicit state inputs and outputs (:func:`export_onnx`), and
``torch.export`` archives (:func:`export_pt2`)."""

from rnnkit.deploy.onnx_export import OnnxExportError, build_onnx_model, export_onnx, onnx_session
from rnnkit.deploy.pt2_export import export_pt2

__all__ = ["OnnxExportError", "build_onnx_model", "export_onnx", "export_pt2", "onnx_session"]
