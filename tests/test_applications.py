"""LeNet-5 and the CIFAR-10 network: architecture, parameter counts, compile defaults."""
import numpy as np
import pytest

import fastconv
from fastconv import applications, layers as L, optimizers


def test_lenet5_architecture():
    model = applications.lenet5()
    assert model.count_params() == 61706
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [L.Conv2D, L.AveragePooling2D, L.Conv2D, L.AveragePooling2D, L.Conv2D,
                     L.Flatten, L.Dense, L.Dense]
    assert [layer.activation for layer in model.layers if hasattr(layer, "units")
            or isinstance(layer, L.Conv2D)] == ["tanh"] * 4 + ["softmax"]
    assert model.output_shape == (None, 10)
    assert isinstance(model.optimizer, optimizers.Adam)
    assert model.loss.name == "categorical_crossentropy"


def test_cifar10_cnn_architecture_and_keras_example_compile():
    model = applications.cifar10_cnn()
    assert model.count_params() == 1250858
    shapes = [layer.output_shape for layer in model.layers]
    assert shapes[:4] == [(None, 32, 32, 32), (None, 30, 30, 32), (None, 15, 15, 32),
                          (None, 15, 15, 32)]
    assert shapes[8] == (None, 2304) and shapes[-1] == (None, 10)
    assert [layer.rate for layer in model.layers if isinstance(layer, L.Dropout)] == \
        [0.25, 0.25, 0.5]
    assert isinstance(model.optimizer, optimizers.RMSprop)
    assert model.optimizer.learning_rate == 1e-4


def test_other_shapes_and_classes():
    model = applications.lenet5(input_shape=(32, 32, 3), num_classes=5)
    assert model.output_shape == (None, 5) and model.layers[0].kernel.shape == (5, 5, 3, 6)
    # 28x28 MNIST digits must be padded to 32x32 first: the last conv does not fit
    with pytest.raises(ValueError, match="cannot be applied to input shape"):
        applications.lenet5(input_shape=(28, 28, 1))
    assert applications.cifar10_cnn(num_classes=100).output_shape == (None, 100)
    with pytest.raises(ValueError,
                       match=r"input_shape must be \(height, width, channels\)"):
        applications.lenet5(input_shape=(32, 32))
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        applications.cifar10_cnn(num_classes=0)


@pytest.mark.parametrize("build", [applications.lenet5, applications.cifar10_cnn])
def test_one_training_step_lowers_the_loss_on_its_batch(build):
    fastconv.set_seed(0)
    model = build()
    shape = model.input_shape[1:]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8,) + shape).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    model.compile(optimizers.SGD(0.05), "categorical_crossentropy", metrics=["accuracy"])
    before = model.evaluate(x, y, verbose=0)[0]
    for _ in range(3):
        model.train_on_batch(x, y)
    assert model.evaluate(x, y, verbose=0)[0] < before
    assert model.predict(x, verbose=0).sum(axis=1) == pytest.approx(np.ones(8), rel=1e-5)
