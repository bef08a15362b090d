"""Keras-style layers on NumPy arrays (channels_last by default, as Keras).

Each layer runs forward with ``layer(x, training=False)``, returns the input gradient
from ``layer.backward(grad_y)`` and keeps its parameter gradients in
``layer.gradients``; weights have Keras's shapes and order (``get_weights`` /
``set_weights``), so weights trained in Keras load unchanged.
"""
from .base import FLOATX, Input, InputLayer, Layer, clear_session
from .conv import Conv2D
from .conv_variants import Conv2DTranspose, DepthwiseConv2D, SeparableConv2D
from .core import Activation, Dense, Dropout, Flatten
from .pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from .pooling import GlobalMaxPooling2D, SoftPooling2D
from .reshaping import Cropping2D, UpSampling2D, ZeroPadding2D
from .activation_layers import ELU, LeakyReLU, ReLU
from .image_augmentation import (RandomCrop, RandomFlip, RandomRotation,
                                 RandomTranslation, RandomZoom)
from .normalization import BatchNormalization
from .preprocessing import Normalization, Rescaling
from .merge import (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract,
                    add, average, concatenate, maximum, minimum, multiply, subtract)

# Keras's aliases.
Convolution2D = Conv2D
Convolution2DTranspose = Conv2DTranspose
SeparableConvolution2D = SeparableConv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D

#: The only classes a saved model may name (see fastconv.models.load_model).
LAYER_CLASSES = {cls.__name__: cls for cls in (
    InputLayer, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten,
    Dense, Dropout, Activation, Rescaling, Normalization, RandomFlip, RandomTranslation,
    RandomZoom, RandomRotation, RandomCrop,
    BatchNormalization, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose)}
LAYER_CLASSES.update({cls.__name__: cls for cls in (
    GlobalMaxPooling2D, SoftPooling2D, ZeroPadding2D, Cropping2D, UpSampling2D, ReLU,
    LeakyReLU, ELU)})
LAYER_CLASSES.update({cls.__name__: cls for cls in (
    Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate)})

__all__ = ["Layer", "InputLayer", "Input", "Conv2D", "Convolution2D", "MaxPooling2D",
           "MaxPool2D", "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D",
           "GlobalAvgPool2D", "Flatten", "Dense", "Dropout", "Activation",
           "Rescaling", "Normalization", "RandomFlip", "RandomTranslation",
           "RandomZoom", "RandomRotation", "RandomCrop", "LAYER_CLASSES", "FLOATX",
           "clear_session",
           "BatchNormalization", "DepthwiseConv2D", "SeparableConv2D",
           "SeparableConvolution2D", "Conv2DTranspose", "Convolution2DTranspose",
           "GlobalMaxPooling2D", "GlobalMaxPool2D", "SoftPooling2D",
           "ZeroPadding2D", "Cropping2D", "UpSampling2D", "ReLU", "LeakyReLU", "ELU",
           "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
           "Concatenate", "add", "subtract", "multiply", "average", "maximum",
           "minimum", "concatenate"]
