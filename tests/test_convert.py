"""PyTorch state dicts and safetensors files (fastconv.convert).

The oracle is PyTorch itself: the same weights must give the same predictions within
1e-5 of the output scale, for channels_last and channels_first fastconv models, with a
Flatten before a Dense (PyTorch flattens C, H, W; fastconv H, W, C).
"""
import os

import numpy as np
import pytest

import fastconv
from fastconv import convert
from fastconv import layers as L
from fastconv.models import ModelFileError, Sequential

torch = pytest.importorskip("torch")
nn = torch.nn


def close(got, want):
    scale = max(1.0, float(np.abs(want).max()))
    assert got.shape == want.shape
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= 1e-5 * scale, err


def torch_lenet():
    """The classic PyTorch LeNet-5: the Flatten sees 16 x 5 x 5 features."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(), nn.Dropout(0.2), nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, 10), nn.Softmax(dim=1))
    with torch.no_grad():  # non-zero biases
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net.eval()


def fastconv_lenet(data_format, flatten_format=None):
    kw = dict(data_format=data_format)
    return Sequential([
        L.Input((32, 32, 1) if data_format == "channels_last" else (1, 32, 32)),
        L.Conv2D(6, 5, activation="tanh", **kw), L.AveragePooling2D(2, **kw),
        L.Conv2D(16, 5, activation="tanh", **kw), L.AveragePooling2D(2, **kw),
        L.Flatten(data_format=flatten_format or data_format),
        L.Dense(120, activation="tanh"), L.Dropout(0.2),
        L.Dense(84, activation="tanh"), L.Dense(10, activation="softmax")])


def inputs(n=4, shape=(1, 32, 32)):
    return np.random.default_rng(1).random((n,) + shape, dtype=np.float32)


def torch_predict(net, x_nchw):
    with torch.no_grad():
        return net(torch.from_numpy(x_nchw)).numpy()


@pytest.mark.parametrize("data_format,flatten_format", [
    ("channels_last", None), ("channels_first", None),
    ("channels_first", "channels_last")])  # a Flatten that keeps (C, H, W) order
@pytest.mark.parametrize("as_tensors", [True, False])
def test_torch_lenet_state_dict_gives_torch_predictions(data_format, flatten_format,
                                                        as_tensors):
    net = torch_lenet()
    sd = net.state_dict() if as_tensors else {k: v.numpy() for k, v in
                                             net.state_dict().items()}
    model = fastconv_lenet(data_format, flatten_format)
    convert.from_torch_state_dict(model, sd)
    x = inputs()
    want = torch_predict(net, x)
    got = model.predict(x if data_format == "channels_first"
                        else x.transpose(0, 2, 3, 1), verbose=0)
    close(got, want)


def test_naive_mapping_would_be_wrong():
    """The permutation matters: without it (rows as PyTorch has them) predictions
    differ, so the test above can fail."""
    net = torch_lenet()
    model = fastconv_lenet("channels_last")
    convert.from_torch_state_dict(model, net.state_dict())
    dense = model.layers[5]
    dense.set_weights([net[7].weight.detach().numpy().T, dense.get_weights()[1]])
    x = inputs()
    err = np.abs(model.predict(x.transpose(0, 2, 3, 1), verbose=0)
                 - torch_predict(net, x)).max()
    assert err > 1e-3


def torch_mixed():
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, groups=4), nn.ReLU(),          # depthwise x2
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),         # separable:
        nn.Conv2d(8, 5, 1),                                          # dw + pw
        nn.ConvTranspose2d(5, 3, 3, stride=2),
        nn.BatchNorm2d(3, affine=False), nn.Flatten(), nn.Linear(3 * 13 * 11, 4))
    with torch.no_grad():
        for name, b in net.named_buffers():
            if "running_mean" in name:
                b.copy_(torch.randn_like(b) * 0.3)
            elif "running_var" in name:
                b.copy_(torch.rand_like(b) + 0.5)
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net.eval()


def fastconv_mixed(data_format):
    kw = dict(data_format=data_format)
    last = data_format == "channels_last"
    return Sequential([
        L.Input((6, 5, 3) if last else (3, 6, 5)),
        L.Conv2D(4, 3, padding="same", **kw),
        L.BatchNormalization(axis=-1 if last else 1, epsilon=1e-5),
        L.Activation("relu"),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu", **kw),
        L.SeparableConv2D(5, 3, padding="same", **kw),
        L.Conv2DTranspose(3, 3, strides=2, **kw),  # PyTorch padding 0: "valid"
        L.BatchNormalization(axis=-1 if last else 1, epsilon=1e-5, center=False,
                             scale=False),
        L.Flatten(**kw), L.Dense(4)])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_batchnorm_depthwise_separable_transpose(data_format):
    net = torch_mixed()
    model = fastconv_mixed(data_format)
    convert.from_torch_state_dict(model, net.state_dict())
    x = inputs(3, (3, 6, 5))
    got = model.predict(x if data_format == "channels_first"
                        else x.transpose(0, 2, 3, 1), verbose=0)
    close(got, torch_predict(net, x))


@pytest.mark.parametrize("make_pair", [
    lambda: (torch_lenet(), fastconv_lenet("channels_last"), (1, 32, 32)),
    lambda: (torch_mixed(), fastconv_mixed("channels_first"), (3, 6, 5))])
def test_to_torch_state_dict_loads_into_pytorch(make_pair):
    net, model, shape = make_pair()
    rng = np.random.default_rng(3)
    names = [n for layer in model.layers for n in layer._weight_names]
    model.set_weights([np.abs(rng.normal(1, 0.2, w.shape)).astype(w.dtype)
                       if n == "moving_variance" else rng.normal(0, 0.2, w.shape)
                       .astype(w.dtype) for n, w in zip(names, model.get_weights())])
    sd = convert.to_torch_state_dict(model, keys=net.state_dict().keys())
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})
    x = inputs(2, shape)
    got = model.predict(x if model.layers[0].data_format == "channels_first"
                        else x.transpose(0, 2, 3, 1), verbose=0)
    close(got, torch_predict(net, x))


def test_mismatches_name_both_sides_and_change_nothing():
    net = torch_lenet()
    model = fastconv_lenet("channels_last")
    before = model.get_weights()
    sd = dict(net.state_dict())
    del sd["12.weight"], sd["12.bias"]
    with pytest.raises(ValueError, match=r"state_dict has 4 modules .*0, 3, 7, 10\).*"
                                         r"needs 5"):
        convert.from_torch_state_dict(model, sd)
    sd = dict(net.state_dict())
    sd["10.weight"] = torch.zeros(84, 121)
    with pytest.raises(ValueError, match=r"state_dict\['10.weight'\] has shape "
                                         r"\(84, 121\).*dense.*\(120, 84\)"):
        convert.from_torch_state_dict(model, sd)
    sd = dict(net.state_dict())
    sd["3.weight"] = torch.zeros(16, 6)
    with pytest.raises(ValueError, match=r"module '3' \(linear\) does not fit layer"):
        convert.from_torch_state_dict(model, sd)
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        convert.from_torch_state_dict(model, [1, 2])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- safetensors
def test_safetensors_round_trip_and_names(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    fastconv.set_seed(0)
    model = fastconv_mixed("channels_last")
    model.save_weights(tmp_path / "w.safetensors")
    stored = st.load_file(str(tmp_path / "w.safetensors"))
    assert sorted(stored) == sorted(f"{layer.name}.{n}" for layer in model.layers
                                    for n in layer._weight_names)
    np.testing.assert_array_equal(stored[f"{model.layers[4].name}.pointwise_kernel"],
                                  model.layers[4].pointwise_kernel)
    other = fastconv_mixed("channels_last")  # other layer names: matched in order
    other.load_weights(tmp_path / "w.safetensors")
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_pytorch_safetensors_file_loads(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    net = torch_lenet()
    st.save_file({k: v.numpy() for k, v in net.state_dict().items()},
                 str(tmp_path / "torch.safetensors"))
    model = fastconv_lenet("channels_first")
    convert.load_safetensors(model, tmp_path / "torch.safetensors")
    x = inputs()
    close(model.predict(x, verbose=0), torch_predict(net, x))


def test_damaged_safetensors_files(tmp_path):
    pytest.importorskip("safetensors.numpy")
    model = fastconv_lenet("channels_last")
    model.save_weights(tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match=r"cut\.safetensors.*truncated"):
        model.load_weights(tmp_path / "cut.safetensors")
    # a header declaring a 2^40-element tensor
    header = b'{"x.kernel":{"dtype":"F32","shape":[1048576,1048576],' \
             b'"data_offsets":[0,4398046511104]}}'
    (tmp_path / "huge.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header + bytes(16))
    with pytest.raises(ModelFileError, match=r"huge\.safetensors"):
        model.load_weights(tmp_path / "huge.safetensors")
    other = fastconv_lenet("channels_last")
    other.pop()
    other.add(L.Dense(12))
    other.save_weights(tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match=r"other\.safetensors.*does not fit"):
        model.load_weights(tmp_path / "other.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["cut.safetensors", "huge.safetensors",
                                            "other.safetensors", "w.safetensors"]
