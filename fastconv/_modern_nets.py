"""ResNet for CIFAR-10 (He et al., 2016) and MobileNetV2 (Sandler et al., 2018) as
functional models (fastconv.applications re-exports them).

Both follow the Keras definitions layer for layer (names, order, BatchNormalization
settings), so the weights of the same network built in Keras load through
``set_weights`` and the files of the one load into the other.
"""
from .layers import (Add, BatchNormalization, Conv2D, Dense,
                     DepthwiseConv2D, GlobalAveragePooling2D, ReLU, ZeroPadding2D)
from .layers.base import check_shape
from .layers.common import check_layer_data_format, check_positive_int

__all__ = ["resnet", "resnet20", "mobilenet_v2"]


def _image_shape(input_shape, data_format, min_size=1):
    shape = check_shape(input_shape, "input_shape")
    if len(shape) != 3 or None in shape:
        raise ValueError(f"input_shape must be (height, width, channels) for "
                         f"channels_last or (channels, height, width) for "
                         f"channels_first, got {input_shape!r}")
    spatial = shape[:2] if data_format == "channels_last" else shape[1:]
    if min(spatial) < min_size:
        raise ValueError(f"input_shape must have height and width >= {min_size}, got "
                         f"{input_shape!r}")
    return shape


def _model(inputs, outputs, name):
    from .models import Model
    return Model(inputs, outputs, name=name)


def _input(shape):
    from . import Input
    return Input(shape)


# ------------------------------------------------------------------------ ResNet
def _conv_bn(x, filters, kernel_size, strides, name, data_format, axis, relu):
    x = Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
               kernel_initializer="he_normal", data_format=data_format,
               name=f"{name}_conv")(x)
    x = BatchNormalization(axis=axis, name=f"{name}_bn")(x)
    return ReLU(name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters, strides, name, data_format, axis):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut (identity, or a 1x1 projection
    with BatchNormalization where the shape changes), then ReLU."""
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, f"{name}_1", data_format, axis, relu=True)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", data_format, axis, relu=False)
    in_channels = x.shape[axis]
    if strides != 1 or in_channels != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_proj", data_format, axis,
                            relu=False)
    y = Add(name=f"{name}_add")([shortcut, y])
    return ReLU(name=f"{name}_out")(y)


def resnet(depth, input_shape=(32, 32, 3), num_classes=10, data_format=None,
           compile=True):
    """The CIFAR-10 ResNet of He et al. (2016), section 4.2, with ``depth = 6n + 2``
    layers: a 3x3 convolution with 16 filters, then three stages of n basic blocks with
    16, 32 and 64 filters (the first block of stages 2 and 3 has stride 2 and a 1x1
    projection shortcut with BatchNormalization), global average pooling and a softmax
    Dense layer.  Convolutions have no bias (BatchNormalization follows each) and He
    normal initialization.  ``depth=20``: 274,042 weights, 272,474 of them trainable
    (the rest are the moving statistics of BatchNormalization).

    Compiled (unless ``compile=False``) with SGD (momentum 0.9, learning rate 0.1),
    categorical cross-entropy (one-hot labels) and accuracy; ``fastconv train resnet20``
    adds the rest of the CIFAR recipe (augmentation, weight decay, schedule).
    """
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int 6n + 2 (20, 32, 44, 56, 110, ...), got "
                        f"{depth!r}")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), "
                         f"got {depth!r}")
    data_format = check_layer_data_format(data_format)
    if data_format == "channels_first" and tuple(input_shape) == (32, 32, 3):
        input_shape = (3, 32, 32)
    shape = _image_shape(input_shape, data_format)
    num_classes = check_positive_int(num_classes, "num_classes")
    axis = -1 if data_format == "channels_last" else 1
    n = (depth - 2) // 6

    inputs = _input(shape)
    x = _conv_bn(inputs, 16, 3, 1, "stem", data_format, axis, relu=True)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}",
                             data_format, axis)
    x = GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    outputs = Dense(num_classes, activation="softmax", kernel_initializer="he_normal",
                    name="predictions")(x)
    model = _model(inputs, outputs, f"resnet{depth}")
    if compile:
        from .optimizers import SGD
        model.compile(optimizer=SGD(learning_rate=0.1, momentum=0.9),
                      loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def resnet20(input_shape=(32, 32, 3), num_classes=10, data_format=None, compile=True):
    """ResNet-20 for CIFAR-10: ``resnet(20, ...)`` (3 stages of 3 basic blocks)."""
    return resnet(20, input_shape=input_shape, num_classes=num_classes,
                  data_format=data_format, compile=compile)


# ------------------------------------------------------------------------ MobileNetV2
def _make_divisible(v, divisor=8):
    """Keras's rounding of channel counts: the nearest multiple of divisor, never more
    than 10 % below v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _bn(name, axis):
    return BatchNormalization(axis=axis, epsilon=1e-3, momentum=0.999, name=name)


def _inverted_res_block(x, expansion, stride, alpha, filters, block_id, data_format,
                        axis):
    in_channels = x.shape[axis]
    pointwise_filters = _make_divisible(int(filters * alpha), 8)
    inputs = x
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = Conv2D(expansion * in_channels, 1, padding="same", use_bias=False,
                   data_format=data_format, name=f"{prefix}expand")(x)
        x = _bn(f"{prefix}expand_BN", axis)(x)
        x = ReLU(6.0, name=f"{prefix}expand_relu")(x)
    if stride == 2:
        # Keras's imagenet_utils.correct_pad for a 3x3 kernel
        spatial = x.shape[1:3] if data_format == "channels_last" else x.shape[2:4]
        adjust = (1 - spatial[0] % 2, 1 - spatial[1] % 2)
        x = ZeroPadding2D(((1 - adjust[0], 1), (1 - adjust[1], 1)),
                          data_format=data_format, name=f"{prefix}pad")(x)
    x = DepthwiseConv2D(3, strides=stride, use_bias=False,
                        padding="same" if stride == 1 else "valid",
                        data_format=data_format, name=f"{prefix}depthwise")(x)
    x = _bn(f"{prefix}depthwise_BN", axis)(x)
    x = ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = Conv2D(pointwise_filters, 1, padding="same", use_bias=False,
               data_format=data_format, name=f"{prefix}project")(x)
    x = _bn(f"{prefix}project_BN", axis)(x)
    if in_channels == pointwise_filters and stride == 1:
        return Add(name=f"{prefix}add")([inputs, x])
    return x


#: (expansion, filters, repeats, first stride) of MobileNetV2's bottleneck stages
_MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(input_shape=(224, 224, 3), alpha=1.0, classes=1000,
                 classifier_activation="softmax", data_format=None, compile=True):
    """MobileNetV2 (Sandler et al., 2018) as keras.applications.MobileNetV2 builds it
    (include_top=True, weights=None): the same layers, names, channel rounding and
    BatchNormalization settings (epsilon 1e-3, momentum 0.999), so Keras's weights load
    with ``set_weights``.  Any input of at least 32x32 works (32x32 for CIFAR-10).

    Compiled (unless ``compile=False``) with Adam, categorical cross-entropy and
    accuracy.
    """
    data_format = check_layer_data_format(data_format)
    shape = _image_shape(input_shape, data_format, min_size=32)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number (the width multiplier), got "
                         f"{alpha!r}")
    classes = check_positive_int(classes, "classes")
    axis = -1 if data_format == "channels_last" else 1

    inputs = _input(shape)
    x = Conv2D(_make_divisible(32 * alpha, 8), 3, strides=2, padding="same",
               use_bias=False, data_format=data_format, name="Conv1")(inputs)
    x = _bn("bn_Conv1", axis)(x)
    x = ReLU(6.0, name="Conv1_relu")(x)
    block_id = 0
    for expansion, filters, repeats, stride in _MOBILENET_V2_STAGES:
        for i in range(repeats):
            x = _inverted_res_block(x, expansion, stride if i == 0 else 1, alpha,
                                    filters, block_id, data_format, axis)
            block_id += 1
    last = _make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = Conv2D(last, 1, use_bias=False, data_format=data_format, name="Conv_1")(x)
    x = _bn("Conv_1_bn", axis)(x)
    x = ReLU(6.0, name="out_relu")(x)
    x = GlobalAveragePooling2D(data_format=data_format)(x)
    x = Dense(classes, activation=classifier_activation, name="predictions")(x)
    model = _model(inputs, x, f"mobilenetv2_{alpha:.2f}_{shape[0]}")
    if compile:
        model.compile(optimizer="adam", loss="categorical_crossentropy",
                      metrics=["accuracy"])
    return model
