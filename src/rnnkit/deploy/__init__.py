"""Deployment: ONNX export with explicit state inputs and outputs (:func:`export_onnx`)."""

from rnnkit.deploy.onnx_export import OnnxExportError, build_onnx_model, export_onnx, onnx_session

__all__ = ["OnnxExportError", "build_onnx_model", "export_onnx", "onnx_session"]
