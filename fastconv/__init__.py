"""fastconv: fast convolutional networks on a plain CPU, on NumPy arrays.

Functional ops (``conv2d``, ``conv2d_backward``, ...) take and return ndarrays with the
semantics of torch.nn.functional (channels_first) or Keras (channels_last).
"""
__version__ = "0.1.0"

import os as _os

# The kernels alternate short OpenMP regions (im2col, col2im, pooling) with matrix
# products on the BLAS's own threads.  With OpenMP's default busy-waiting, idle OpenMP
# threads spin on the cores the BLAS needs and on 2 cores the products run 2-4x slower
# (measured; README "Threads").  Sleeping idle threads cost a few microseconds per region
# instead.  Only a default: set OMP_WAIT_POLICY yourself to override.  It must be set
# before the OpenMP runtime loads, i.e. before the compiled kernels are imported below.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import _ext  # noqa: F401  (fails early, with build instructions)
from ._config import config, get_num_threads, num_threads, set_num_threads, show_config
from .conv import (conv2d, conv2d_backward, conv2d_grad_bias, conv2d_grad_input,
                   conv2d_grad_weight, conv2d_output_shape)
from .pooling import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d,
                      global_avg_pool2d_backward, max_pool2d, max_pool2d_backward,
                      pool2d_output_shape)
from . import activations  # noqa: F401  (fastconv.activations.relu, get, ...)
from . import datasets  # noqa: F401  (fastconv.datasets.load_fashion_mnist, ...)
from ._random import set_seed
from . import (initializers, layers, losses, optimizers, metrics,  # noqa: F401
               callbacks, models, applications)

__all__ = ["__version__", "show_config", "config", "get_num_threads", "set_num_threads",
           "num_threads",
           "conv2d", "conv2d_backward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "conv2d_output_shape",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "global_avg_pool2d", "global_avg_pool2d_backward", "pool2d_output_shape",
           "set_seed"]
