"""Layers: forward against the functional ops, gradients against finite differences,
weights, configs, and every error message."""
import numpy as np
import pytest

import fastconv
from fastconv import activations, layers as L
from fastconv.reference import numeric_gradient


def check_layer_gradients(layer, x, rng, training=False):
    """Input and parameter gradients of sum(up * layer(x)) vs finite differences."""
    y = layer(x, training=training)
    up = rng.standard_normal(y.shape)
    gx = layer.backward(up)
    grads = layer.gradients

    def f():
        return float(np.sum(up * layer.forward(x, training)))
    np.testing.assert_allclose(gx, numeric_gradient(f, x), rtol=1e-5, atol=1e-7)
    for w, g in zip(layer.weights, grads):
        np.testing.assert_allclose(g, numeric_gradient(f, w), rtol=1e-5, atol=1e-7)


@pytest.fixture
def rng():
    return np.random.default_rng(1)


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", None])
def test_conv2d_forward_matches_functional_op(fmt, act, rng):
    layer = L.Conv2D(5, (3, 2), strides=(2, 1), padding="same", data_format=fmt,
                     activation=act, bias_initializer="random_normal")
    x = rng.standard_normal((2, 7, 6, 3) if fmt == "channels_last" else (2, 3, 7, 6))
    x = x.astype(np.float32)
    y = layer(x)
    assert layer.kernel.shape == (3, 2, 3, 5) and layer.bias.shape == (5,)
    w = layer.kernel if fmt == "channels_last" else layer.kernel.transpose(3, 2, 0, 1)
    z = fastconv.conv2d(x, w, layer.bias, stride=(2, 1), padding="same", data_format=fmt)
    expected = activations.get(act)[0](z)
    np.testing.assert_array_equal(y, expected)
    assert y.shape == layer.compute_output_shape(x.shape)
    assert layer.output_shape == (None,) + y.shape[1:]


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv2d_fused_relu_equals_conv_then_relu_layer(fmt, rng):
    """activation="relu" is fused into the convolution's output pass; forward and
    backward must equal a linear Conv2D followed by an Activation("relu") layer."""
    fused = L.Conv2D(40, 3, padding="same", data_format=fmt, activation="relu",
                     bias_initializer="random_normal")
    linear = L.Conv2D(40, 3, padding="same", data_format=fmt)
    relu = L.Activation("relu")
    shape = (3, 9, 8, 4) if fmt == "channels_last" else (3, 4, 9, 8)
    x = rng.standard_normal(shape).astype(np.float32)
    y = fused(x)
    linear(x)
    linear.set_weights(fused.get_weights())
    y_ref = relu(linear(x))
    assert (y == 0).mean() > 0.2  # the ReLU really clips
    np.testing.assert_array_equal(y, y_ref)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(fused.backward(gy), linear.backward(relu.backward(gy)))
    assert len(fused.gradients) == 2
    for got, want in zip(fused.gradients, linear.gradients):
        np.testing.assert_array_equal(got, want)


def test_conv2d_groups_and_dilation_forward(rng):
    layer = L.Conv2D(4, 3, dilation_rate=2, groups=2, use_bias=False)
    x = rng.standard_normal((1, 9, 8, 6)).astype(np.float32)
    y = layer(x)
    assert layer.kernel.shape == (3, 3, 3, 4) and layer.weights == [layer.kernel]
    expected = fastconv.conv2d(x, layer.kernel, None, dilation=2, groups=2,
                               data_format="channels_last")
    np.testing.assert_array_equal(y, expected)


def test_dense_forward_and_nd_input(rng):
    layer = L.Dense(3, activation="tanh", bias_initializer="ones")
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(layer(x), np.tanh(x @ layer.kernel + 1), rtol=1e-6)
    assert layer.kernel.shape == (5, 3)
    x3 = rng.standard_normal((2, 4, 5)).astype(np.float32)
    y3 = layer(x3)
    assert y3.shape == (2, 4, 3)
    np.testing.assert_allclose(y3, np.tanh(x3 @ layer.kernel + 1), rtol=1e-6)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_pooling_layers_match_functional_ops(fmt, rng):
    x = rng.standard_normal((2, 8, 7, 3)).astype(np.float32)
    if fmt == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    mp = L.MaxPooling2D((3, 2), strides=(2, 2), data_format=fmt)
    np.testing.assert_array_equal(
        mp(x), fastconv.max_pool2d(x, (3, 2), (2, 2), "valid", data_format=fmt))
    ap = L.AveragePooling2D(2, padding="same", data_format=fmt)
    np.testing.assert_array_equal(
        ap(x), fastconv.avg_pool2d(x, 2, None, "same", data_format=fmt))
    gap = L.GlobalAveragePooling2D(data_format=fmt)
    np.testing.assert_array_equal(gap(x), fastconv.global_avg_pool2d(x, data_format=fmt))
    np.testing.assert_allclose(gap(x), x.mean(axis=(1, 2) if fmt == "channels_last"
                                              else (2, 3)), rtol=1e-5, atol=1e-7)
    keep = L.GlobalAveragePooling2D(data_format=fmt, keepdims=True)(x)
    assert keep.shape == ((2, 1, 1, 3) if fmt == "channels_last" else (2, 3, 1, 1))
    for layer in (mp, ap, gap):
        assert layer.compute_output_shape(x.shape) == layer(x).shape


def test_flatten_orders_height_width_channels(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    flat = L.Flatten()(x)
    assert flat[0, 1] == x[0, 0, 0, 1] and flat[0, 5] == x[0, 0, 1, 0]
    # channels_first input is moved to channels_last first (Keras), same order
    xf = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(L.Flatten(data_format="channels_first")(xf), flat)


def test_dropout_inference_identity_and_training_mask(rng):
    layer = L.Dropout(0.25, seed=3)
    x = rng.standard_normal((200, 50)).astype(np.float32) + 5
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    dropped = y == 0
    assert 0.2 < dropped.mean() < 0.3
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.75, rtol=1e-6)
    g = layer.backward(np.ones_like(y))
    np.testing.assert_array_equal(g == 0, dropped)
    np.testing.assert_allclose(g[~dropped], 1 / 0.75, rtol=1e-6)
    # seed: the same masks again
    again = L.Dropout(0.25, seed=3)
    np.testing.assert_array_equal(again(x, training=True), y)
    # noise_shape shares the mask along axes of size 1
    shared = L.Dropout(0.5, noise_shape=(None, 1), seed=0)(x, training=True)
    assert np.all((shared == 0).all(axis=1) | (shared != 0).all(axis=1))


def test_activation_layer(rng):
    x = rng.standard_normal((3, 4))
    for name in ("relu", "tanh", "sigmoid", "softmax", "linear"):
        layer = L.Activation(name, dtype="float64")
        np.testing.assert_allclose(layer(x), activations.get(name)[0](x))
        assert layer.count_params() == 0


def test_forward_cache_is_replaced(rng):
    layer = L.Dense(2)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    layer(a)
    layer(b)
    assert layer._x.shape == (5, 4)
    assert layer.backward(np.ones((5, 2))).shape == (5, 4)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("act", ["tanh", "softmax"])
def test_conv2d_gradients(fmt, act, rng):
    layer = L.Conv2D(4, (3, 2), strides=(2, 1), padding="same", groups=2, activation=act,
                     data_format=fmt, dtype="float64", bias_initializer="random_normal")
    x = rng.standard_normal((2, 5, 4, 4) if fmt == "channels_last" else (2, 4, 5, 4))
    check_layer_gradients(layer, x, rng)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "linear"])
def test_dense_gradients(act, rng):
    x = rng.standard_normal((3, 2, 5)) + (0.5 if act == "relu" else 0)
    check_layer_gradients(L.Dense(4, activation=act, dtype="float64"), x, rng)


@pytest.mark.parametrize("layer_fn", [
    lambda: L.MaxPooling2D(2, dtype="float64"),
    lambda: L.MaxPooling2D((3, 2), strides=(2, 1), padding="same", dtype="float64"),
    lambda: L.AveragePooling2D(2, dtype="float64"),
    lambda: L.AveragePooling2D((3, 3), strides=2, padding="same", dtype="float64"),
    lambda: L.GlobalAveragePooling2D(dtype="float64"),
    lambda: L.GlobalAveragePooling2D(data_format="channels_first", dtype="float64"),
    lambda: L.Flatten(data_format="channels_first", dtype="float64"),
    lambda: L.Activation("softmax", dtype="float64"),
], ids=["max", "max_same", "avg", "avg_same", "gap", "gap_cf", "flatten_cf", "softmax"])
def test_weightless_layer_gradients(layer_fn, rng):
    # distinct values: no ties in a max window
    x = rng.permutation(2 * 6 * 6 * 3).reshape(2, 6, 6, 3) / 10.0
    check_layer_gradients(layer_fn(), x, rng)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_compiled_mask_statistics_and_threads(dtype):
    """The compiled mask (counter-based bits keyed by the layer's generator): keep rate
    1 - rate within 5 sigma on a million elements, no pattern between neighbours, a new
    mask every call, the same mask for any thread count."""
    n, rate = 1_000_003, 0.3
    x = np.ones(n, dtype)[None]
    layer = L.Dropout(rate, seed=5, dtype=dtype)
    kept = layer(x, training=True) != 0
    sigma = np.sqrt(n * rate * (1 - rate))
    assert abs(kept.sum() - n * (1 - rate)) < 5 * sigma
    even, odd = kept[0, 0:-1:2], kept[0, 1::2]  # the two words of one 64-bit draw
    both = (even & odd).mean()
    assert abs(both - (1 - rate) ** 2) < 5 * np.sqrt((1 - rate) ** 2 / even.size)
    assert (layer(x, training=True) != 0).tolist() != kept.tolist()
    with fastconv.num_threads(1):
        one = L.Dropout(rate, seed=5, dtype=dtype)(x, training=True)
    with fastconv.num_threads(2):
        two = L.Dropout(rate, seed=5, dtype=dtype)(x, training=True)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one != 0, kept)


def test_dropout_gradient_uses_the_forward_mask(rng):
    layer = L.Dropout(0.5, seed=1, dtype="float64")
    x = rng.standard_normal((4, 6))
    y = layer(x, training=True)
    up = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(layer.backward(up), up * layer._mask)


# --------------------------------------------------------------------------- weights
def test_weights_order_shapes_and_set_weights(rng):
    layer = L.Conv2D(8, 3)
    layer.build((None, 10, 10, 2))
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 3, 2, 8) and bias.shape == (8,)
    assert kernel.dtype == np.float32
    new = [rng.standard_normal(kernel.shape), rng.standard_normal(8)]
    layer.set_weights(new)
    np.testing.assert_allclose(layer.kernel, new[0].astype(np.float32))
    assert layer.kernel.dtype == np.float32
    with pytest.raises(ValueError,
                       match=r"must have shape \(3, 3, 2, 8\), got \(3, 3, 8, 2\)"):
        layer.set_weights([np.zeros((3, 3, 8, 2)), np.zeros(8)])
    with pytest.raises(ValueError, match="expects 2 weight arrays"):
        layer.set_weights([kernel])
    with pytest.raises(ValueError, match="not built yet"):
        L.Dense(3).set_weights([])


def test_glorot_uniform_default_uses_keras_fans():
    fastconv.set_seed(0)
    layer = L.Conv2D(64, (5, 3))
    layer.build((None, 9, 9, 32))
    limit = np.sqrt(6 / (5 * 3 * 32 + 5 * 3 * 64))
    assert np.abs(layer.kernel).max() <= limit
    assert np.abs(layer.kernel).max() > 0.99 * limit
    # a uniform on [-l, l] has standard deviation l / sqrt(3)
    assert layer.kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert not layer.bias.any()


def test_config_round_trip_and_repr():
    layers = [L.Conv2D(6, 5, strides=2, padding="same", activation="relu",
                       kernel_initializer="he_normal", input_shape=(28, 28, 1)),
              L.MaxPooling2D((3, 3), strides=2), L.AveragePooling2D(), L.Flatten(),
              L.Dense(10, activation="softmax", use_bias=False), L.Dropout(0.3, seed=2),
              L.Activation("tanh"), L.GlobalAveragePooling2D(keepdims=True)]
    for layer in layers:
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        text = repr(layer)
        assert type(layer).__name__ in text and layer.name in text
    assert "filters=6" in repr(layers[0]) and "activation='relu'" in repr(layers[0])


def test_float64_layers_keep_float64(rng):
    layer = L.Dense(3, dtype="float64")
    y = layer(rng.standard_normal((2, 4)).astype(np.float32))
    assert y.dtype == np.float64 and layer.kernel.dtype == np.float64


# --------------------------------------------------------------------------- errors
def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="units must be a positive int, got 0"):
        L.Dense(0)
    with pytest.raises(ValueError, match="units must be a positive int, got -3"):
        L.Dense(-3)
    with pytest.raises(ValueError, match="unknown activation 'mish'"):
        L.Dense(3, activation="mish")
    with pytest.raises(ValueError, match="unknown activation 'sparsemax'"):
        L.Activation("sparsemax")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 'full'"):
        L.Conv2D(3, 3, padding="full")
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same', got 1"):
        L.MaxPooling2D(2, padding=1)
    with pytest.raises(ValueError, match="filters must be a positive int, got 0"):
        L.Conv2D(0, 3)
    with pytest.raises(ValueError, match="filters must be divisible by groups"):
        L.Conv2D(6, 3, groups=4)
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        L.Conv2D(6, 0)
    with pytest.raises(ValueError, match="data_format must be"):
        L.Conv2D(6, 3, data_format="NHWC")
    with pytest.raises(ValueError, match=r"rate must be a float in \[0, 1\), got 1.5"):
        L.Dropout(1.5)
    with pytest.raises(TypeError, match="unexpected keyword argument.*kernel_sise"):
        L.Conv2D(6, 3, kernel_sise=3)
    with pytest.raises(TypeError, match="dtype must be 'float32' or 'float64'"):
        L.Dense(3, dtype="float16")
    with pytest.raises(ValueError, match="unknown kernel_initializer 'glorot'"):
        L.Dense(3, kernel_initializer="glorot")


def test_wrong_input_rank_and_channels_raise(rng):
    conv = L.Conv2D(4, 3)
    with pytest.raises(ValueError, match=r"must have rank 4 \(batch, height, width, "
                                         r"channels\), got shape \(2, 8, 8\)"):
        conv(np.zeros((2, 8, 8), np.float32))
    conv(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"must have size 3 on axis -1.*got shape "
                                         r"\(1, 8, 8, 2\)"):
        conv(np.zeros((1, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="rank >= 2"):
        L.Dense(2)(np.zeros(3))
    with pytest.raises(ValueError, match="cannot be applied to input shape"):
        L.Conv2D(2, 5)(np.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="cannot be applied to input shape"):
        L.MaxPooling2D(4)(np.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError, match="input channels .* divisible by groups=2"):
        L.Conv2D(4, 3, groups=2)(np.zeros((1, 5, 5, 3)))


def test_backward_errors(rng):
    layer = L.Dense(2)
    with pytest.raises(ValueError, match="backward needs a forward pass first"):
        layer.backward(np.zeros((1, 2)))
    layer(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"grad_y .* must have the shape \(3, 2\) of "
                                         r"the last output, got \(3, 3\)"):
        layer.backward(np.zeros((3, 3)))


def test_automatic_names_are_unique():
    a, b = L.Dense(1), L.Dense(1)
    assert a.name != b.name and a.name.startswith("dense")
    assert L.MaxPooling2D().name.startswith("max_pooling2d")
    assert L.Dense(1, name="out").name == "out"


def test_small_dense_products_run_on_one_blas_thread(rng):
    pytest.importorskip("threadpoolctl")
    from fastconv import _blas as core
    libs = core._blas()
    if not libs:
        pytest.skip("no BLAS library that threadpoolctl can control")
    before = [lib.get_num_threads() for lib in libs]
    with core._SerialBlas():
        assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
    assert [lib.get_num_threads() for lib in libs] == before
    assert isinstance(core._blas_threads(128, 120, 84), core._SerialBlas)
    assert isinstance(core._blas_threads(128, 2304, 512), core._SerialBlas)
    assert core._blas_threads(4096, 4096, 4096) is core._NO_OP
    # Nested regions (a model's pass around its layers' products): one thread until the
    # outermost closes; a large product inside gets the saved counts back for itself.
    with core._SerialBlas():
        with core._blas_threads(128, 120, 84):
            assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
        assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
        with core._blas_threads(4096, 4096, 4096):
            assert [lib.get_num_threads() for lib in libs] == before
        assert [lib.get_num_threads() for lib in libs] == [1] * len(libs)
    assert [lib.get_num_threads() for lib in libs] == before
    assert core._depth == 0
    layer = L.Dense(84, dtype="float64")
    x = rng.standard_normal((128, 120))
    np.testing.assert_allclose(layer(x), x @ layer.kernel, rtol=1e-12)
    assert [lib.get_num_threads() for lib in libs] == before


@pytest.mark.parametrize("name", ["tanh", "softmax"])
@pytest.mark.parametrize("make", [
    lambda name: L.Conv2D(3, 2, activation=name, input_shape=(5, 5, 2)),
    lambda name: L.Dense(4, activation=name, input_shape=(6,)),
])
def test_activation_written_over_the_layer_output_leaves_its_input_alone(make, name):
    """Conv2D and Dense apply tanh and softmax in place on their new output: the result
    is the activation of the linear part, and the input array (the previous layer's
    output, which its backward pass reads) is not changed."""
    from fastconv import activations as act
    layer = make(name)
    assert layer._act_inplace is act._INPLACE[name]
    fn = act.get(name)[0]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2,) + layer._input_shape_arg).astype(np.float32)
    keep = x.copy()
    y = layer(x)
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(y, fn(layer._linear_forward(x, False)))
    # An Activation layer's linear part is its input: never overwritten.
    a = L.Activation(name)
    out = a(keep)
    np.testing.assert_array_equal(keep, x)
    np.testing.assert_array_equal(out, fn(x))


def test_softmax_in_place_equals_softmax(rng):
    from fastconv import activations as act
    z = rng.standard_normal((5, 7)) * 30
    z[1, 2] = np.inf
    z[3] = np.nan
    with np.errstate(invalid="ignore"):  # inf - inf
        want = act.softmax(z)
        got = act._softmax_inplace(z.copy())
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[3]).all() and np.isnan(got[1]).all()
    z32 = z[[0, 2, 4]].astype(np.float32)
    np.testing.assert_array_equal(act._softmax_inplace(z32.copy()), act.softmax(z32))
    np.testing.assert_allclose(act.softmax(z[[0, 2, 4]]).sum(axis=1), 1, rtol=1e-12)


# ------------------------------------------------- the layers' checked-once geometry
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_conv2d_layer_over_input_sizes_matches_the_checked_ops(fmt, rng):
    """A Conv2D keeps its checked geometry between calls: calls on inputs of other
    sizes (and back) must each match conv2d / conv2d_backward on those inputs."""
    layer = L.Conv2D(4, 3, strides=(2, 1), padding="same", data_format=fmt,
                     activation="tanh", bias_initializer="random_normal")
    w = None
    for hw in ((7, 6), (9, 5), (7, 6), (1, 1)):
        shape = (2,) + hw + (3,) if fmt == "channels_last" else (2, 3) + hw
        x = rng.standard_normal(shape).astype(np.float32)
        y = layer(x)
        w = layer.kernel if fmt == "channels_last" else layer.kernel.transpose(3, 2, 0, 1)
        z = fastconv.conv2d(x, w, layer.bias, stride=(2, 1), padding="same",
                            data_format=fmt)
        np.testing.assert_array_equal(y, activations.tanh(z))
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx = layer.backward(gy)
        gz = activations.tanh_backward(gy, y)
        want = fastconv.conv2d_backward(gz, x, w, stride=(2, 1), padding="same",
                                        data_format=fmt)
        np.testing.assert_array_equal(gx, want[0])
        gw = layer.gradients[0] if fmt == "channels_last" else \
            layer.gradients[0].transpose(3, 2, 0, 1)
        np.testing.assert_array_equal(gw, want[1])
        np.testing.assert_array_equal(layer.gradients[1], want[2])


def test_conv2d_layer_arrays_it_did_not_make_go_through_the_checks(rng):
    """Arrays the kernels cannot take as they are (strided, another dtype, a replaced
    weight of the wrong shape) take the checked path: the same result, or its error."""
    layer = L.Conv2D(4, 3, bias_initializer="random_normal")
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    y = layer(x)
    strided = np.asfortranarray(x)
    np.testing.assert_array_equal(layer.forward(strided), y)
    with pytest.raises(TypeError, match="must share one dtype"):
        layer.forward(x.astype(np.float64))
    layer.bias = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        layer.forward(x)
    layer.bias = np.zeros(4, np.float32)
    layer.forward(x)
    with pytest.raises(ValueError, match="grad_y must have the output shape"):
        layer._linear_backward(np.zeros((2, 5, 5, 4), np.float32), True)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
def test_pooling_layers_over_input_sizes_match_the_checked_ops(fmt, rng):
    mp = L.MaxPooling2D((3, 2), strides=(2, 1), padding="same", data_format=fmt)
    ap = L.AveragePooling2D(2, padding="same", data_format=fmt)
    for hw in ((7, 6), (4, 9), (7, 6)):
        shape = (2,) + hw + (3,) if fmt == "channels_last" else (2, 3) + hw
        x = rng.standard_normal(shape).astype(np.float32)
        y, idx = fastconv.max_pool2d(x, (3, 2), (2, 1), "same", data_format=fmt,
                                     return_indices=True)
        np.testing.assert_array_equal(mp(x), y)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(
            mp.backward(gy), fastconv.max_pool2d_backward(gy, x, (3, 2), (2, 1), "same",
                                                          data_format=fmt, indices=idx))
        ya = fastconv.avg_pool2d(x, 2, None, "same", data_format=fmt)
        np.testing.assert_array_equal(ap(x), ya)
        ga = rng.standard_normal(ya.shape).astype(np.float32)
        np.testing.assert_array_equal(
            ap.backward(ga), fastconv.avg_pool2d_backward(ga, x, 2, None, "same",
                                                          data_format=fmt))
    # a strided gradient and a float64 input take the checked path
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    if fmt == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = ap(x)
    gy = np.asfortranarray(rng.standard_normal(y.shape).astype(np.float32))
    np.testing.assert_array_equal(
        ap.backward(gy), fastconv.avg_pool2d_backward(gy, x, 2, None, "same",
                                                      data_format=fmt))
    with pytest.raises(ValueError, match="grad_y must have the output shape"):
        ap._linear_backward(np.zeros((2, 2, 2, 2), np.float32), True)
    np.testing.assert_allclose(ap.forward(x.astype(np.float64)), y, rtol=1e-6)


@pytest.mark.parametrize("m,k,n", [(200, 50, 70), (70, 50, 200), (130, 30, 65), (64, 10, 64),
                                   (1, 5, 300), (300, 7, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_split_in_halves_match_the_whole(rng, m, k, n, dtype):
    """Medium products are cut in two halves of the output rows (or columns), one on a
    helper thread: every element as the float64 product, and the same bits with one
    OpenMP thread (halves one after the other) as with two."""
    from fastconv import _blas, tuning
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for x, y, expect in ((a, b, want), (b.T, a.T, want.T)):  # also transposed views
        with tuning.override(blas_split_macs=1), fastconv.num_threads(2):
            two = _blas._matmul(x, y)
        with tuning.override(blas_split_macs=1), fastconv.num_threads(1):
            one = _blas._matmul(x, y)
        assert two.dtype == dtype and two.shape == expect.shape
        np.testing.assert_allclose(two, expect, rtol=tol, atol=tol * np.sqrt(k))
        np.testing.assert_array_equal(one, two)
    assert _blas._depth == 0


def test_dense_layer_with_split_products(rng):
    """The Dense layer's three products with the medium-size paths on for any size (the
    forward on the kernels' product, the gradients through the split): the same as
    NumPy's products of the same arrays."""
    from fastconv import tuning
    with tuning.override(blas_split_macs=1):
        _check_dense_layer_products(rng)


def _check_dense_layer_products(rng):
    layer = L.Dense(70, dtype="float64")
    x = rng.standard_normal((130, 90))
    layer(x)  # built
    y = layer.forward(x, True)
    np.testing.assert_allclose(y, x @ layer.kernel + layer.bias, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx = layer.backward(g)
    np.testing.assert_allclose(gx, g @ layer.kernel.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer._grads["kernel"], x.T @ g, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer._grads["bias"], g.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("shape", ["5", ("5", 3), (2.7, 3), (float("inf"), 3), (True, 3),
                                   3.0, object()])
def test_a_shape_argument_takes_ints_only(shape):
    """A size given as a string, a float (2.7 was truncated to 2; inf raised
    OverflowError) or a bool is refused, naming the argument and echoing the value."""
    with pytest.raises(TypeError, match="input_shape must be a tuple of ints, got"):
        L.Dense(3, input_shape=shape)
    assert L.Dense(3, input_shape=(np.int64(4),))._input_shape_arg == (4,)
