"""Argument checks shared by the layers (Keras's accepted values, clear errors)."""
import numbers

import numpy as np

__all__ = ["check_layer_data_format", "check_layer_padding", "check_positive_int"]

DEFAULT_DATA_FORMAT = "channels_last"


def check_layer_data_format(data_format):
    """None -> channels_last (Keras's default image_data_format)."""
    if data_format is None:
        return DEFAULT_DATA_FORMAT
    if isinstance(data_format, str) and data_format.lower() in ("channels_last",
                                                                "channels_first"):
        return data_format.lower()
    raise ValueError(f"data_format must be 'channels_last', 'channels_first' or None, "
                     f"got {data_format!r}")


def check_layer_padding(padding):
    """Keras layers accept 'valid' or 'same' (any case)."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")


def check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
