"""fastconv -> ONNX (fastconv.onnx.export): onnx.checker and ONNX Runtime's predictions
against fastconv's own, for the reference networks in both data formats and a model per
layer type."""
import sys

import numpy as np
import pytest

import fastconv
from fastconv import applications, layers
from fastconv.models import Sequential

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import fastconv.onnx as fonnx  # noqa: E402


def _rng(seed=0):
    return np.random.default_rng(seed)


def _ort_predict(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    return sess.run(None, {inp.name: x})[0]


def assert_exports(model, x, tmp_path, opset=17, name="model.onnx", round_trip=True):
    """Export model, check the file, and compare ONNX Runtime's output with fastconv's
    (1e-5 of the output's scale), then (round_trip) the output of the model
    fastconv.onnx.load makes of the file; returns the ONNX model."""
    path = tmp_path / name
    fonnx.export(model, path, opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    expected = model.predict(x, verbose=0)
    got = _ort_predict(path, x)
    assert got.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-3)
    err = float(np.abs(got - expected).max())
    assert err <= 1e-5 * scale, (err, scale)
    if not round_trip:
        return proto
    # ... and fastconv.onnx.load reads it back as a model with the same predictions
    back = fonnx.load(path)
    err = float(np.abs(back.predict(x, verbose=0) - expected).max())
    assert err <= 1e-5 * scale, ("round trip", err, scale)
    return proto


def channels_first_copy(model):
    """The same network with every layer channels_first, and the same weights (a
    fastconv kernel has the same shape in both formats; Flatten orders as Keras)."""
    new = []
    for layer in model.layers:
        config = layer.get_config()
        config.pop("input_shape", None)
        if "data_format" in config:
            config["data_format"] = "channels_first"
        new.append(type(layer).from_config(config))
    h, w, c = model.input_shape[1:]
    copy = Sequential([layers.Input((c, h, w))] + new)
    copy.set_weights(model.get_weights())
    return copy


@pytest.mark.parametrize("build", [applications.lenet5, applications.cifar10_cnn])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_reference_networks_match_onnx_runtime(build, data_format, tmp_path):
    fastconv.set_seed(1)
    model = build(compile=False)
    x = _rng().standard_normal((4,) + model.input_shape[1:]).astype(np.float32)
    if data_format == "channels_first":
        model = channels_first_copy(model)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    proto = assert_exports(model, x, tmp_path)
    ops = [n.op_type for n in proto.graph.node]
    # channels_last: one Transpose into NCHW, one back before Flatten; channels_first:
    # the same single one before Flatten (fastconv's Flatten orders H, W, C).
    assert ops.count("Transpose") == (2 if data_format == "channels_last" else 1)
    assert ops.count("Dropout") == 0


def _randomize_batch_norms(model, seed):
    """Batch-norm statistics and affine weights away from the identity."""
    r = _rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([r.uniform(0.8, 1.2, w.shape) if n in (
                "gamma", "moving_variance") else r.normal(0, 0.1, w.shape)
                for n, w in zip(layer._weight_names, layer.weights)])
    return model


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_modern_networks_match_onnx_runtime(name, data_format, tmp_path):
    build = getattr(applications, name, None)
    if build is None:
        pytest.skip(f"this fastconv has no applications.{name}")
    fastconv.set_seed(50)
    shape = (32, 32, 3) if data_format == "channels_last" else (3, 32, 32)
    kwargs = dict(alpha=0.35, classes=10) if name == "mobilenet_v2" else {}
    model = _randomize_batch_norms(build(input_shape=shape, data_format=data_format,
                                         compile=False, **kwargs), 50)
    # Compared as logits: a softmax near saturation turns the networks' float32
    # rounding (Winograd's included) into relative errors of its small outputs.
    model.layers[-1]._set_activation("linear")
    x = _rng(50).standard_normal((2,) + shape).astype(np.float32)
    assert_exports(model, x, tmp_path)


def test_channels_first_flatten_order_survives(tmp_path):
    """A wrong Flatten order would permute the Dense inputs: check against Keras's
    order computed by hand."""
    fastconv.set_seed(2)
    model = Sequential([layers.Input((2, 3, 4)), layers.Flatten(data_format=
                                                                "channels_first")])
    x = _rng(2).standard_normal((2, 2, 3, 4)).astype(np.float32)
    assert_exports(model, x, tmp_path)
    got = _ort_predict(tmp_path / "model.onnx", x)
    np.testing.assert_array_equal(got, x.transpose(0, 2, 3, 1).reshape(2, -1))


def _layer_models(fmt):
    """(name, model, input shape) with every exported layer kind and option."""
    last = fmt == "channels_last"

    def img(h, w, c):
        return (h, w, c) if last else (c, h, w)

    kw = dict(data_format=fmt)
    return [
        ("conv_groups_dilation_same", [
            layers.Conv2D(6, (3, 2), strides=(2, 1), padding="same", groups=2,
                          dilation_rate=1, activation="relu", **kw),
            layers.Conv2D(4, 3, dilation_rate=(2, 1), padding="same", **kw),
            layers.Conv2D(3, (2, 3), use_bias=False, activation="sigmoid", **kw)],
         img(11, 9, 4)),
        ("pooling_same_and_valid", [
            layers.MaxPooling2D(3, strides=2, padding="same", **kw),
            layers.AveragePooling2D((2, 3), strides=(1, 2), padding="same", **kw),
            layers.AveragePooling2D(2, **kw), layers.MaxPooling2D((1, 2), **kw)],
         img(13, 15, 3)),
        ("global_pool_dense_softmax", [
            layers.Conv2D(5, 3, activation="tanh", **kw),
            layers.GlobalAveragePooling2D(**kw), layers.Dropout(0.5),
            layers.Dense(7, activation="softmax")], img(8, 7, 2)),
        ("global_pool_keepdims_softmax_on_channels", [
            layers.GlobalAveragePooling2D(keepdims=True, **kw),
            layers.Activation("softmax")], img(5, 6, 4)),
        ("dense_on_images_and_activations", [
            layers.Dense(3, activation="tanh"), layers.Activation("relu"),
            layers.Flatten(**kw), layers.Dense(4, use_bias=False),
            layers.Activation("sigmoid"), layers.Activation("linear")],
         img(4, 5, 2)),
    ]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", range(5))
def test_each_layer_kind_matches_onnx_runtime(case, data_format, tmp_path):
    fastconv.set_seed(3 + case)
    name, stack, shape = _layer_models(data_format)[case]
    model = Sequential([layers.Input(shape)] + stack)
    for layer in model.layers:
        if layer.use_bias if hasattr(layer, "use_bias") else False:
            layer.bias[...] = _rng(case).standard_normal(layer.bias.shape)
    x = _rng(10 + case).standard_normal((3,) + shape).astype(np.float32)
    assert_exports(model, x, tmp_path)


def _randomize(model, seed):
    """Random weights (batch-norm variances positive)."""
    r = _rng(seed)
    for layer in model.layers:
        layer.set_weights([r.uniform(0.5, 2.0, w.shape) if n == "moving_variance"
                           else r.standard_normal(w.shape) * 0.5
                           for n, w in zip(layer._weight_names, layer.weights)])
    return model


def _conv_variant_models(fmt):
    last = fmt == "channels_last"

    def img(h, w, c):
        return (h, w, c) if last else (c, h, w)

    kw = dict(data_format=fmt)
    channel = -1 if last else 1
    return [
        ("separable", [
            layers.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2,
                                   activation="relu", **kw),
            layers.SeparableConv2D(4, (2, 3), dilation_rate=(2, 1), use_bias=False, **kw),
            layers.DepthwiseConv2D(3, padding="same", depth_multiplier=3, **kw)],
         img(11, 10, 3)),
        ("transpose", [
            layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="tanh",
                                   **kw),
            layers.Conv2DTranspose(3, 4, strides=2, padding="same", **kw),
            layers.Conv2DTranspose(2, 3, strides=(2, 1), output_padding=(1, 0), **kw),
            layers.Conv2DTranspose(2, (2, 3), dilation_rate=2, use_bias=False, **kw),
            layers.Conv2DTranspose(2, 3, strides=3, padding="same", output_padding=1,
                                   **kw)],
         img(5, 4, 3)),
        ("batch_norm", [
            layers.Conv2D(4, 3, **kw), layers.BatchNormalization(axis=channel),
            layers.BatchNormalization(axis=2, scale=False, epsilon=0.1),
            layers.Flatten(**kw), layers.Dense(5), layers.BatchNormalization(center=False),
            layers.Activation("relu")],
         img(7, 6, 2)),
    ]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", range(3))
def test_conv_variants_and_batch_norm_match_onnx_runtime(case, data_format, tmp_path):
    fastconv.set_seed(20 + case)
    name, stack, shape = _conv_variant_models(data_format)[case]
    model = _randomize(Sequential([layers.Input(shape)] + stack), case)
    x = _rng(20 + case).standard_normal((3,) + shape).astype(np.float32)
    proto = assert_exports(model, x, tmp_path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"separable": "Conv", "transpose": "ConvTranspose",
            "batch_norm": "BatchNormalization"}[name] in ops


def _small_layer_models(fmt):
    last = fmt == "channels_last"

    def img(h, w, c):
        return (h, w, c) if last else (c, h, w)

    kw = dict(data_format=fmt)
    acts = ["relu6", "leaky_relu", "elu", "selu", "gelu", "swish", "silu",
            "hard_sigmoid", "hard_swish", "hard_silu", "softplus"]
    return [
        ("reshaping", [
            layers.ZeroPadding2D(((1, 2), (0, 3)), **kw), layers.Conv2D(3, 2, **kw),
            layers.Cropping2D(((0, 1), (2, 1)), **kw), layers.UpSampling2D((2, 3), **kw),
            layers.UpSampling2D(2, interpolation="bilinear", **kw),
            layers.GlobalMaxPooling2D(**kw)], img(5, 4, 2)),
        ("global_max_keepdims", [
            layers.GlobalMaxPooling2D(keepdims=True, **kw), layers.Flatten(**kw)],
         img(9, 8, 3)),
        ("activation_layers", [
            layers.ReLU(), layers.Conv2D(3, 1, **kw), layers.ReLU(max_value=6.0),
            layers.Conv2D(3, 1, **kw), layers.ReLU(max_value=0.5),
            layers.Conv2D(3, 1, **kw), layers.LeakyReLU(), layers.Conv2D(3, 1, **kw),
            layers.LeakyReLU(0.2), layers.Conv2D(3, 1, **kw), layers.ELU(0.7),
            layers.Conv2D(3, 1, **kw), layers.ELU()], img(4, 3, 3)),
        ("activations", [layers.Conv2D(4, 1, activation=a, **kw) for a in acts],
         img(3, 4, 2)),
        # (not read back by fastconv.onnx.load: Exp, Greater and Where, Erf)
        ("soft_pooling", [
            layers.SoftPooling2D(2, **kw), layers.SoftPooling2D(3, strides=2,
                                                                padding="same", **kw)],
         img(9, 8, 3)),
        ("general_relu", [
            layers.ReLU(negative_slope=0.1, threshold=0.5), layers.Conv2D(3, 1, **kw),
            layers.ReLU(max_value=1.0, negative_slope=0.2, threshold=0.3)],
         img(4, 3, 3)),
        ("gelu_before_opset_20", [layers.Conv2D(4, 1, activation="gelu", **kw)],
         img(3, 4, 2)),
    ]


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("case", range(7))
def test_small_layers_match_onnx_runtime(case, data_format, tmp_path):
    fastconv.set_seed(30 + case)
    name, stack, shape = _small_layer_models(data_format)[case]
    model = _randomize(Sequential([layers.Input(shape)] + stack), case)
    x = _rng(30 + case).standard_normal((3,) + shape).astype(np.float32) * 2
    # opset 20 has Gelu
    assert_exports(model, x, tmp_path, opset=20 if name == "activations" else 17,
                   round_trip=case < 4)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_functional_models_match_onnx_runtime(data_format, tmp_path):
    """A residual block, a concatenation, every merge layer, a shared layer, two
    inputs and two outputs."""
    fastconv.set_seed(40)
    last = data_format == "channels_last"
    kw = dict(data_format=data_format)
    shape = (6, 5, 3) if last else (3, 6, 5)
    a, b = fastconv.Input(shape, name="a"), fastconv.Input(shape, name="b")
    conv = layers.Conv2D(3, 3, padding="same", **kw)
    y = layers.BatchNormalization(axis=-1 if last else 1)(conv(a))
    y = layers.ReLU()(layers.Add()([y, a]))
    z = conv(b)  # shared
    merged = [cls()([y, z]) for cls in (layers.Subtract, layers.Multiply,
                                        layers.Average, layers.Maximum, layers.Minimum)]
    cat = layers.Concatenate(axis=-1 if last else 1)(merged + [y])
    out1 = layers.Dense(4, activation="softmax")(
        layers.GlobalAveragePooling2D(**kw)(cat))
    out2 = layers.Conv2D(2, 1, **kw)(cat)
    model = _randomize(fastconv.Model([a, b], [out1, out2]), 40)
    r = _rng(40)
    xs = [r.standard_normal((3,) + shape).astype(np.float32) for _ in range(2)]
    path = tmp_path / "f.onnx"
    fonnx.export(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["a", "b"]
    got = sess.run(None, {"a": xs[0], "b": xs[1]})
    want = model.predict(xs, verbose=0)
    back = fonnx.load(path).predict(xs, verbose=0)
    for g_, w_, b_ in zip(got, want, back):
        scale = float(np.abs(w_).max())
        assert np.abs(g_ - w_).max() <= 1e-5 * scale
        assert np.abs(b_ - w_).max() <= 1e-5 * scale


def test_hard_swish_before_opset_14(tmp_path):
    """No HardSwish operator before opset 14: x * HardSigmoid(x), read back as the
    activation."""
    model = _randomize(Sequential([layers.Input((4, 4, 2)), layers.Conv2D(
        3, 1, activation="hard_swish")]), 60)
    x = _rng(60).standard_normal((2, 4, 4, 2)).astype(np.float32) * 3
    proto = assert_exports(model, x, tmp_path, opset=13)
    assert "HardSwish" not in {n.op_type for n in proto.graph.node}
    assert fonnx.load(tmp_path / "model.onnx").layers[-1].activation == "hard_swish"


def test_preprocessing_layers_match_onnx_runtime(tmp_path):
    fastconv.set_seed(4)
    x = _rng(4).standard_normal((5, 6, 7, 3)).astype(np.float32) * 3 + 1
    norm = layers.Normalization()
    norm.adapt(x)
    inverted = layers.Normalization(axis=(1, 3), mean=np.arange(18.).reshape(6, 3),
                                    variance=np.full((6, 3), 4.0), invert=True)
    model = Sequential([
        layers.Input((6, 7, 3)), layers.Rescaling(np.array([0.5, 2.0, -1.0]), offset=0.25),
        norm, inverted, layers.RandomFlip(), layers.Rescaling(1 / 255),
        layers.Conv2D(2, 3), layers.Rescaling(2.0, offset=np.array([1.0, -1.0]))])
    assert_exports(model, x, tmp_path)


def test_channels_first_rescaling_broadcasts_on_trailing_axes(tmp_path):
    model = Sequential([layers.Input((3, 4, 5)), layers.Conv2D(3, 1, data_format=
                                                                "channels_first"),
                        layers.Rescaling(np.arange(1.0, 6.0))])
    x = _rng(5).standard_normal((2, 3, 4, 5)).astype(np.float32)
    assert_exports(model, x, tmp_path)


def test_float64_model_exports_double_tensors(tmp_path):
    model = Sequential([layers.Input((6,)), layers.Dense(3, dtype="float64",
                                                         activation="softmax")])
    x = _rng(6).standard_normal((4, 6))
    proto = assert_exports(model, x, tmp_path)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


@pytest.mark.parametrize("opset", [13, 14, 18, 21])
def test_opsets(opset, tmp_path):
    fastconv.set_seed(7)
    model = applications.lenet5(compile=False)
    x = _rng(7).standard_normal((2, 32, 32, 1)).astype(np.float32)
    assert_exports(model, x, tmp_path, opset=opset)


@pytest.mark.parametrize("opset", [12, 22, 0])
def test_opset_out_of_range(opset, tmp_path):
    with pytest.raises(ValueError, match=rf"opset must be in \[13, 21\], got {opset}"):
        fonnx.export(applications.lenet5(compile=False), tmp_path / "m.onnx", opset)
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(TypeError, match="opset must be an int.*'17'"):
        fonnx.export(applications.lenet5(compile=False), tmp_path / "m.onnx", "17")


def test_unbuilt_model_and_unknown_layer_are_refused(tmp_path):
    with pytest.raises(ValueError, match="is not built"):
        fonnx.export(Sequential([layers.Dense(3)]), tmp_path / "m.onnx")

    class Doubler(layers.Layer):
        def _linear_forward(self, x, training):
            return 2 * x

    model = Sequential([layers.Input((3,)), Doubler(name="doubler")])
    with pytest.raises(ValueError, match="'doubler' \\(Doubler\\) has no ONNX export"):
        fonnx.export(model, tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="fastconv model"):
        fonnx.export(object(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"fastconv\[onnx\]"):
        fonnx.export(applications.lenet5(compile=False), tmp_path / "m.onnx")
