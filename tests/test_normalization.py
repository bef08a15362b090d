"""BatchNormalization: PyTorch's BatchNorm2d (train and eval), float64 finite
differences with random gamma and beta, the moving statistics, non-trainable weights,
configs and errors; the conv + batch norm fold of a model's inference pass."""
import numpy as np
import pytest

from fastconv import fusion, layers as L
from fastconv.models import Sequential, load_model
from fastconv.optimizers import SGD
from fastconv.reference import numeric_gradient


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def random_bn(rng, shape, dtype="float64", **kwargs):
    layer = L.BatchNormalization(dtype=dtype, **kwargs)
    layer.build(shape)
    c = shape[layer.axis]
    values = {"gamma": rng.uniform(0.5, 2.0, c), "beta": rng.standard_normal(c),
              "moving_mean": rng.standard_normal(c),
              "moving_variance": rng.uniform(0.5, 2.0, c)}
    layer.set_weights([values[n] for n in layer._weight_names])
    return layer


@pytest.mark.parametrize("fmt", ["channels_first", "channels_last"])
@pytest.mark.parametrize("training", [True, False])
def test_matches_torch_batchnorm2d(fmt, training, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 3, 5, 6)) * 2 + 1  # (N, C, H, W)
    axis = 1 if fmt == "channels_first" else -1
    bn = random_bn(rng, x.shape if axis == 1 else (4, 5, 6, 3), axis=axis, momentum=0.8,
                   epsilon=1e-3)
    gamma, beta, mm, mv = bn.get_weights()
    tb = torch.nn.BatchNorm2d(3, eps=1e-3, momentum=0.2).double()
    with torch.no_grad():
        tb.weight[:], tb.bias[:] = torch.tensor(gamma), torch.tensor(beta)
        tb.running_mean[:], tb.running_var[:] = torch.tensor(mm), torch.tensor(mv)
    tb.train(training)
    xt = torch.tensor(x, requires_grad=True)
    yt = tb(xt)
    up = rng.standard_normal(yt.shape)
    yt.backward(torch.tensor(up))

    def to(a):
        return a if axis == 1 else a.transpose(0, 2, 3, 1)

    def back(a):
        return a if axis == 1 else a.transpose(0, 3, 1, 2)
    y = bn(to(x), training=training)
    gx = bn.backward(to(up))
    np.testing.assert_allclose(back(y), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back(gx), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bn.gradients[0], tb.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.gradients[1], tb.bias.grad.numpy(), rtol=1e-10)
    assert bn.gradients[2:] == [None, None]
    np.testing.assert_allclose(bn.moving_mean, tb.running_mean.numpy(), rtol=1e-12)
    if training:
        # Keras (and fastconv) move the variance by the biased batch variance, torch by
        # the unbiased one: moving = m * old + (1 - m) * var.
        m = x.size // 3
        var_b = x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1)
        np.testing.assert_allclose(bn.moving_variance, 0.8 * mv + 0.2 * var_b, rtol=1e-12)
        np.testing.assert_allclose(tb.running_var.numpy(),
                                   0.8 * mv + 0.2 * var_b * m / (m - 1), rtol=1e-12)
    else:
        np.testing.assert_array_equal(bn.moving_variance, mv)


def check_gradients(layer, x, rng, training):
    y = layer(x, training=training)
    up = rng.standard_normal(y.shape)
    gx = layer.backward(up)
    state = [w.copy() for w in layer.non_trainable_weights]

    def f():
        out = float(np.sum(up * layer.forward(x, training)))
        for w, s in zip(layer.non_trainable_weights, state):
            w[...] = s  # (a training forward moves them; f must not depend on calls)
        return out
    np.testing.assert_allclose(gx, numeric_gradient(f, x), rtol=1e-6, atol=1e-8)
    for w, g in zip(layer.trainable_weights, layer.trainable_gradients):
        np.testing.assert_allclose(g, numeric_gradient(f, w), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape,axis", [((3, 4, 5, 2), -1), ((3, 2, 4, 5), 1),
                                        ((6, 4), -1), ((2, 3, 4, 5), 2)])
@pytest.mark.parametrize("training", [True, False])
def test_gradients_match_finite_differences(shape, axis, training, rng):
    layer = random_bn(rng, shape, axis=axis)
    check_gradients(layer, rng.standard_normal(shape) * 1.5 + 0.7, rng, training)


@pytest.mark.parametrize("center,scale", [(False, True), (True, False), (False, False)])
def test_center_and_scale_drop_their_weights(center, scale, rng):
    layer = random_bn(rng, (4, 3, 3, 2), center=center, scale=scale)
    names = [n for n, keep in (("gamma", scale), ("beta", center)) if keep]
    assert layer._weight_names == names + ["moving_mean", "moving_variance"]
    check_gradients(layer, rng.standard_normal((4, 3, 3, 2)), rng, True)
    x = rng.standard_normal((5, 3, 3, 2))
    y = layer(x, training=True)
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    expected = (x - mean) / np.sqrt(var + 1e-3)
    if scale:
        expected = expected * layer.gamma
    if center:
        expected = expected + layer.beta
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_float32_statistics_of_a_large_offset_batch(rng):
    """Sums in float64: a float32 batch far from zero normalizes to unit variance."""
    x = (rng.standard_normal((64, 16, 16, 4)) * 0.01 + 100).astype(np.float32)
    layer = L.BatchNormalization()
    y = layer(x, training=True)
    assert y.dtype == np.float32
    ref = (x.astype(np.float64) - x.mean(axis=(0, 1, 2), dtype=np.float64)) / np.sqrt(
        x.var(axis=(0, 1, 2), dtype=np.float64) + 1e-3)
    np.testing.assert_allclose(y, ref, rtol=1e-3, atol=2e-3)


def test_inference_and_frozen_layers_use_the_moving_statistics(rng):
    layer = random_bn(rng, (2, 3, 3, 4))
    gamma, beta, mm, mv = layer.get_weights()
    x = rng.standard_normal((2, 3, 3, 4))
    expected = (x - mm) / np.sqrt(mv + 1e-3) * gamma + beta
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12)
    layer.trainable = False  # Keras: a frozen BatchNormalization runs in inference mode
    np.testing.assert_allclose(layer(x, training=True), expected, rtol=1e-12)
    np.testing.assert_array_equal(layer.moving_mean, mm)
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 4
    layer.trainable = True
    assert [w is layer.gamma or w is layer.beta for w in layer.trainable_weights] == \
        [True, True]
    assert layer.non_trainable_weights[0] is layer.moving_mean


def test_model_training_updates_moving_statistics_not_through_the_optimizer(rng):
    """The optimizer (SGD with weight decay, which would shrink anything it updates)
    gets gamma and beta only; the moving statistics move by the batch's."""
    model = Sequential([L.Input((5, 5, 2)), L.Conv2D(3, 3, use_bias=False),
                        L.BatchNormalization(momentum=0.5), L.Flatten(), L.Dense(2)])
    model.compile(SGD(0.1, weight_decay=0.5), "mse")
    x = rng.standard_normal((8, 5, 5, 2)).astype(np.float32)
    z = model.layers[0](x)  # the conv output the normalization sees in the step
    model.train_on_batch(x, rng.standard_normal((8, 2)).astype(np.float32))
    bn = model.layers[1]
    np.testing.assert_allclose(bn.moving_mean, 0.5 * z.mean(axis=(0, 1, 2)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance, 0.5 + 0.5 * z.var(axis=(0, 1, 2)),
                               rtol=1e-5)
    assert len(model.trainable_weights) == 1 + 2 + 2
    assert len(model.non_trainable_weights) == 2


def fold_model(fmt, activation=None, use_bias=True, depthwise=False, tail=None):
    axis = -1 if fmt == "channels_last" else 1
    shape = (9, 8, 3) if fmt == "channels_last" else (3, 9, 8)
    conv = (L.DepthwiseConv2D(3, depth_multiplier=2, data_format=fmt, use_bias=use_bias,
                              activation=activation) if depthwise else
            L.Conv2D(5, 3, strides=2, padding="same", data_format=fmt, use_bias=use_bias,
                     activation=activation))
    tail = L.Activation("relu") if tail is None else tail()
    return Sequential([L.Input(shape), conv, L.BatchNormalization(axis=axis),
                       tail, L.Flatten(), L.Dense(3)]), shape


def randomize(model, rng):
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.standard_normal(c),
                               rng.standard_normal(c), rng.uniform(0.2, 2, c)])
        elif layer.weights:
            layer.set_weights([rng.standard_normal(w.shape) * 0.3 for w in layer.weights])


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("depthwise,use_bias", [(False, True), (False, False), (True, True)])
def test_conv_batch_norm_fold_predicts_as_the_unfused_model(fmt, depthwise, use_bias, rng):
    model, shape = fold_model(fmt, use_bias=use_bias, depthwise=depthwise)
    model.compile("sgd", "mse")
    randomize(model, rng)
    steps = model._steps(fusion.INFERENCE, False)
    assert [s.pattern.name for s in steps if s.pattern] == ["conv_batch_norm"]
    plain, _ = fold_model(fmt, use_bias=use_bias, depthwise=depthwise)
    plain.compile("sgd", "mse")
    plain._fusion = False
    x = rng.standard_normal((6,) + shape).astype(np.float32)
    for _ in range(2):  # new weights in either layer are folded again
        plain.set_weights(model.get_weights())
        expected = plain.predict(x, verbose=0)
        got = model.predict(x, verbose=0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        randomize(model, rng)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("tail,name", [
    (lambda: L.ReLU(), "conv_batch_norm_relu"),
    (lambda: L.ReLU(6.0), "conv_batch_norm_relu"),
    (lambda: L.ReLU(5.0), "conv_batch_norm"),     # (not a kind the kernels run)
    (lambda: L.LeakyReLU(), "conv_batch_norm")])
def test_conv_batch_norm_relu_predicts_as_the_unfused_model(fmt, depthwise, tail, name,
                                                            rng):
    """The fold with the ReLU (ReLU6) after it in the convolution's output pass; the
    unfused model the oracle, the inputs scaled so that ReLU6 clips some outputs."""
    model, shape = fold_model(fmt, depthwise=depthwise, tail=tail)
    model.compile("sgd", "mse")
    randomize(model, rng)
    steps = model._steps(fusion.INFERENCE, False)
    assert [s.pattern.name for s in steps if s.pattern] == [name]
    plain, _ = fold_model(fmt, depthwise=depthwise, tail=tail)
    plain.compile("sgd", "mse")
    plain._fusion = False
    x = rng.standard_normal((6,) + shape).astype(np.float32) * 8
    for _ in range(2):
        plain.set_weights(model.get_weights())
        expected = plain.predict(x, verbose=0)
        got = model.predict(x, verbose=0)
        # (x scaled by 8: each output is a sum of products of about 10 each, rounded
        # in float32 by the folded and the unfused orders alike: an absolute error of
        # a few float32 steps of the terms, 2e-6 * max|y|, not of y)
        np.testing.assert_allclose(got, expected, rtol=1e-5,
                                   atol=max(1e-5, 2e-6 * np.abs(expected).max()))
        relu_out = model.layers[2].forward(model.layers[1].forward(
            model.layers[0].forward(x)))
        assert (relu_out <= 0).any() and (relu_out > 0).any()
        randomize(model, rng)


def pad_model(fmt, depthwise, relu, padding, strides):
    axis = -1 if fmt == "channels_last" else 1
    shape = (9, 8, 4) if fmt == "channels_last" else (4, 9, 8)
    conv = (L.DepthwiseConv2D(3, strides=strides, data_format=fmt) if depthwise else
            L.Conv2D(5, 3, strides=strides, data_format=fmt))
    layers = [L.Input(shape), L.ZeroPadding2D(padding, data_format=fmt), conv,
              L.BatchNormalization(axis=axis)]
    if relu is not None:
        layers.append(relu())
    return Sequential(layers + [L.Flatten(), L.Dense(3)]), shape


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("relu,name", [
    (lambda: L.ReLU(6.0), "pad_conv_batch_norm_relu"),
    (lambda: L.ReLU(), "pad_conv_batch_norm_relu"),
    (None, "pad_conv_batch_norm")])
@pytest.mark.parametrize("padding,strides", [(((0, 1), (0, 1)), 2), ((2, 1), 1)])
def test_zero_padding_folds_into_the_convolution(fmt, depthwise, relu, name, padding,
                                                 strides, rng):
    """ZeroPadding2D + a 'valid' convolution + BatchNormalization (+ ReLU/ReLU6): in
    inference the padding is the convolution's own (no padded copy), predictions as
    the unfused model's (the oracle), asymmetric padding (Keras's correct_pad) too."""
    model, shape = pad_model(fmt, depthwise, relu, padding, strides)
    model.compile("sgd", "mse")
    randomize(model, rng)
    steps = model._steps(fusion.INFERENCE, False)
    assert [s.pattern.name for s in steps if s.pattern] == [name]
    # (training: the padding folds, the normalization does not)
    assert "pad_conv" in [s.pattern.name for s in model._steps(fusion.TRAINING, False)
                          if s.pattern]
    plain, _ = pad_model(fmt, depthwise, relu, padding, strides)
    plain.compile("sgd", "mse")
    plain._fusion = False
    plain.set_weights(model.get_weights())
    x = rng.standard_normal((6,) + shape).astype(np.float32) * 8
    expected = plain.predict(x, verbose=0)   # (float32 rounding of sums of this scale)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5,
                               atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("first", [False, True])
def test_zero_padding_folds_into_a_training_convolution(fmt, depthwise, first, rng):
    """pad_conv in training: the convolution runs on the padded geometry and keeps the
    unpadded input; three SGD steps give the unfused model's weights (the oracle), with
    the pair inside the model (the input gradient runs through it: the fused backward)
    or first (no input gradient: the convolution's own backward on its kept padding)."""
    def build():
        axis = -1 if fmt == "channels_last" else 1
        shape = (9, 8, 4) if fmt == "channels_last" else (4, 9, 8)
        conv = (L.DepthwiseConv2D(3, strides=2, data_format=fmt) if depthwise else
                L.Conv2D(4, 3, strides=2, data_format=fmt))
        head = [] if first else [L.Conv2D(4, 1, data_format=fmt)]
        layers = ([L.Input(shape)] + head +
                  [L.ZeroPadding2D(((0, 1), (1, 2)), data_format=fmt), conv,
                   L.BatchNormalization(axis=axis), L.ReLU(6.0), L.Flatten(),
                   L.Dense(3)])
        model = Sequential(layers)
        model.compile(SGD(0.05, momentum=0.9), "mse")
        return model, shape

    model, shape = build()
    randomize(model, rng)
    names = [s.pattern.name for s in model._steps(fusion.TRAINING, False) if s.pattern]
    assert "pad_conv" in names
    plain, _ = build()
    plain._fusion = False
    plain.set_weights(model.get_weights())
    x = rng.standard_normal((6,) + shape).astype(np.float32)
    y = rng.standard_normal((6, 3)).astype(np.float32)
    for _ in range(3):
        model.train_on_batch(x, y)
        plain.train_on_batch(x, y)
    for got, want in zip(model.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(plain.get_weights()[-2], model.get_weights()[-2] * 0)


def test_zero_padding_folds_only_into_a_valid_convolution_of_its_format():
    pattern = next(p for p in fusion.PATTERNS if p.name == "pad_conv_batch_norm")
    pad, bn = L.ZeroPadding2D(1), L.BatchNormalization()
    assert pattern.matches(pad, L.Conv2D(2, 3), bn, fusion.INFERENCE)
    assert pattern.matches(pad, L.DepthwiseConv2D(3), bn, fusion.INFERENCE)
    assert not pattern.matches(pad, L.Conv2D(2, 3), bn, fusion.TRAINING)
    assert not pattern.matches(pad, L.Conv2D(2, 3, padding="same"), bn, fusion.INFERENCE)
    assert not pattern.matches(pad, L.Conv2D(2, 3, data_format="channels_first"), bn,
                               fusion.INFERENCE)
    assert not pattern.matches(pad, L.SeparableConv2D(2, 3), bn, fusion.INFERENCE)
    alone = next(p for p in fusion.PATTERNS if p.name == "pad_conv")
    assert alone.matches(pad, L.Conv2D(2, 3), fusion.TRAINING)
    assert alone.matches(pad, L.DepthwiseConv2D(3), fusion.INFERENCE)
    assert not alone.matches(pad, L.Conv2D(2, 3, activation="relu"), fusion.TRAINING)
    assert not alone.matches(pad, L.Conv2D(2, 3, padding="same"), fusion.TRAINING)


def test_the_fold_needs_a_linear_conv_and_the_channel_axis():
    conv, bn = L.Conv2D(2, 3, activation="relu"), L.BatchNormalization()
    pattern = next(p for p in fusion.PATTERNS if p.name == "conv_batch_norm")
    assert pattern.matches(L.Conv2D(2, 3), L.BatchNormalization(), fusion.INFERENCE)
    assert not pattern.matches(L.Conv2D(2, 3), L.BatchNormalization(), fusion.TRAINING)
    assert not pattern.matches(conv, bn, fusion.INFERENCE)
    assert not pattern.matches(L.Conv2D(2, 3), L.BatchNormalization(axis=1),
                               fusion.INFERENCE)
    assert pattern.matches(L.Conv2D(2, 3, data_format="channels_first"),
                           L.BatchNormalization(axis=1), fusion.INFERENCE)


def test_config_round_trip_repr_and_save_load(tmp_path, rng):
    layer = L.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False,
                                 gamma_regularizer="l2", beta_constraint="non_neg",
                                 moving_variance_initializer="zeros")
    config = layer.get_config()
    clone = L.BatchNormalization.from_config(config)
    assert clone.get_config() == config
    assert "momentum=0.9" in repr(layer) and "BatchNormalization" in repr(layer)
    assert L.LAYER_CLASSES["BatchNormalization"] is L.BatchNormalization
    model, shape = fold_model("channels_last")
    model.compile("adam", "mse")
    randomize(model, rng)
    path = str(tmp_path / "bn.npz")
    model.save(path)
    loaded = load_model(path)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = rng.standard_normal((2,) + shape).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="axis must be an int, got 1.5"):
        L.BatchNormalization(axis=1.5)
    with pytest.raises(ValueError, match=r"momentum must be in \[0.0, 1.0\], got 1.5"):
        L.BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be in .*got -1"):
        L.BatchNormalization(epsilon=-1)
    with pytest.raises(TypeError, match="center must be True or False, got 'yes'"):
        L.BatchNormalization(center="yes")
    with pytest.raises(ValueError, match="unknown|gamma_initializer"):
        L.BatchNormalization(gamma_initializer="nope")
    with pytest.raises(ValueError, match="axis 4 .* out of bounds for input shape"):
        L.BatchNormalization(axis=4)(np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="must not be the batch axis, got axis=0"):
        L.BatchNormalization(axis=0)(np.zeros((2, 3)))
    bn = L.BatchNormalization()
    bn(np.zeros((2, 3, 3, 4)))
    with pytest.raises(ValueError, match="size 4 on axis"):
        bn(np.zeros((2, 3, 3, 5)))


@pytest.mark.parametrize("shape,axis", [((16, 24, 24, 16), -1), ((16, 16, 24, 24), 1),
                                        ((37, 5, 7, 3), -1)])
def test_compiled_passes_give_the_same_bits_on_one_and_two_threads(shape, axis, rng):
    """Work items depend on the shapes only (src/_batchnorm.pyx): thread counts agree
    bit for bit, and the float32 result is NumPy's float64 formula rounded."""
    import fastconv
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    up = rng.standard_normal(shape).astype(np.float32)
    results = []
    for threads in (1, 2):
        with fastconv.num_threads(threads):
            layer = random_bn(np.random.default_rng(0), shape, dtype="float32", axis=axis)
            y = layer(x, training=True)
            gx = layer.backward(up)
            results.append([y, gx] + layer.trainable_gradients + layer.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    layer = random_bn(np.random.default_rng(0), shape, axis=axis)
    xd = x.astype(np.float64)
    y64 = layer(xd, training=True)
    gx64 = layer.backward(up.astype(np.float64))
    np.testing.assert_allclose(results[0][0], y64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[0][1], gx64, rtol=1e-4, atol=1e-5)


def test_strided_inputs_and_gradients(rng):
    """Views (a transposed or sliced array from the layer before) give the results of
    their contiguous copies."""
    x = rng.standard_normal((5, 4, 6, 7)).transpose(0, 2, 3, 1)[:, ::2]  # (5, 3, 7, 4)
    up = rng.standard_normal((5, 4, 3, 7)).transpose(0, 2, 3, 1)
    layer, layer2 = random_bn(rng, x.shape), random_bn(rng, x.shape)
    layer2.set_weights(layer.get_weights())
    y = layer.forward(x, True)
    gx = layer._backward(up, True)
    np.testing.assert_allclose(y, layer2.forward(np.ascontiguousarray(x), True),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, layer2._backward(np.ascontiguousarray(up), True),
                               rtol=1e-12, atol=1e-12)


def test_the_fold_applies_inside_a_functional_graph(rng):
    """A residual block: both conv + batch norm pairs fold in predict, and agree with
    the model without fusion."""
    import fastconv
    from fastconv.models import Model

    def block():
        inp = fastconv.Input((8, 8, 4))
        y = L.Conv2D(4, 3, padding="same", use_bias=False)(inp)
        y = L.Activation("relu")(L.BatchNormalization()(y))
        y = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(y))
        y = L.Activation("relu")(L.Add()([y, inp]))
        return Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(y)))
    model, plain = block(), block()
    for m in (model, plain):
        m.compile("sgd", "mse")
    randomize(model, rng)
    plain.set_weights(model.get_weights())
    plain._fusion = False
    steps = model._steps(fusion.INFERENCE, False)
    assert [s.pattern.name for s in steps if s.pattern] == ["conv_batch_norm"] * 2
    x = rng.standard_normal((5, 8, 8, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
