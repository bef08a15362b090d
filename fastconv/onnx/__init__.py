"""ONNX import and export (needs the ``onnx`` package: ``pip install "fastconv[onnx]"``).

- ``export(model, path, opset=17)`` writes a fastconv model (Sequential or functional
  Model) as an ONNX file.
  channels_last layers run on ONNX's NCHW operators between Transpose nodes (the
  model's input and output keep fastconv's layout); channels_first models are NCHW
  throughout.
- ``load(path, data_format="channels_first")`` builds a fastconv model from an ONNX
  file: Sequential for a chain of operators, a functional Model for a graph with
  branches or several inputs or outputs.  ``data_format="channels_last"`` gives a
  model that takes (N, H, W, C) images where the ONNX model takes (N, C, H, W) (the
  weights rearranged, the predictions the same).

The onnx package is imported on first use, so ``import fastconv.onnx`` works without
it.  Nothing in a file is executed: a graph is read as data, an operator outside the
supported list raises an error naming the operator and its node, and external tensor
data is read only from files inside the model's own folder.
"""
from ._export_model import export
from ._import import load
from ._tensors import OnnxImportError

__all__ = ["export", "load", "OnnxImportError"]
