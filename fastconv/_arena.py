"""Output arrays reused from one model pass to the next.

A model's pass (an inference, a training step) allocates the same arrays every time
(each layer's output, of shapes fixed by the batch), many of them megabytes.  Freed at
the end of a pass, they go back to the operating system, and the next pass pays a page
fault for every 4 KB it writes again (the cost is in docs/design/algorithms.md,
"Measurements").  Inside ``with arena:`` the kernels' output arrays come from ``arena``:
arrays handed out by the previous pass, matched by shape and dtype, or new ones; when
the pass ends, everything handed out becomes available to the next pass.

What takes its arrays here: the convolution forward kernels (fastconv/ops/conv/run.py,
which input gradients also run on), the pooling forward and backward passes, the
activations' gradients, BatchNormalization's output and input gradient, Add's compiled
sum and the backward's sums of gradients -- outputs a model pass consumes or keeps only
as the layers' caches.  Parameter gradients, which users may keep
(``layer.gradients``), never do.
The caller guarantees that nothing handed out during a pass is referenced once the next
pass starts (models.Sequential: predict copies the output, evaluate reduces it, a
training step's caches are replaced by the next step before they are read).  The active
arena is per thread, and a model keeps one arena per thread (models.Sequential._pass_arena)
so that passes running at once in several threads never share one.

The bound: an arena keeps only the arrays its last pass handed out.  Arrays of earlier
passes that the last pass did not take again (another batch size, a training step after
an inference) are released when it ends, so what an arena holds between passes is at most
one pass's outputs, whatever shapes it has seen (a server answering requests of any batch
size does not accumulate buffers).  A pass of a new shape pays the page faults once.

Within a pass, an array handed out earlier that nothing refers to any more (its
CPython reference count is the arena's own: no variable, cache or view of it is left,
as when a training step drops each layer's caches as its backward runs) is handed out
again for the same shape and dtype before a new one is made.  So an arena holds about
the arrays a pass has alive at once, not every array the pass ever wrote: without it,
the gradients of a training step's backward stayed allocated beside the activations
(ResNet-20 at batch 128: 528 MiB at peak instead of 328).
"""
import sys
import threading

import numpy as np

_local = threading.local()


def empty(shape, dtype):
    """np.empty(shape, dtype), from the active arena of this thread if there is one."""
    arena = getattr(_local, "arena", None)
    if arena is None:
        return np.empty(shape, dtype)
    return arena.take(shape, dtype)


def _refs(items, i):
    """The reference count of items[i], as take() sees it."""
    return sys.getrefcount(items[i])


#: what _refs counts for an array that only its list refers to (measured, so that it
#: holds for the interpreter at hand)
_ONLY_THE_LIST = _refs([np.empty(1)], 0)


class Arena:
    """Arrays of the last pass, by (shape, dtype); a context manager for one pass."""

    def __init__(self):
        self._free = {}
        self._used = {}   # this pass's arrays, by key

    def take(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype))
        stack = self._free.get(key)
        used = self._used.setdefault(key, [])
        if stack:
            arr = stack.pop()
        else:
            for i in range(len(used)):   # one of this pass's that nothing refers to
                if _refs(used, i) <= _ONLY_THE_LIST:
                    return used[i]
            arr = np.empty(key[0], key[1])
        used.append(arr)
        return arr

    def __enter__(self):
        if getattr(_local, "arena", None) is not None:
            raise RuntimeError("an arena is already active in this thread")
        _local.arena = self
        return self

    def __exit__(self, *exc):
        _local.arena = None
        self._free = self._used  # (only the last pass's arrays: the bound above)
        self._used = {}
        return False

    def nbytes(self):
        """Bytes held for the next pass."""
        return sum(a.nbytes for stack in self._free.values() for a in stack)
