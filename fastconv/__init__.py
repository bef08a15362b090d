"""fastconv: fast convolutional networks on a plain CPU, on NumPy arrays.

Functional ops (``conv2d``, ``conv2d_backward``, ...) take and return ndarrays with the
semantics of torch.nn.functional (channels_first) or Keras (channels_last).
"""
__version__ = "0.1.0"

from . import _ext  # noqa: F401  (fails early, with build instructions)
from ._config import config, get_num_threads, set_num_threads, show_config
from .conv import (conv2d, conv2d_backward, conv2d_grad_bias, conv2d_grad_input,
                   conv2d_grad_weight, conv2d_output_shape)
from .pooling import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d,
                      global_avg_pool2d_backward, max_pool2d, max_pool2d_backward,
                      pool2d_output_shape)
from . import activations  # noqa: F401  (fastconv.activations.relu, get, ...)
from . import datasets  # noqa: F401  (fastconv.datasets.load_fashion_mnist, ...)

__all__ = ["__version__", "show_config", "config", "get_num_threads", "set_num_threads",
           "conv2d", "conv2d_backward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "conv2d_output_shape",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "global_avg_pool2d", "global_avg_pool2d_backward", "pool2d_output_shape"]
