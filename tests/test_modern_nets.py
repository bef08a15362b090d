"""ResNet (CIFAR-10) and MobileNetV2 from fastconv.applications: structure, both data
formats, and parity with the same networks built in Keras (when keras is importable)."""
import numpy as np
import pytest

import fastconv
from fastconv import applications


def test_resnet20_structure():
    model = applications.resnet20(compile=False)
    assert model.count_params() == 274_042
    trainable = sum(w.size for w in model.trainable_weights)
    assert trainable == 272_474  # the moving statistics are not trained (1,568)
    assert model.output_shape == (None, 10)
    convs = [la for la in model.layers if isinstance(la, fastconv.layers.Conv2D)]
    # 1 stem + 18 in the blocks + 2 projections; 20 weighted layers counting the Dense
    assert len(convs) == 21
    adds = [la for la in model.layers if isinstance(la, fastconv.layers.Add)]
    assert len(adds) == 9


@pytest.mark.parametrize("depth", [8, 32])
def test_resnet_depths(depth):
    model = applications.resnet(depth, compile=False)
    n = (depth - 2) // 6
    adds = [la for la in model.layers if isinstance(la, fastconv.layers.Add)]
    assert len(adds) == 3 * n


@pytest.mark.parametrize("depth, exc", [(21, ValueError), (2, ValueError),
                                        (20.0, TypeError), (True, TypeError)])
def test_resnet_bad_depth(depth, exc):
    with pytest.raises(exc, match="depth"):
        applications.resnet(depth)


def test_resnet20_both_formats_agree():
    rng = np.random.default_rng(0)
    last = applications.resnet20(compile=False)
    first = applications.resnet20(data_format="channels_first", compile=False)
    # random BatchNormalization statistics so that inference is not the identity
    for layer in last.layers:
        if isinstance(layer, fastconv.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, .1,
                               beta.shape), rng.normal(0, .1, mean.shape),
                               rng.uniform(0.5, 1.5, var.shape)])
    first.set_weights(last.get_weights())  # kernels have Keras's layout in both formats
    x = rng.standard_normal((4, 32, 32, 3)).astype(np.float32)
    y_last = last.predict(x, verbose=0)
    y_first = first.predict(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), verbose=0)
    np.testing.assert_allclose(y_first, y_last, rtol=1e-4, atol=1e-6)


def test_resnet20_trains_on_a_batch():
    rng = np.random.default_rng(1)
    fastconv.set_seed(1)
    model = applications.resnet20()
    x = rng.standard_normal((16, 32, 32, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 16)]
    first = model.train_on_batch(x, y)
    first = first[0] if isinstance(first, (list, tuple)) else first
    for _ in range(8):
        last = model.train_on_batch(x, y)
    last = last[0] if isinstance(last, (list, tuple)) else last
    assert last < first


def test_mobilenet_v2_small_input():
    model = applications.mobilenet_v2((32, 32, 3), alpha=1.0, classes=10, compile=False)
    assert model.output_shape == (None, 10)
    x = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    p = model.predict(x, verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(16, 16, 3)), "input_shape"),
    (dict(alpha=0), "alpha"),
    (dict(classes=0), "classes"),
])
def test_mobilenet_v2_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        applications.mobilenet_v2(**kwargs)


# ------------------------------------------------------------------------ Keras parity
def _keras():
    keras = pytest.importorskip("keras")
    return keras


def _keras_resnet20(keras):
    L = keras.layers

    def conv_bn(x, filters, k, s, name, relu):
        x = L.Conv2D(filters, k, strides=s, padding="same", use_bias=False,
                     name=f"{name}_conv")(x)
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        return L.ReLU(name=f"{name}_relu")(x) if relu else x

    inputs = keras.Input((32, 32, 3))
    x = conv_bn(inputs, 16, 3, 1, "stem", True)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            s = 2 if stage > 0 and block == 0 else 1
            name = f"stage{stage + 1}_block{block + 1}"
            y = conv_bn(x, filters, 3, s, f"{name}_1", True)
            y = conv_bn(y, filters, 3, 1, f"{name}_2", False)
            shortcut = x
            if s != 1 or x.shape[-1] != filters:
                shortcut = conv_bn(x, filters, 1, s, f"{name}_proj", False)
            x = L.ReLU(name=f"{name}_out")(L.Add(name=f"{name}_add")([shortcut, y]))
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = L.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def _pair(name):
    keras = _keras()
    keras.utils.set_random_seed(3)
    if name == "resnet20":
        k_model = _keras_resnet20(keras)
        f_model = applications.resnet20(compile=False)
    else:
        k_model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=1.0,
                                                 weights=None, classes=10)
        f_model = applications.mobilenet_v2((32, 32, 3), alpha=1.0, classes=10,
                                            compile=False)
    rng = np.random.default_rng(4)
    weights = []
    for w in k_model.get_weights():  # random moving statistics too
        weights.append(w if w.ndim > 1 else
                       rng.uniform(0.5, 1.5, w.shape).astype(np.float32))
    k_model.set_weights(weights)
    f_model.set_weights(weights)
    return keras, k_model, f_model


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_keras_predictions(name):
    keras, k_model, f_model = _pair(name)
    x = np.random.default_rng(5).standard_normal((8, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(k_model.predict(x, verbose=0))
    np.testing.assert_allclose(f_model.predict(x, verbose=0), expected, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam"])
def test_keras_training_steps(name, optimizer):
    """Three steps give Keras's weights and moving statistics, the updates compared in
    norm array by array.  Batch 32: at batch 16 MobileNetV2's last BatchNormalization
    layers normalize 16 values per channel and float32 gradients (Keras's and
    fastconv's alike) are ~1 % from the float64 ones.  Adam and RMSprop use epsilon
    1e-3 for both: weights whose exact gradient is 0 (a BatchNormalization beta read
    by another BatchNormalization) get rounding noise as gradient, which epsilon 1e-7
    turns into steps of random sign.  Small learning rates: with larger steps the
    150-layer network is chaotic in float32 (ReLU6 kinks) and the two runs drift apart
    by more than their first step's 1e-4."""
    keras, k_model, f_model = _pair(name)
    k_opt = {"sgd": keras.optimizers.SGD(1e-3, momentum=0.9),
             "rmsprop": keras.optimizers.RMSprop(1e-4, epsilon=1e-3),
             "adam": keras.optimizers.Adam(1e-4, epsilon=1e-3)}[optimizer]
    f_opt = {"sgd": fastconv.optimizers.SGD(1e-3, momentum=0.9),
             "rmsprop": fastconv.optimizers.RMSprop(1e-4, epsilon=1e-3),
             "adam": fastconv.optimizers.Adam(1e-4, epsilon=1e-3)}[optimizer]
    k_model.compile(optimizer=k_opt, loss="categorical_crossentropy")
    f_model.compile(optimizer=f_opt, loss="categorical_crossentropy")
    before = k_model.get_weights()
    rng = np.random.default_rng(6)
    for _ in range(3):
        x = rng.standard_normal((32, 32, 32, 3)).astype(np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)]
        k_model.train_on_batch(x, y)
        f_model.train_on_batch(x, y)
    names = [w.path for w in k_model.weights]
    worst = []
    for wname, w0, kw, fw in zip(names, before, k_model.get_weights(),
                                 f_model.get_weights()):
        dk, df = kw - w0, fw - w0
        norm = float(np.linalg.norm(dk))
        if norm > 1e-6 * dk.size ** 0.5:
            worst.append((float(np.linalg.norm(df - dk)) / norm, wname))
    worst.sort(reverse=True)
    assert worst[0][0] < 1e-2, worst[:8]
