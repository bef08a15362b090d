"""DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and grouped Conv2D: forward against
naive per-channel loops (fastconv.reference) and the functional ops, float64 finite
differences through input and weights in both data formats, configs, saving, errors."""
import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv.models import Sequential, load_model
from fastconv.reference import conv2d_forward, numeric_gradient


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def to_first(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def tf_same_pads(n, k, s, d):
    k_eff = (k - 1) * d + 1
    out = -(-n // s)
    total = max((out - 1) * s + k_eff - n, 0)
    return (total // 2, total - total // 2)


def built(layer, x, rng):
    """layer built for x, every weight random (biases too)."""
    layer.build(x.shape)
    layer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in layer.weights])
    return layer


def naive_depthwise(x_first, kernel, bias, strides, padding, dilation):
    """Each output channel c * dm + m: input channel c convolved with kernel[..., c, m]
    (naive loops), channels_first."""
    kh, kw, c, dm = kernel.shape
    h, w = x_first.shape[2:]
    pads = (((0, 0), (0, 0)) if padding == "valid" else
            (tf_same_pads(h, kh, strides[0], dilation[0]),
             tf_same_pads(w, kw, strides[1], dilation[1])))
    outs = []
    for ci in range(c):
        for m in range(dm):
            wk = kernel[:, :, ci, m][None, None]
            outs.append(conv2d_forward(x_first[:, ci:ci + 1], wk, None, strides, pads,
                                       dilation)[:, 0])
    y = np.stack(outs, axis=1)
    return y if bias is None else y + bias[:, None, None]


DW_ARGS = [dict(), dict(strides=2, padding="same"), dict(strides=(2, 1), dilation_rate=1),
           dict(dilation_rate=(2, 1), padding="same")]


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kw", DW_ARGS)
def test_depthwise_forward_matches_per_channel_loops(fmt, kw, rng):
    x = rng.standard_normal((2, 7, 6, 3))
    x = x if fmt == "channels_last" else to_first(x)
    layer = built(L.DepthwiseConv2D((3, 2), depth_multiplier=2, data_format=fmt,
                                    dtype="float64", **kw), x, rng)
    y = layer(x)
    xf = x if fmt == "channels_first" else to_first(x)
    expected = naive_depthwise(xf, layer.kernel, layer.bias, layer.strides,
                               layer.padding, layer.dilation_rate)
    yf = y if fmt == "channels_first" else to_first(y)
    np.testing.assert_allclose(yf, expected, rtol=1e-12, atol=1e-12)
    assert layer.compute_output_shape((None,) + x.shape[1:]) == (None,) + y.shape[1:]


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_separable_forward_is_depthwise_then_pointwise(fmt, rng):
    x = rng.standard_normal((2, 8, 7, 3))
    x = x if fmt == "channels_last" else to_first(x)
    sep = built(L.SeparableConv2D(4, 3, strides=2, padding="same", depth_multiplier=2,
                                  data_format=fmt, dtype="float64"), x, rng)
    dw = built(L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                 use_bias=False, data_format=fmt, dtype="float64"), x, rng)
    dw.set_weights([sep.depthwise_kernel])
    mid = dw(x)
    pw = built(L.Conv2D(4, 1, data_format=fmt, dtype="float64"), mid, rng)
    pw.set_weights([sep.pointwise_kernel, sep.bias])
    np.testing.assert_allclose(sep(x), pw(mid), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kw,op", [(dict(), 0), (dict(strides=(2, 3)), (0, 1)),
                                   (dict(strides=2, output_padding=1), 1),
                                   (dict(dilation_rate=2), 0)])
def test_transpose_valid_is_conv_transpose2d_with_keras_output_padding(fmt, kw, op, rng):
    """'valid': Keras's output size is conv_transpose2d's with padding 0 and output
    padding max(k_eff, stride) - k_eff (or the one given)."""
    x = rng.standard_normal((2, 4, 5, 3))
    x = x if fmt == "channels_last" else to_first(x)
    layer = built(L.Conv2DTranspose(2, (3, 2), data_format=fmt, dtype="float64", **kw),
                  x, rng)
    weight = layer.kernel if fmt == "channels_last" else layer.kernel.transpose(3, 2, 0, 1)
    expected = fastconv.conv_transpose2d(x, weight, layer.bias, stride=layer.strides,
                                         output_padding=op, dilation=layer.dilation_rate,
                                         data_format=fmt)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_transpose_same_output_is_stride_times_input(rng):
    x = rng.standard_normal((1, 5, 4, 2))
    for strides in (1, 2, (3, 2)):
        layer = L.Conv2DTranspose(3, 3, strides=strides, padding="same")
        s = L.Conv2DTranspose(3, 3, strides=strides).strides
        assert layer(x).shape == (1, 5 * s[0], 4 * s[1], 3)


def test_grouped_conv2d_is_one_conv_per_group(rng):
    """Keras's grouped kernel (kh, kw, C_in / groups, filters): output channels of group
    g read input channels of group g only."""
    x = rng.standard_normal((2, 6, 5, 4))
    conv = built(L.Conv2D(6, 3, groups=2, dtype="float64"), x, rng)
    assert conv.kernel.shape == (3, 3, 2, 6)
    y = conv(x)
    for g in range(2):
        part = built(L.Conv2D(3, 3, dtype="float64"), x[..., 2 * g:2 * g + 2], rng)
        part.set_weights([conv.kernel[..., 3 * g:3 * g + 3], conv.bias[3 * g:3 * g + 3]])
        np.testing.assert_allclose(y[..., 3 * g:3 * g + 3], part(x[..., 2 * g:2 * g + 2]),
                                   rtol=1e-12, atol=1e-12)


def check_gradients(layer, x, rng):
    y = layer(x, training=True)
    up = rng.standard_normal(y.shape)
    gx = layer.backward(up)

    def f():
        return float(np.sum(up * layer.forward(x, True)))
    np.testing.assert_allclose(gx, numeric_gradient(f, x), rtol=1e-6, atol=1e-8)
    assert len(layer.gradients) == len(layer.weights)
    for w, g in zip(layer.weights, layer.gradients):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, numeric_gradient(f, w), rtol=1e-6, atol=1e-8)


LAYERS = {
    "depthwise": lambda fmt: L.DepthwiseConv2D((3, 2), strides=(2, 1), padding="same",
                                               depth_multiplier=2, data_format=fmt,
                                               activation="tanh", dtype="float64"),
    "depthwise_dilated": lambda fmt: L.DepthwiseConv2D(2, dilation_rate=2,
                                                       data_format=fmt, dtype="float64"),
    "separable": lambda fmt: L.SeparableConv2D(3, (2, 3), strides=2, padding="same",
                                               depth_multiplier=2, data_format=fmt,
                                               activation="sigmoid", dtype="float64"),
    "transpose": lambda fmt: L.Conv2DTranspose(2, (3, 2), strides=(2, 3),
                                               padding="same", data_format=fmt,
                                               activation="tanh", dtype="float64"),
    "transpose_op": lambda fmt: L.Conv2DTranspose(2, 3, strides=2, output_padding=1,
                                                  data_format=fmt, dtype="float64"),
    "transpose_dilated": lambda fmt: L.Conv2DTranspose(3, 2, dilation_rate=(2, 1),
                                                       padding="same", data_format=fmt,
                                                       use_bias=False, dtype="float64"),
    "grouped": lambda fmt: L.Conv2D(4, 2, groups=2, strides=2, data_format=fmt,
                                    dtype="float64"),
}


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_gradients_match_finite_differences(name, fmt, rng):
    x = rng.standard_normal((2, 5, 4, 2))
    x = x if fmt == "channels_last" else to_first(x)
    check_gradients(built(LAYERS[name](fmt), x, rng), x, rng)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_config_round_trip_and_repr(name):
    layer = LAYERS[name]("channels_first")
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert type(layer).__name__ in repr(layer)
    assert L.LAYER_CLASSES[type(layer).__name__] is type(layer)


def test_regularizer_and_constraint_arguments_keep_keras_names():
    dw = L.DepthwiseConv2D(3, depthwise_regularizer="l2", depthwise_constraint="non_neg")
    cfg = dw.get_config()
    assert "depthwise_regularizer" in cfg and "depthwise_constraint" in cfg
    assert dw.depthwise_regularizer is not None
    sep = L.SeparableConv2D(2, 3, pointwise_regularizer="l1", depthwise_constraint="max_norm")
    cfg = sep.get_config()
    assert "pointwise_regularizer" in cfg and "depthwise_constraint" in cfg
    sep.build((1, 5, 5, 2))
    assert len(sep.losses) == 1
    assert L.SeparableConv2D.from_config(cfg).get_config() == cfg


def test_a_model_of_the_new_layers_trains_saves_and_loads(tmp_path, rng):
    model = Sequential([
        L.Input((8, 8, 3)),
        L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
        L.BatchNormalization(),
        L.SeparableConv2D(4, 3, strides=2, padding="same", activation="relu"),
        L.Conv2DTranspose(3, 3, strides=2, padding="same"),
        L.Flatten(), L.Dense(2)])
    model.compile("adam", "mse")
    x = rng.standard_normal((6, 8, 8, 3)).astype(np.float32)
    y = rng.standard_normal((6, 2)).astype(np.float32)
    before = model.get_weights()
    losses = [model.train_on_batch(x, y) for _ in range(5)]
    assert losses[-1] < losses[0]
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    path = str(tmp_path / "m.npz")
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(la).__name__ for la in loaded.layers] == \
        [type(la).__name__ for la in model.layers]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="depth_multiplier must be a positive int, got 0"):
        L.DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(TypeError, match="depth_multiplier must be a positive int, got 1.5"):
        L.SeparableConv2D(2, 3, depth_multiplier=1.5)
    with pytest.raises(ValueError, match="filters must be a positive int, got 0"):
        L.SeparableConv2D(0, 3)
    with pytest.raises(ValueError, match="filters must be a positive int, got -1"):
        L.Conv2DTranspose(-1, 3)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 'full'"):
        L.Conv2DTranspose(2, 3, padding="full")
    with pytest.raises(ValueError, match=r"output_padding must be smaller than strides, "
                                         r"got output_padding=\(2, 2\)"):
        L.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="strides > 1 is not supported with dilation_rate"):
        L.Conv2DTranspose(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="unknown depthwise_regularizer 'nope'"):
        L.DepthwiseConv2D(3, depthwise_regularizer="nope")
    with pytest.raises(ValueError, match="unknown depthwise_initializer 'nope'"):
        L.DepthwiseConv2D(3, depthwise_initializer="nope")
    with pytest.raises(TypeError, match="pointwise_constraint must be None"):
        L.SeparableConv2D(2, 3, pointwise_constraint=3)
    with pytest.raises(ValueError, match="unknown depthwise_regularizer 'nope'"):
        L.SeparableConv2D(2, 3, depthwise_regularizer="nope")
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        L.DepthwiseConv2D(0)
    with pytest.raises(ValueError, match="data_format must be"):
        L.SeparableConv2D(2, 3, data_format="NHWC")
    # an output that the 'same' convolution does not map back to the input
    with pytest.raises(ValueError, match="is not the input shape"):
        L.Conv2DTranspose(2, 2, padding="same", output_padding=0)(np.zeros((1, 4, 4, 1)))
    with pytest.raises(ValueError, match="cannot be applied to input shape"):
        L.DepthwiseConv2D(5)(np.zeros((1, 3, 3, 2)))
    layer = L.DepthwiseConv2D(3)
    layer(np.zeros((1, 5, 5, 2)))
    with pytest.raises(ValueError, match="size 2 on axis"):
        layer(np.zeros((1, 5, 5, 3)))


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_depthwise_conv2d_exports_to_onnx(fmt, tmp_path, rng):
    """A DepthwiseConv2D is a grouped Conv2D for the ONNX exporter too."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import fastconv.onnx
    shape = (7, 6, 3) if fmt == "channels_last" else (3, 7, 6)
    model = Sequential([L.Input(shape),
                        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2,
                                          data_format=fmt, activation="relu")])
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32)
                       for w in model.weights])
    path = str(tmp_path / "dw.onnx")
    fastconv.onnx.export(model, path)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
