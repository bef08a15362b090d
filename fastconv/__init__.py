"""fastconv: fast convolutional networks on a plain CPU, on NumPy arrays.

Functional ops (``conv2d``, ``conv2d_backward``, ...) take and return ndarrays with the
semantics of torch.nn.functional (channels_first) or Keras (channels_last).
"""
__version__ = "0.1.0"

import os as _os

# How long idle OpenMP threads spin before they sleep.  The kernels alternate OpenMP
# regions, a few to a few hundred microseconds apart, with matrix products on the
# BLAS's own threads: sleeping at once makes every region pay a futex wake-up, spinning
# libgomp's default 300,000 times keeps an idle thread on the core a following BLAS
# product needs; 30,000 spins cover the gaps between a network's layers and end before
# such a product gets far (docs/design/threads.md).  Only a default: with
# OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment nothing is changed.  GNU libgomp
# reads it once, as it loads (the compiled kernels' import below, unless another module
# loaded it first); it is taken out of the environment again after that, so child
# processes and other libraries see the user's environment.
_SPIN_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_SPIN_DEFAULT = not any(v in _os.environ for v in _SPIN_VARIABLES)
_OMP_SPIN = ("GOMP_SPINCOUNT=30000 (fastconv's default)" if _SPIN_DEFAULT else
             ", ".join(f"{v}={_os.environ[v]}" for v in _SPIN_VARIABLES if v in _os.environ))
if _SPIN_DEFAULT:
    _os.environ["GOMP_SPINCOUNT"] = "30000"
try:
    from . import _ext  # noqa: F401  (fails early, with build instructions)
finally:
    if _SPIN_DEFAULT:
        del _os.environ["GOMP_SPINCOUNT"]
from ._config import config, get_num_threads, num_threads, set_num_threads, show_config
from .conv import (conv2d, conv2d_backward, conv2d_grad_bias, conv2d_grad_input,
                   conv2d_grad_weight, conv2d_output_shape, explain_conv,
                   force_conv_algorithm)
from .ops.conv import conv_algorithms
from .conv_transpose import (conv_transpose2d, conv_transpose2d_backward,
                             conv_transpose2d_grad_bias, conv_transpose2d_grad_input,
                             conv_transpose2d_grad_weight, conv_transpose2d_output_shape)
from .pooling import (avg_pool2d, avg_pool2d_backward, global_avg_pool2d,
                      global_avg_pool2d_backward, max_pool2d, max_pool2d_backward,
                      pool2d_output_shape)
from .pooling import (global_max_pool2d, global_max_pool2d_backward, soft_pool2d,
                      soft_pool2d_backward)
from . import activations  # noqa: F401  (fastconv.activations.relu, get, ...)
from . import datasets  # noqa: F401  (fastconv.datasets.load_fashion_mnist, ...)
from ._random import set_seed
from .layers import Input
from .functional import Model
from . import (initializers, layers, losses, optimizers, metrics,  # noqa: F401
               callbacks, models, applications, schedules, regularizers, constraints,
               augmentation, tuner)

__all__ = ["__version__", "show_config", "config", "get_num_threads", "set_num_threads",
           "num_threads",
           "conv2d", "conv2d_backward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "conv2d_output_shape", "explain_conv",
           "force_conv_algorithm", "conv_algorithms",
           "conv_transpose2d", "conv_transpose2d_backward", "conv_transpose2d_grad_input",
           "conv_transpose2d_grad_weight", "conv_transpose2d_grad_bias",
           "conv_transpose2d_output_shape",
           "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "global_avg_pool2d", "global_avg_pool2d_backward", "pool2d_output_shape",
           "global_max_pool2d", "global_max_pool2d_backward", "soft_pool2d",
           "soft_pool2d_backward", "set_seed", "Input", "Model"]
