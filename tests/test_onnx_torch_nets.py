"""PyTorch's ResNet-20 and MobileNetV2 (the networks of bench/bench_modern_nets.py, written
layer for layer as fastconv.applications builds them) -> torch.onnx.export ->
fastconv.onnx.load: fastconv's predictions equal PyTorch's within 1e-5 of the output
scale, in both data formats (issue 27)."""
import os
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

import fastconv.onnx as fonnx  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "bench"))
import bench_modern_nets  # noqa: E402


@pytest.mark.parametrize("net", ["resnet20", "mobilenet_v2"])
@pytest.mark.parametrize("opset", [13, 17])
def test_torch_network_through_onnx(tmp_path, net, opset):
    torch.manual_seed(0)
    model = bench_modern_nets.torch_net(torch, net)[0].eval()
    for module in model.modules():  # statistics that make eval mode more than identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.data.uniform_(-0.1, 0.1)
            module.running_var.data.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
    path = str(tmp_path / f"{net}.onnx")
    torch.onnx.export(model, x, path, opset_version=opset, dynamo=False,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}})
    scale = float(np.abs(expected).max())
    for data_format in ("channels_first", "channels_last"):
        loaded = fonnx.load(path, data_format=data_format)
        xx = x.numpy()
        if data_format == "channels_last":
            xx = np.ascontiguousarray(xx.transpose(0, 2, 3, 1))
        got = loaded.predict(xx, verbose=0)
        assert np.abs(got - expected).max() <= 1e-5 * scale, data_format
