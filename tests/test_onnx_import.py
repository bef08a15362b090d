"""ONNX -> fastconv (fastconv.onnx.load): PyTorch's exports and hand-made graphs
against PyTorch and ONNX Runtime, fastconv's own exports back, and hostile files."""
import os
import tracemalloc

import numpy as np
import pytest

import fastconv
from fastconv import applications, layers
from fastconv.models import Sequential

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fastconv.onnx as fonnx  # noqa: E402
from fastconv.onnx import OnnxImportError  # noqa: E402


def _rng(seed=0):
    return np.random.default_rng(seed)


def _predict(model, x, data_format):
    if data_format == "channels_last" and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    y = model.predict(x, verbose=0)
    if data_format == "channels_last" and y.ndim == 4:
        y = y.transpose(0, 3, 1, 2)
    return y


def assert_close(got, expected, rel=1e-5):
    assert got.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-3)
    err = float(np.abs(got - expected).max())
    assert err <= rel * scale, (err, scale)


# ----------------------------------------------------------------- PyTorch
torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    return torch


def _lenet():
    nn = _torch().nn

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), \
                nn.Linear(84, 10)

        def forward(self, x):
            f = torch.nn.functional
            x = f.avg_pool2d(torch.tanh(self.c1(x)), 2)
            x = f.max_pool2d(torch.relu(self.c2(x)), 2)
            x = x.view(x.size(0), -1)  # Shape, Gather, Unsqueeze, Concat, Reshape
            x = torch.tanh(self.f2(torch.relu(self.f1(x))))
            return torch.softmax(self.f3(x), 1)
    return LeNet()


def _bn_net(relu6=True):
    nn = _torch().nn
    act = nn.ReLU6 if relu6 else nn.ReLU
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), act(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10), nn.BatchNorm1d(10),
        nn.Dropout(0.3), nn.Linear(10, 5))


def _randomize_bn(net):
    nn = torch.nn
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-1, 1)
    return net.eval()


def _torch_export(net, x, path, opset):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: the dynamo one needs onnxscript, not a peer here.
        torch.onnx.export(net, (torch.from_numpy(x),), str(path), opset_version=opset,
                          dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def _relu6_available():
    try:
        layers.Activation("relu6")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("which", ["lenet", "bn_relu", "bn_relu6"])
def test_pytorch_networks_load_with_pytorch_predictions(which, data_format, tmp_path):
    _torch().manual_seed(0)
    if which == "bn_relu6" and not _relu6_available():
        pytest.skip("this fastconv has no relu6 activation")
    net = _lenet().eval() if which == "lenet" else _randomize_bn(
        _bn_net(which == "bn_relu6"))
    shape = (1, 32, 32) if which == "lenet" else (3, 16, 12)
    x = _rng(1).standard_normal((5,) + shape).astype(np.float32)
    expected = _torch_export(net, x, tmp_path / "net.onnx", 17)
    model = fonnx.load(tmp_path / "net.onnx", data_format=data_format)
    assert_close(_predict(model, x, data_format), expected)
    kinds = [type(layer).__name__ for layer in model.layers]
    if which == "lenet":
        assert kinds == ["Conv2D", "AveragePooling2D", "Conv2D", "MaxPooling2D",
                         "Flatten", "Dense", "Dense", "Dense"]
    else:  # batch norms folded into the layers before them, Flatten into the pooling
        assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "GlobalAveragePooling2D",
                         "Dense", "Dense"]
    conv = model.layers[0]
    assert conv.data_format == data_format
    assert model.input_shape[1:] == (shape if data_format == "channels_first"
                                     else shape[1:] + shape[:1])


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_flatten_order_carried_through_batch_norm_to_linear(data_format, tmp_path):
    """channels_last: the NHWC flatten's order is carried through BatchNorm1d and
    ReLU (their parameters permuted) to the Linear's rows."""
    nn = _torch().nn
    _torch().manual_seed(11)
    net = _randomize_bn(nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(),
                                      nn.BatchNorm1d(36), nn.ReLU(), nn.Linear(36, 5)))
    x = _rng(11).standard_normal((4, 2, 6, 5)).astype(np.float32)
    expected = _torch_export(net, x, tmp_path / "fbn.onnx", 17)
    model = fonnx.load(tmp_path / "fbn.onnx", data_format=data_format)
    assert [type(la).__name__ for la in model.layers] == [
        "Conv2D", "Flatten", "BatchNormalization", "Activation", "Dense"]
    assert_close(_predict(model, x, data_format), expected)


def _decoder(crop):
    nn = _torch().nn
    extra = [nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1)] \
        if crop else []
    return nn.Sequential(
        nn.ConvTranspose2d(3, 4, 4, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(4),
        nn.ConvTranspose2d(4, 2, 3, stride=1, padding=1),
        nn.ConvTranspose2d(2, 2, 2, stride=2, dilation=1), *extra,
        nn.ConvTranspose2d(extra and 3 or 2, 2, 3, stride=2), nn.Sigmoid())


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("crop", [False, True])
def test_pytorch_transposed_convolutions_load(crop, data_format, tmp_path):
    if crop and getattr(layers, "Cropping2D", None) is None:
        pytest.skip("this fastconv has no Cropping2D")
    _torch().manual_seed(4)
    net = _randomize_bn(_decoder(crop))
    x = _rng(4).standard_normal((2, 3, 5, 4)).astype(np.float32)
    expected = _torch_export(net, x, tmp_path / "dec.onnx", 17)
    model = fonnx.load(tmp_path / "dec.onnx", data_format=data_format)
    assert_close(_predict(model, x, data_format), expected)
    kinds = [type(layer).__name__ for layer in model.layers]
    # the batch norm after a ReLU stays a layer (nothing to fold it into)
    assert kinds[:3] == ["Conv2DTranspose", "BatchNormalization", "Conv2DTranspose"]
    assert model.layers[0].padding == "same" and model.layers[0].activation == "relu"
    assert model.layers[1].axis == (1 if data_format == "channels_first" else 3)


def _small_net(gelu):
    nn = _torch().nn

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = nn.ZeroPad2d((1, 2, 0, 1))
            self.c1, self.c2 = nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 1)
            self.c3, self.c4 = nn.Conv2d(6, 6, 1), nn.Conv2d(6, 4, 1)
            self.acts = nn.ModuleList([
                nn.LeakyReLU(0.1), nn.ELU(0.5), nn.Hardtanh(0.0, 3.0), nn.SiLU(),
                nn.Hardswish(), nn.Hardsigmoid(), nn.Softplus(), nn.ELU(), nn.ReLU6(),
                nn.GELU() if gelu else nn.Identity(), nn.LeakyReLU(0.2)])
            self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
            self.up2 = nn.Upsample(scale_factor=(1, 3), mode="bilinear",
                                   align_corners=False)

        def forward(self, x):
            a = self.acts
            x = a[0](self.c1(self.pad(x)))
            x = a[2](a[1](x))[:, :, 1:, :-1]
            x = a[4](a[3](self.c2(self.up1(x))))
            x = a[6](a[5](self.c3(x)))
            x = a[8](a[7](self.up2(x)))
            x = a[10](a[9](self.c4(x)))
            return torch.nn.functional.adaptive_max_pool2d(x, 1).flatten(1)
    return Small()


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize("opset", [12, 17, 20])
def test_pytorch_small_layers_load(opset, data_format, tmp_path):
    _torch().manual_seed(6)
    net = _small_net(gelu=opset >= 20).eval()
    x = _rng(6).standard_normal((3, 3, 7, 6)).astype(np.float32) * 2
    expected = _torch_export(net, x, tmp_path / "small.onnx", opset)
    model = fonnx.load(tmp_path / "small.onnx", data_format=data_format)
    assert_close(_predict(model, x, data_format), expected)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"ZeroPadding2D", "Cropping2D", "UpSampling2D", "LeakyReLU", "ELU", "ReLU",
            "GlobalMaxPooling2D"} <= kinds
    acts = {layer.activation for layer in model.layers}
    assert {"leaky_relu", "silu", "hard_swish", "hard_sigmoid", "softplus", "elu",
            "relu6"} <= acts
    assert ("gelu" in acts) == (opset >= 20)


def _residual_net():
    nn = _torch().nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU())
            self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, 8, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(8))
            self.down = nn.Conv2d(8, 4, 1, stride=2)
            self.b = nn.Conv2d(8, 4, 3, stride=2, padding=1)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            x = self.stem(x)
            x = torch.relu(x + self.a(x))
            x = torch.cat([self.down(x), torch.sigmoid(self.b(x)) * self.down(x)], 1)
            return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1),
                                           1))
    return Block()


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_pytorch_residual_block_loads_as_a_functional_model(data_format, tmp_path):
    _torch().manual_seed(8)
    net = _randomize_bn(_residual_net())
    x = _rng(8).standard_normal((3, 3, 8, 6)).astype(np.float32)
    expected = _torch_export(net, x, tmp_path / "res.onnx", 17)
    model = fonnx.load(tmp_path / "res.onnx", data_format=data_format)
    assert type(model).__name__ == "Model"
    assert_close(_predict(model, x, data_format), expected)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert {"Add", "Concatenate", "Multiply"} <= set(kinds)
    # the stride-2 convolution with pads (1, 1) on an even size: ZeroPadding2D first
    assert "ZeroPadding2D" in kinds and "BatchNormalization" not in kinds


def _inverted_residual():
    nn = _torch().nn
    f = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False),
                                      nn.BatchNorm2d(16), nn.Hardswish())
            self.expand = nn.Sequential(
                nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(),
                nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False), nn.BatchNorm2d(32),
                nn.ReLU6())
            self.se1, self.se2 = nn.Conv2d(32, 8, 1), nn.Conv2d(8, 32, 1)
            self.project = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False),
                                         nn.BatchNorm2d(16))
            self.head = nn.Linear(16, 7)

        def forward(self, x):
            x = self.stem(x)
            y = self.expand(x)
            w = f.hardsigmoid(self.se2(torch.relu(self.se1(
                f.adaptive_avg_pool2d(y, 1)))))
            x = x + self.project(y * w)  # squeeze-excitation, residual
            return self.head(x.mean((2, 3)))
    return Block()


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_pytorch_inverted_residual_with_squeeze_excitation(data_format, tmp_path):
    """MobileNet's block: depthwise convolution, ReLU6, Hardswish, a broadcast Mul."""
    _torch().manual_seed(10)
    net = _randomize_bn(_inverted_residual())
    x = _rng(10).standard_normal((3, 3, 16, 14)).astype(np.float32)
    expected = _torch_export(net, x, tmp_path / "mb.onnx", 17)
    model = fonnx.load(tmp_path / "mb.onnx", data_format=data_format)
    assert_close(_predict(model, x, data_format), expected)
    depthwise = [la for la in model.layers if getattr(la, "groups", 1) == 32]
    assert len(depthwise) == 1 and depthwise[0].activation == "relu6"


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_resnet_stem_max_pool_with_pads_after_relu(data_format, tmp_path):
    """torchvision's stem: conv 7x7/2 pad 3, BN, ReLU, MaxPool 3x3/2 pad 1 (pads
    that are not 'same': zeros are exact after a ReLU)."""
    nn = _torch().nn
    _torch().manual_seed(12)
    net = _randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(8),
        nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1), nn.Flatten(),
        nn.Linear(8 * 4 * 4, 3)))
    x = _rng(12).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = _torch_export(net, x, tmp_path / "stem.onnx", 17)
    model = fonnx.load(tmp_path / "stem.onnx", data_format=data_format)
    assert [type(la).__name__ for la in model.layers] == [
        "ZeroPadding2D", "Conv2D", "ZeroPadding2D", "MaxPooling2D", "Flatten",
        "Dense"]
    assert model.layers[1].activation == "relu"
    assert_close(_predict(model, x, data_format), expected)


def test_several_inputs_and_outputs(tmp_path):
    r = _rng(9)
    inits = {"w": r.standard_normal((4, 2, 3, 3)).astype(np.float32),
             "m": r.standard_normal((4, 3)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"]),
             helper.make_node("Max", ["c", "x2"], ["mx"]),
             helper.make_node("GlobalAveragePool", ["mx"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "m"], ["y2"])]
    graph = helper.make_graph(
        nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                     ["N", 2, 5, 5]),
                       helper.make_tensor_value_info("x2", TensorProto.FLOAT,
                                                     ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 5, 5]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(tmp_path / "two.onnx"))
    ort = pytest.importorskip("onnxruntime")
    x = r.standard_normal((2, 2, 5, 5)).astype(np.float32)
    x2 = r.standard_normal((2, 4, 5, 5)).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "two.onnx"),
                                providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x, "x2": x2})
    for fmt in ("channels_first", "channels_last"):
        model = fonnx.load(tmp_path / "two.onnx", data_format=fmt)
        xs = [x, x2] if fmt == "channels_first" else [
            np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, x2)]
        got = model.predict(xs, verbose=0)
        assert_close(got[0] if fmt == "channels_first" else
                     got[0].transpose(0, 3, 1, 2), want[0])
        assert_close(got[1], want[1])


@pytest.mark.parametrize("opset", range(11, 22))
def test_pytorch_export_of_each_opset_loads(opset, tmp_path):
    _torch().manual_seed(opset)
    net = _lenet().eval()
    x = _rng(opset).standard_normal((2, 1, 32, 32)).astype(np.float32)
    expected = _torch_export(net, x, tmp_path / "net.onnx", opset)
    assert onnx.load(str(tmp_path / "net.onnx")).opset_import[0].version == opset
    model = fonnx.load(tmp_path / "net.onnx", data_format="channels_last")
    assert_close(_predict(model, x, "channels_last"), expected)


# ----------------------------------------------------------------- fastconv round trip
@pytest.mark.parametrize("build", [applications.lenet5, applications.cifar10_cnn])
def test_fastconv_export_loads_back_as_the_same_network(build, tmp_path):
    fastconv.set_seed(3)
    model = build(compile=False)
    fonnx.export(model, tmp_path / "m.onnx")
    back = fonnx.load(tmp_path / "m.onnx")
    # The exported graph takes NHWC images and transposes them: the channels_last
    # layers come back, Dropout is gone.
    assert [type(layer).__name__ for layer in back.layers] == [
        type(layer).__name__ for layer in model.layers
        if type(layer).__name__ != "Dropout"]
    assert all(getattr(layer, "data_format", "channels_last") == "channels_last"
               for layer in back.layers)
    x = _rng(3).standard_normal((3,) + model.input_shape[1:]).astype(np.float32)
    assert_close(back.predict(x, verbose=0), model.predict(x, verbose=0))
    # channels_last: the graph's input is NHWC already (it transposes it to NCHW)
    last = fonnx.load(tmp_path / "m.onnx", data_format="channels_last")
    assert last.input_shape == model.input_shape
    assert_close(last.predict(x, verbose=0), model.predict(x, verbose=0))


# ----------------------------------------------------------------- hand-made graphs
def _save(tmp_path, nodes, inits, in_shape, out_shape, opset=17, name="g.onnx",
          elem=TensorProto.FLOAT):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", elem, in_shape)],
        [helper.make_tensor_value_info("y", elem, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _ort(path, x):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _graph_operators(tmp_path):
    r = _rng(7)
    f32 = np.float32
    inits = {
        "w": r.standard_normal((4, 3, 3, 3)).astype(f32), "b": r.standard_normal(4).astype(f32),
        "s": r.uniform(0.5, 2, (1, 4, 1, 1)).astype(f32),
        "o": r.standard_normal((4, 1, 1)).astype(f32), "k": np.array(0.25, f32),
        "d": np.array(3.0, f32), "zero": np.array(0.0, f32),
        "m": r.standard_normal((16, 5)).astype(f32), "mb": r.standard_normal(5).astype(f32),
        "g": r.standard_normal((5, 6)).astype(f32), "gc": r.standard_normal((1, 6)).astype(f32),
        "shape": np.array([0, -1], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "s"], ["c1"], name="mul"),
        helper.make_node("Add", ["o", "c1"], ["c2"], name="add"),
        helper.make_node("Sub", ["c2", "k"], ["c3"], name="sub"),
        helper.make_node("Div", ["c3", "d"], ["c4"], name="div"),
        helper.make_node("Clip", ["c4", "zero"], ["c5"], name="clip"),
        helper.make_node("Transpose", ["c5"], ["t"], perm=[0, 2, 3, 1], name="to_nhwc"),
        helper.make_node("Identity", ["t"], ["t1"], name="identity"),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("MaxPool", ["t2"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                         auto_pad="SAME_UPPER", name="maxpool"),
        helper.make_node("AveragePool", ["p"], ["p2"], kernel_shape=[2, 2],
                         strides=[2, 2], name="avgpool"),
        helper.make_node("Sigmoid", ["p2"], ["p3"], name="sigmoid"),
        helper.make_node("Reshape", ["p3", "shape"], ["f"], name="reshape"),
        helper.make_node("MatMul", ["f", "m"], ["mm"], name="matmul"),
        helper.make_node("Add", ["mm", "mb"], ["mm1"], name="bias"),
        helper.make_node("Tanh", ["mm1"], ["h"], name="tanh"),
        helper.make_node("Gemm", ["h", "g", "gc"], ["z"], alpha=0.5, beta=2.0,
                         name="gemm"),
        helper.make_node("Softmax", ["z"], ["y"], axis=1, name="softmax"),
    ]
    return _save(tmp_path, nodes, inits, ["N", 3, 8, 8], ["N", 6])


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_hand_made_graph_matches_onnx_runtime(data_format, tmp_path):
    path = _graph_operators(tmp_path)
    x = _rng(8).standard_normal((4, 3, 8, 8)).astype(np.float32)
    model = fonnx.load(path, data_format=data_format)
    assert_close(_predict(model, x, data_format), _ort(path, x))
    # Mul/Add/Sub/Div and the bias Add folded into the Conv2D and the Dense,
    # the activations into the layers before them where they can be.
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPooling2D", "AveragePooling2D", "Activation", "Flatten", "Dense",
        "Dense"]
    assert model.layers[0].activation == "relu" and model.layers[-1].activation == \
        "softmax"


def test_constant_arithmetic_on_images_becomes_rescaling(tmp_path):
    inits = {"s": _rng(9).uniform(1, 2, (1, 1, 5, 1)).astype(np.float32),
             "one": np.array(1.0, np.float32)}
    nodes = [helper.make_node("Mul", ["x", "s"], ["a"]),
             helper.make_node("Sub", ["one", "a"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"])]
    path = _save(tmp_path, nodes, inits, ["N", 2, 5, 3], ["N", 2, 5, 3])
    x = _rng(9).standard_normal((3, 2, 5, 3)).astype(np.float32)
    for fmt in ("channels_first", "channels_last"):
        model = fonnx.load(path, data_format=fmt)
        assert [type(la).__name__ for la in model.layers] == ["Rescaling", "Rescaling",
                                                              "Activation"]
        assert_close(_predict(model, x, fmt), _ort(path, x))


@pytest.mark.parametrize("case", ["pad_crop", "slice", "resize_half_pixel",
                                  "resize_sizes_tf_nn", "resize_linear", "avg_pad"])
def test_spatial_operators_match_onnx_runtime(case, tmp_path):
    i64 = np.int64
    inits, attrs = {}, {}
    if case == "pad_crop":
        inits["p"] = np.array([0, 0, 2, -1, 0, 0, -1, 3], i64)
        node, out = helper.make_node("Pad", ["x", "p"], ["y"]), [5, 9]
    elif case == "slice":
        inits.update(s=np.array([1, -3], i64), e=np.array([100, -1], i64),
                     a=np.array([2, 3], i64))
        node, out = helper.make_node("Slice", ["x", "s", "e", "a"], ["y"]), [3, 2]
    else:
        inits["r"] = np.zeros(0, np.float32)
        if case == "resize_sizes_tf_nn":
            inits["sz"] = np.array([2, 3, 8, 18], i64)
            ins, attrs = ["x", "r", "", "sz"], dict(
                coordinate_transformation_mode="tf_half_pixel_for_nn",
                nearest_mode="floor")
        else:
            inits["sc"] = np.array([1, 1, 3, 2], np.float32)
            ins = ["x", "r", "sc"]
            attrs = dict(mode="linear") if case == "resize_linear" else {}
        node = helper.make_node("Resize", ins, ["y"], **attrs)
        out = [8, 18] if case == "resize_sizes_tf_nn" else [12, 12]
    if case == "avg_pad":
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 2],
                                pads=[1, 0, 1, 1], count_include_pad=1)
        out = [4, 6]
    batch = 2 if case == "resize_sizes_tf_nn" else "N"  # (sizes fix the batch)
    path = _save(tmp_path, [node], inits, [batch, 3, 4, 6], [batch, 3] + out)
    x = _rng(12).standard_normal((2, 3, 4, 6)).astype(np.float32)
    for fmt in ("channels_first", "channels_last"):
        assert_close(_predict(fonnx.load(path, data_format=fmt), x, fmt), _ort(path, x))


def test_resize_that_is_not_a_repeat_is_refused(tmp_path):
    inits = {"r": np.zeros(0, np.float32), "sc": np.array([1, 1, 3, 3], np.float32)}
    node = helper.make_node("Resize", ["x", "r", "sc"], ["y"], name="up",
                            coordinate_transformation_mode="asymmetric")
    path = _save(tmp_path, [node], inits, ["N", 2, 4, 4], ["N", 2, 12, 12])
    with pytest.raises(OnnxImportError, match="'up'.*not a repeat"):
        fonnx.load(path)


# ----------------------------------------------------------------- unsupported
def _one_node(tmp_path, node, inits=None, shape=("N", 3, 4, 4), out=None, **kw):
    return _save(tmp_path, [node], inits or {}, list(shape), out or list(shape), **kw)


def test_unknown_operator_names_operator_and_node(tmp_path):
    path = _one_node(tmp_path, helper.make_node("Erf", ["x"], ["y"], name="my_erf"))
    with pytest.raises(OnnxImportError, match=r"g\.onnx: node 'my_erf' \(Erf\): "
                                              r"unsupported ONNX operator 'Erf'"):
        fonnx.load(path)
    path = _one_node(tmp_path, helper.make_node("Relu", ["x"], ["y"], name="ms",
                                                domain="com.microsoft"), name="d.onnx")
    with pytest.raises(OnnxImportError, match="'ms'.*domain 'com.microsoft'"):
        fonnx.load(path)


def test_what_fastconv_layers_cannot_express_is_refused(tmp_path):
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1], name="stem_pool")
    path = _one_node(tmp_path, pool, out=["N", 3, 2, 2])
    with pytest.raises(OnnxImportError, match="'stem_pool'.*pads"):
        fonnx.load(path)
    soft = helper.make_node("Softmax", ["x"], ["y"], axis=1, name="sm")
    with pytest.raises(OnnxImportError, match="'sm'.*last axis"):
        fonnx.load(_one_node(tmp_path, soft, name="s.onnx"))
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Add", ["x", "t"], ["y"], name="mixed")]
    path = _save(tmp_path, nodes, {}, ["N", 3, 3, 3], ["N", 3, 3, 3], name="a.onnx")
    with pytest.raises(OnnxImportError, match="'mixed'.*arranged differently"):
        fonnx.load(path)
    with pytest.raises(ValueError, match="data_format must be.*'NHWC'"):
        fonnx.load(path, data_format="NHWC")


def test_opset_outside_the_read_range(tmp_path):
    path = _one_node(tmp_path, helper.make_node("Relu", ["x"], ["y"]), opset=9)
    with pytest.raises(OnnxImportError, match="opset 9.*11 to 23"):
        fonnx.load(path)


# ----------------------------------------------------------------- hostile files
def _external_model(tmp_path, location, length=24, dims=(3, 2)):
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(dims))
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 17)])
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return folder, path


def _listing(root):
    return sorted((p, os.path.getsize(os.path.join(p, f))) for p, _, fs in os.walk(root)
                  for f in fs)


def test_external_data_inside_the_folder_loads(tmp_path):
    weights = _rng(11).standard_normal((3, 2)).astype("<f4")
    folder, path = _external_model(tmp_path, "data/w.bin")
    (folder / "data").mkdir()
    (folder / "data" / "w.bin").write_bytes(weights.tobytes())
    model = fonnx.load(path)
    x = _rng(12).standard_normal((4, 3)).astype(np.float32)
    assert_close(model.predict(x, verbose=0), x @ weights)


@pytest.mark.parametrize("location,match", [
    ("/etc/passwd", "is absolute"),
    ("../secret.bin", r"leaves the model's folder .*\('\.\.'\)"),
    ("data/../../secret.bin", r"\('\.\.'\)"),
    ("link.bin", "outside the model's folder"),
    ("missing.bin", "no regular file"),
])
def test_external_data_outside_the_folder_is_refused(location, match, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(6, "<f4").tobytes())
    folder, path = _external_model(tmp_path, location)
    if location == "link.bin":
        os.symlink(secret, folder / "link.bin")
    before = _listing(tmp_path)
    with pytest.raises(OnnxImportError, match=f"m.onnx: tensor 'w'.*{match}"):
        fonnx.load(path)
    assert _listing(tmp_path) == before


def test_external_data_shorter_than_declared_is_refused(tmp_path):
    folder, path = _external_model(tmp_path, "w.bin")
    (folder / "w.bin").write_bytes(b"\0" * 20)
    with pytest.raises(OnnxImportError, match="m.onnx: tensor 'w'.*has 20 bytes"):
        fonnx.load(path)
    folder, path = _external_model(tmp_path, "w.bin", length=8)
    with pytest.raises(OnnxImportError, match="length 8 do not fit.*24 bytes"):
        fonnx.load(path)


@pytest.mark.parametrize("dims,match", [
    ((2 ** 20, 2 ** 20), r"1099511627776 elements.*over fastconv's limit"),
    ((2 ** 30,), "needs 4294967296 bytes of data, the file holds 16"),
])
def test_huge_declared_tensor_is_refused_without_allocating(dims, match, tmp_path):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(dims),
                    raw_data=b"\0" * 16)
    path = _save(tmp_path, [helper.make_node("Identity", ["x"], ["y"])], {}, ["N", 3],
                 ["N", 3], name="huge.onnx")
    proto = onnx.load(str(path))
    proto.graph.initializer.append(w)
    onnx.save(proto, str(path))
    tracemalloc.start()
    try:
        with pytest.raises(OnnxImportError, match=f"huge.onnx: tensor 'w'.*{match}"):
            fonnx.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2 ** 20


def test_truncated_or_garbage_files_are_refused(tmp_path):
    fastconv.set_seed(5)
    model = Sequential([layers.Input((4, 4, 1)), layers.Conv2D(2, 3), layers.Flatten(),
                        layers.Dense(3)])
    fonnx.export(model, tmp_path / "ok.onnx")
    data = (tmp_path / "ok.onnx").read_bytes()
    for i, cut in enumerate((len(data) // 2, len(data) - 3, 7)):
        path = tmp_path / f"cut{i}.onnx"
        path.write_bytes(data[:cut])
        with pytest.raises(OnnxImportError, match=f"cut{i}.onnx"):
            fonnx.load(path)
    (tmp_path / "text.onnx").write_text("import os; os.system('echo hi')\n")
    with pytest.raises(OnnxImportError, match="text.onnx"):
        fonnx.load(tmp_path / "text.onnx")
    with pytest.raises(FileNotFoundError, match="nothere.onnx"):
        fonnx.load(tmp_path / "nothere.onnx")
