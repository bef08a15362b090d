"""fastconv's networks: LeNet-5 and the classic Keras CIFAR-10 CNN (below), ResNet for
CIFAR-10 and MobileNetV2 (functional models, fastconv/_modern_nets.py).

LeNet-5 and the CIFAR-10 CNN return Sequential models built for their input shape and compiled (the optimizer
and loss can be replaced by calling ``compile`` again).  They use channels_last inputs,
as Keras does: ``(batch, 32, 32, 1)`` for LeNet-5 and ``(batch, 32, 32, 3)`` for
CIFAR-10.
"""
from .layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from .layers.common import check_positive_int
from .layers.base import check_shape
from .models import Sequential
from .optimizers import RMSprop

from ._modern_nets import mobilenet_v2, resnet, resnet20

__all__ = ["lenet5", "cifar10_cnn", "resnet", "resnet20", "mobilenet_v2"]


def _input_shape(input_shape):
    shape = check_shape(input_shape, "input_shape")
    if len(shape) != 3 or None in shape:
        raise ValueError(f"input_shape must be (height, width, channels), got "
                         f"{input_shape!r}")
    return shape


def lenet5(input_shape=(32, 32, 1), num_classes=10, compile=True):
    """LeNet-5 (LeCun et al., 1998) with tanh units and average pooling.

    Conv2D(6, 5, tanh) -> AveragePooling2D(2) -> Conv2D(16, 5, tanh) ->
    AveragePooling2D(2) -> Conv2D(120, 5, tanh) -> Flatten -> Dense(84, tanh) ->
    Dense(num_classes, softmax): 61,706 parameters for 32x32x1 inputs and 10 classes.
    Compiled with Adam (Keras defaults), categorical cross-entropy (one-hot labels) and
    accuracy.
    """
    shape = _input_shape(input_shape)
    num_classes = check_positive_int(num_classes, "num_classes")
    model = Sequential([
        Conv2D(6, 5, activation="tanh", input_shape=shape),
        AveragePooling2D(2),
        Conv2D(16, 5, activation="tanh"),
        AveragePooling2D(2),
        Conv2D(120, 5, activation="tanh"),
        Flatten(),
        Dense(84, activation="tanh"),
        Dense(num_classes, activation="softmax"),
    ], name="lenet5")
    if compile:
        model.compile(optimizer="adam", loss="categorical_crossentropy",
                      metrics=["accuracy"])
    return model


def cifar10_cnn(input_shape=(32, 32, 3), num_classes=10, compile=True):
    """The CNN of the classic Keras CIFAR-10 example (1,250,858 parameters).

    [Conv2D(32, 3, same) relu, Conv2D(32, 3) relu, MaxPooling2D(2), Dropout(0.25)],
    the same block with 64 filters, Flatten, Dense(512) relu, Dropout(0.5),
    Dense(num_classes) softmax.  Compiled with RMSprop(learning_rate=1e-4) and
    categorical cross-entropy (one-hot labels) and accuracy, as in the example.
    """
    shape = _input_shape(input_shape)
    num_classes = check_positive_int(num_classes, "num_classes")
    model = Sequential([
        Conv2D(32, 3, padding="same", activation="relu", input_shape=shape),
        Conv2D(32, 3, activation="relu"),
        MaxPooling2D(2),
        Dropout(0.25),
        Conv2D(64, 3, padding="same", activation="relu"),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Dropout(0.25),
        Flatten(),
        Dense(512, activation="relu"),
        Dropout(0.5),
        Dense(num_classes, activation="softmax"),
    ], name="cifar10_cnn")
    if compile:
        model.compile(optimizer=RMSprop(learning_rate=1e-4),
                      loss="categorical_crossentropy", metrics=["accuracy"])
    return model
