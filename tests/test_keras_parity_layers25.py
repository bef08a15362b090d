"""Parity with Keras 3 for BatchNormalization, DepthwiseConv2D, SeparableConv2D,
Conv2DTranspose and grouped Conv2D: Keras weights in through set_weights give Keras's
outputs (both data formats, several strides / paddings / dilations), and three training
steps of a model with a BatchNormalization give Keras's weights and moving statistics.

Skipped when keras is not importable; run it in the TensorFlow environment:

    KERAS_BACKEND=tensorflow PYTHONPATH=. /tmp/venv-tf/bin/python -m pytest \
        tests/test_keras_parity_layers25.py
"""
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import fastconv  # noqa: E402
from fastconv import layers as fl  # noqa: E402
from fastconv.models import Sequential  # noqa: E402

KL = keras.layers
RNG = np.random.default_rng(25)


def keras_may_refuse(test):
    """test, skipped where TensorFlow's CPU kernels refuse the case on this machine (its
    builds without oneDNN run convolution gradients in NHWC only and undilated only,
    depthwise strides equal only): the oracle cannot run, so nothing is compared."""
    import functools

    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except Exception as exc:   # (TensorFlow's InvalidArgumentError and kin)
            text = str(exc)
            refusals = ("only supports NHWC", "only supports equal length strides",
                        "do not yet support dilation rates")
            if type(exc).__module__.startswith("tensorflow") and any(
                    r in text for r in refusals):
                pytest.skip("TensorFlow's CPU kernels refuse this case here: " +
                            next(line for line in text.splitlines() if "support" in line
                                 ).strip()[:200])
            raise
    return run


def sample(shape, fmt):
    """A batch of 3 in fmt from a channels_last sample shape."""
    x = RNG.standard_normal((3,) + shape).astype(np.float32)
    return x if fmt == "channels_last" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_last(y):
    return y.transpose(0, 2, 3, 1)


def random_weights(layer):
    """Non-trivial weights (random biases too) for a built Keras layer."""
    layer.set_weights([RNG.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in layer.get_weights()])


def check_layer(make_keras, make_fast, shape, fmt):
    """Keras's layer in channels_last is the oracle of both formats (the channels_first
    input is the channels_last one transposed); in channels_first, Keras's own
    channels_first layer is compared too where it agrees with its channels_last one
    (it does not for a DepthwiseConv2D or SeparableConv2D with strides and a bias on
    TensorFlow: Keras adds that bias wrongly)."""
    x_last = sample(shape, "channels_last")
    k_last = make_keras("channels_last")
    k_last.build(x_last.shape)
    random_weights(k_last)
    expected = np.asarray(k_last(x_last))
    f = make_fast(fmt)
    x = x_last if fmt == "channels_last" else np.ascontiguousarray(
        x_last.transpose(0, 3, 1, 2))
    f.build(x.shape)
    f.set_weights(k_last.get_weights())
    got = f(x)
    assert got.dtype == np.float32
    assert f.compute_output_shape((None,) + x.shape[1:]) == (None,) + got.shape[1:]
    if fmt == "channels_first":
        k_first = make_keras(fmt)
        k_first.build(x.shape)
        k_first.set_weights(k_last.get_weights())
        kf = np.asarray(k_first(x))
        if np.allclose(to_last(kf), expected, rtol=1e-5, atol=1e-5):
            np.testing.assert_allclose(got, kf, rtol=1e-5, atol=1e-5)
        got = to_last(got)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(f.get_weights(), k_last.get_weights()):
        assert a.shape == b.shape


FORMATS = ("channels_last", "channels_first")
CONV_ARGS = [dict(), dict(strides=2, padding="same"), dict(strides=(2, 1)),
             dict(dilation_rate=2, padding="same"), dict(dilation_rate=(1, 2)),
             dict(strides=(1, 3), padding="same")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kw", CONV_ARGS)
@pytest.mark.parametrize("dm", [1, 2])
@keras_may_refuse
def test_depthwise_conv2d_matches_keras(fmt, kw, dm):
    check_layer(lambda f: KL.DepthwiseConv2D((3, 2), depth_multiplier=dm, data_format=f,
                                             **kw),
                lambda f: fl.DepthwiseConv2D((3, 2), depth_multiplier=dm, data_format=f,
                                             **kw),
                (9, 8, 3), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kw", CONV_ARGS)
@keras_may_refuse
def test_separable_conv2d_matches_keras(fmt, kw):
    check_layer(lambda f: KL.SeparableConv2D(5, (2, 3), depth_multiplier=2,
                                             activation="relu", data_format=f, **kw),
                lambda f: fl.SeparableConv2D(5, (2, 3), depth_multiplier=2,
                                             activation="relu", data_format=f, **kw),
                (9, 8, 3), fmt)


TRANSPOSE_ARGS = [dict(), dict(strides=2, padding="same"), dict(strides=(2, 3)),
                  dict(strides=2, output_padding=1), dict(strides=(3, 2), padding="same",
                                                          output_padding=(2, 1)),
                  dict(dilation_rate=2, padding="same"), dict(dilation_rate=(2, 1)),
                  dict(strides=3, padding="same")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kw", TRANSPOSE_ARGS)
@keras_may_refuse
def test_conv2d_transpose_matches_keras(fmt, kw):
    check_layer(lambda f: KL.Conv2DTranspose(4, (3, 2), data_format=f, **kw),
                lambda f: fl.Conv2DTranspose(4, (3, 2), data_format=f, **kw),
                (5, 6, 3), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kw", CONV_ARGS[:4])
def test_grouped_conv2d_matches_keras(fmt, kw):
    """Conv2D(groups=3): Keras's grouped kernel (kh, kw, C_in / groups, filters)."""
    check_layer(lambda f: KL.Conv2D(6, (3, 2), groups=3, data_format=f, **kw),
                lambda f: fl.Conv2D(6, (3, 2), groups=3, data_format=f, **kw),
                (9, 8, 6), fmt)


@pytest.mark.parametrize("axis,fmt", [(-1, "channels_last"), (1, "channels_first"),
                                      (2, "channels_last")])
@pytest.mark.parametrize("training", [False, True])
def test_batch_normalization_matches_keras(axis, fmt, training):
    x = sample((5, 4, 3), fmt) * 3 + 1
    k = KL.BatchNormalization(axis=axis, momentum=0.8, epsilon=1e-2)
    k.build(x.shape)
    c = x.shape[axis]
    k.set_weights([RNG.standard_normal(c).astype(np.float32),
                   RNG.standard_normal(c).astype(np.float32),
                   RNG.standard_normal(c).astype(np.float32),
                   RNG.uniform(0.5, 2, c).astype(np.float32)])
    f = fl.BatchNormalization(axis=axis, momentum=0.8, epsilon=1e-2)
    f.build(x.shape)
    f.set_weights(k.get_weights())
    expected = np.asarray(k(x, training=training))
    got = f(x, training=training)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(f.get_weights(), k.get_weights()):  # moving statistics updated
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert len(f.trainable_weights) == len(k.trainable_weights) == 2
    assert len(f.non_trainable_weights) == len(k.non_trainable_weights) == 2


def bn_pair(fmt):
    shape = (8, 7, 3)
    if fmt == "channels_first":
        shape = (3, 8, 7)
    axis = -1 if fmt == "channels_last" else 1

    def layers(mod):
        # (no conv bias: the normalization cancels it, so its gradient is rounding
        # noise, which Adam's first steps scale up to a full step)
        return [mod.Conv2D(4, 3, strides=(1, 2), use_bias=False, data_format=fmt),
                mod.BatchNormalization(axis=axis, momentum=0.9),
                mod.Activation("relu"), mod.Flatten(), mod.Dense(5, activation="softmax")]

    k = keras.Sequential([keras.Input(shape)] + layers(KL))
    f = Sequential([fl.Input(shape)] + layers(fl))
    return k, f, shape


def optimizers(name):
    if name == "sgd":
        return (keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
                fastconv.optimizers.SGD(0.1, momentum=0.9))
    if name == "rmsprop":
        return keras.optimizers.RMSprop(), fastconv.optimizers.RMSprop()
    return keras.optimizers.Adam(), fastconv.optimizers.Adam()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("opt", ["sgd", "rmsprop", "adam"])
@keras_may_refuse
def test_batch_norm_training_steps_match_keras(fmt, opt):
    k, f, shape = bn_pair(fmt)
    kopt, fopt = optimizers(opt)
    k.compile(optimizer=kopt, loss="categorical_crossentropy", jit_compile=False)
    f.compile(optimizer=fopt, loss="categorical_crossentropy")
    weights = k.get_weights()
    weights[1] = RNG.uniform(0.5, 1.5, weights[1].shape).astype(np.float32)  # gamma
    weights[2] = RNG.standard_normal(weights[2].shape).astype(np.float32) * 0.3  # beta
    k.set_weights(weights)
    f.set_weights(weights)
    for step in range(3):
        rng = np.random.default_rng(step)
        x = (rng.standard_normal((16,) + shape) * 2 + 0.5).astype(np.float32)
        y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 16)]
        kloss = float(k.train_on_batch(x, y))
        floss = f.train_on_batch(x, y)
        assert floss == pytest.approx(kloss, rel=1e-5, abs=1e-6), f"step {step}"
        for i, (a, b) in enumerate(zip(f.get_weights(), k.get_weights())):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                       err_msg=f"weight {i} after step {step}")
    x = RNG.standard_normal((6,) + shape).astype(np.float32)
    np.testing.assert_allclose(f.predict(x, verbose=0), k.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_keras_configs_name_the_same_arguments():
    """Every argument our get_config writes is one Keras's layer takes (same names),
    for each new layer."""
    pairs = [(fl.BatchNormalization(), KL.BatchNormalization()),
             (fl.DepthwiseConv2D(3), KL.DepthwiseConv2D(3)),
             (fl.SeparableConv2D(2, 3), KL.SeparableConv2D(2, 3)),
             (fl.Conv2DTranspose(2, 3), KL.Conv2DTranspose(2, 3))]
    for ours, theirs in pairs:
        kcfg = theirs.get_config()
        extra = set(ours.get_config()) - set(kcfg) - {"input_shape"}
        assert not extra, (type(ours).__name__, extra)
        for key in ("momentum", "epsilon", "axis", "depth_multiplier", "padding",
                    "output_padding", "center", "scale"):
            if key in kcfg:
                assert ours.get_config()[key] == kcfg[key], (type(ours).__name__, key)


def residual_pair():
    """A ResNet basic block (conv, batch norm, relu, conv, batch norm, add, relu) with a
    strided 1x1 projection, built in both as functional models."""
    def build(mod, inp_fn, model_fn):
        inp = inp_fn((8, 8, 3))
        y = mod.Conv2D(4, 3, strides=2, padding="same", use_bias=False)(inp)
        y = mod.BatchNormalization(momentum=0.9)(y)
        y = mod.Activation("relu")(y)
        y = mod.Conv2D(4, 3, padding="same", use_bias=False)(y)
        y = mod.BatchNormalization(momentum=0.9)(y)
        short = mod.Conv2D(4, 1, strides=2, use_bias=False)(inp)
        short = mod.BatchNormalization(momentum=0.9)(short)
        y = mod.Activation("relu")(mod.Add()([y, short]))
        y = mod.GlobalAveragePooling2D()(y)
        return model_fn(inp, mod.Dense(3, activation="softmax")(y))
    from fastconv.models import Model
    return (build(KL, keras.Input, keras.Model), build(fl, fastconv.Input, Model))


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_residual_block_with_batch_norm_trains_as_keras(opt):
    k, f = residual_pair()
    kopt, fopt = optimizers(opt)
    k.compile(optimizer=kopt, loss="categorical_crossentropy", jit_compile=False)
    f.compile(optimizer=fopt, loss="categorical_crossentropy")
    weights = k.get_weights()
    k.set_weights(weights)
    f.set_weights(weights)
    assert [w.shape for w in f.get_weights()] == [w.shape for w in weights]
    for step in range(3):
        rng = np.random.default_rng(10 + step)
        x = (rng.standard_normal((12, 8, 8, 3)) + 0.3).astype(np.float32)
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)]
        assert f.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)),
                                                       rel=1e-5, abs=1e-6)
        for i, (a, b) in enumerate(zip(f.get_weights(), k.get_weights())):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                       err_msg=f"weight {i} after step {step}")
    x = RNG.standard_normal((5, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(f.predict(x, verbose=0), k.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def variants_pair(fmt):
    shape = (9, 8, 3) if fmt == "channels_last" else (3, 9, 8)
    axis = -1 if fmt == "channels_last" else 1
    # (Keras on TensorFlow adds the bias of a strided channels_first depthwise or
    # separable convolution wrongly: see check_layer)
    strides = 2 if fmt == "channels_last" else 1

    def layers(mod):
        return [mod.DepthwiseConv2D(3, depth_multiplier=2, padding="same",
                                    data_format=fmt, activation="relu"),
                mod.BatchNormalization(axis=axis),
                mod.SeparableConv2D(4, (3, 2), strides=strides, data_format=fmt,
                                    activation="tanh"),
                mod.Conv2DTranspose(4, 3, strides=2, padding="same", data_format=fmt),
                mod.Conv2D(4, 3, groups=2, data_format=fmt, activation="relu"),
                mod.Flatten(), mod.Dense(4, activation="softmax")]

    k = keras.Sequential([keras.Input(shape)] + layers(KL))
    f = Sequential([fl.Input(shape)] + layers(fl))
    return k, f, shape


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@keras_may_refuse
def test_new_layers_train_as_keras(fmt, opt):
    """Three training steps through every new layer give Keras's weights: the
    gradients of each follow Keras's conventions and weight layouts."""
    k, f, shape = variants_pair(fmt)
    kopt, fopt = optimizers(opt)
    k.compile(optimizer=kopt, loss="categorical_crossentropy", jit_compile=False)
    f.compile(optimizer=fopt, loss="categorical_crossentropy")
    weights = [w if w.ndim > 1 else RNG.uniform(0.5, 1.5, w.shape).astype(np.float32)
               for w in k.get_weights()]  # (non-zero biases; variances positive)
    k.set_weights(weights)
    f.set_weights(weights)
    for step in range(3):
        rng = np.random.default_rng(20 + step)
        x = rng.standard_normal((10,) + shape).astype(np.float32)
        y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 10)]
        assert f.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)),
                                                       rel=1e-5, abs=1e-6)
        for i, (a, b) in enumerate(zip(f.get_weights(), k.get_weights())):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                       err_msg=f"weight {i} after step {step}")


def test_frozen_batch_norm_trains_as_keras():
    """trainable=False: the layer normalizes with its moving statistics in training
    too (Keras's rule), its backward is the affine map's, nothing of it updates."""
    k, f, shape = bn_pair("channels_last")
    k.layers[1].trainable = False
    f.layers[1].trainable = False
    kopt, fopt = optimizers("sgd")
    k.compile(optimizer=kopt, loss="categorical_crossentropy", jit_compile=False)
    f.compile(optimizer=fopt, loss="categorical_crossentropy")
    weights = k.get_weights()
    weights[1:5] = [RNG.uniform(0.5, 1.5, 4).astype(np.float32),
                    RNG.standard_normal(4).astype(np.float32),
                    RNG.standard_normal(4).astype(np.float32),
                    RNG.uniform(0.5, 1.5, 4).astype(np.float32)]
    k.set_weights(weights)
    f.set_weights(weights)
    assert len(f.trainable_weights) == len(k.trainable_weights) == 3
    for step in range(3):
        rng = np.random.default_rng(30 + step)
        x = rng.standard_normal((8,) + shape).astype(np.float32)
        y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 8)]
        assert f.train_on_batch(x, y) == pytest.approx(float(k.train_on_batch(x, y)),
                                                       rel=1e-5, abs=1e-6)
        for i, (a, b) in enumerate(zip(f.get_weights(), k.get_weights())):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5,
                                       err_msg=f"weight {i} after step {step}")
    for a, b in zip(f.get_weights()[1:5], weights[1:5]):
        np.testing.assert_array_equal(a, b)
