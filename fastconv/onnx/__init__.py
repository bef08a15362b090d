"""ONNX import and export (needs the ``onnx`` package: ``pip install "fastconv[onnx]"``).

- ``export(model, path, opset=17)`` writes a fastconv model as an ONNX file.
  channels_last layers run on ONNX's NCHW operators between Transpose nodes (the
  model's input and output keep fastconv's layout); channels_first models are NCHW
  throughout.

The onnx package is imported on first use, so ``import fastconv.onnx`` works without
it.
"""
from ._export import export

__all__ = ["export"]
