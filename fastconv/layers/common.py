"""Argument checks shared by the layers (Keras's accepted values, clear errors), and
``config_value``: an argument as JSON for ``get_config``."""
import numbers

import numpy as np

__all__ = ["check_layer_data_format", "check_layer_padding", "check_positive_int",
           "is_number", "check_choice", "check_seed", "check_factor", "config_value"]

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


def is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_choice(value, choices, name):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def check_seed(seed):
    if seed is not None and (isinstance(seed, (bool, np.bool_))
                             or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
    return None if seed is None else int(seed)


def check_factor(factor, name, low, high, low_open=False):
    """Keras's factor argument: a number f (range [-|f|, |f|]) or a pair (lower,
    upper), every value in [low, high] (or (low, high] with low_open)."""
    def in_range(v):
        return is_number(v) and (low < v if low_open else low <= v) and v <= high

    bounds = f"{'(' if low_open else '['}{low}, {high}]"
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or not all(in_range(v) for v in factor):
            raise ValueError(f"{name} must be a number or a pair of numbers in "
                             f"{bounds}, got {factor!r}")
        lower, upper = sorted(float(v) for v in factor)
        return lower, upper
    if not in_range(factor):
        raise ValueError(f"{name} must be a number or a pair of numbers in {bounds}, "
                         f"got {factor!r}")
    return -abs(float(factor)), abs(float(factor))


def config_value(value):
    """A factor/scale argument as JSON (tuples and arrays as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [config_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
