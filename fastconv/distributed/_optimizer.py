"""DistributedOptimizer: an optimizer whose gradients are averaged over the ranks
before its update (Horovod's design).

During backward the model calls ``model._gradient_hooks`` with each layer once its
parameter gradients are final (fastconv/_runner.py).  The averager copies them into a
fusion buffer; when the buffer holds ``bucket_bytes`` or more it starts a non-blocking
MPI_Iallreduce (sum) on it and opens a new one, so that communication runs while
backward goes on through the earlier layers (each later hook also calls MPI_Testall to
let MPI progress the transfers).  ``apply`` starts the last bucket, waits for all of
them and divides each sum by the number of ranks; the wrapped optimizer then updates
with the averaged gradients.  Gradients that reach ``apply`` without having been seen
by a hook (a model not attached, penalized weights whose gradient is a new array) are
averaged there, in one blocking allreduce per bucket.

Summation order: each element is ``(sum over ranks of the rank's gradient, in the
order of MPI's reduction algorithm) / size``; with 2 ranks that is ``(g0 + g1) / 2``,
the same on both ranks (float addition commutes).  Each rank's gradient is the mean
over its own batch, so with equal shards the average of the rank means is the mean
over the global batch, up to float32 rounding.
"""
import copy
import types

import numpy as np

from ..optimizers import Optimizer
from . import _comm

__all__ = ["DistributedOptimizer", "DEFAULT_BUCKET_BYTES"]

#: The fusion buffer: a bucket is sent once it holds this many bytes of gradients.
DEFAULT_BUCKET_BYTES = 4 << 20


class _GradientAverager:
    """The buckets of one optimizer (see the module docstring)."""

    def __init__(self, bucket_bytes, overlap=True):
        self.bucket_bytes = bucket_bytes
        self.overlap = overlap
        self._reset()
        #: counters for tests and the benchmark: buckets started during backward,
        #: buckets averaged in apply, seconds spent in apply waiting for MPI
        self.stats = {"overlapped": 0, "at_apply": 0, "comm_seconds": 0.0}

    def _reset(self):
        self._open = []          # gradients of the bucket being filled
        self._open_bytes = 0
        self._inflight = []      # (request, buffer, gradients)
        self._seen = set()       # id of every gradient bucketed this step
        self._layers = set()     # id of every layer seen this step

    def attach(self, model):
        """Register the gradient-ready hook on ``model`` (once)."""
        hooks = getattr(model, "_gradient_hooks", None)
        if hooks is None:
            hooks = model._gradient_hooks = []
        if not any(getattr(h, "__self__", None) is self for h in hooks):
            hooks.append(self.layer_ready)

    def layer_ready(self, layer):
        """The hook: bucket ``layer``'s gradients, start the bucket when full."""
        if _comm.size() == 1 or not self.overlap or not layer.trainable_weights:
            return
        if id(layer) in self._layers:  # a step whose update never ran: drop it
            self._discard()
        self._layers.add(id(layer))
        for g in layer.trainable_gradients:
            if g is None or id(g) in self._seen:
                continue
            if self._open and g.dtype != self._open[0].dtype:
                self._start()
            self._open.append(g)
            self._seen.add(id(g))
            self._open_bytes += g.nbytes
        if self._open_bytes >= self.bucket_bytes:
            self._start()
            self.stats["overlapped"] += 1
        elif self._inflight:
            from mpi4py import MPI
            MPI.Request.Testall([r for r, _, _ in self._inflight])

    def _discard(self):
        """Complete and forget the buckets of an abandoned step (every rank
        abandons the same one, so the collectives still match)."""
        from mpi4py import MPI
        MPI.Request.Waitall([r for r, _, _ in self._inflight])
        self._reset()

    def _start(self):
        from mpi4py import MPI
        grads = self._open
        if not grads:
            return
        buf = np.concatenate([np.asarray(g).reshape(-1) for g in grads])
        req = _comm.comm().Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        self._inflight.append((req, buf, grads))
        self._open, self._open_bytes = [], 0

    def average(self, grads):
        """The averaged gradients for ``grads`` (a list, in the order given)."""
        if _comm.size() == 1:
            return grads
        import time

        from mpi4py import MPI
        if self._open:
            self._start()
            self.stats["at_apply"] += 1
        t0 = time.perf_counter()
        done = {}
        MPI.Request.Waitall([r for r, _, _ in self._inflight])
        for _, buf, bucket in self._inflight:
            np.divide(buf, buf.dtype.type(_comm.size()), out=buf)
            offset = 0
            for g in bucket:
                done[id(g)] = buf[offset:offset + g.size].reshape(g.shape)
                offset += g.size
        out = [done.get(id(g)) for g in grads]
        bucket, nbytes = [], 0
        for i, g in enumerate(grads):  # the rest: blocking, bucket by bucket
            if out[i] is not None:
                continue
            g = np.asarray(g)
            if bucket and (g.dtype != bucket[0][1].dtype or nbytes >= self.bucket_bytes):
                self._blocking(bucket, out)
                self.stats["at_apply"] += 1
                bucket, nbytes = [], 0
            bucket.append((i, g))
            nbytes += g.nbytes
        if bucket:
            self._blocking(bucket, out)
            self.stats["at_apply"] += 1
        self.stats["comm_seconds"] += time.perf_counter() - t0
        self._reset()
        return out

    @staticmethod
    def _blocking(bucket, out):
        from mpi4py import MPI
        buf = np.concatenate([g.reshape(-1) for _, g in bucket])
        _comm.comm().Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        np.divide(buf, buf.dtype.type(_comm.size()), out=buf)
        offset = 0
        for i, g in bucket:
            out[i] = buf[offset:offset + g.size].reshape(g.shape)
            offset += g.size


def _distributed_apply(self, grads, variables):
    """Average ``grads`` over the ranks, then the wrapped optimizer's update."""
    grads = self._averager.average(list(grads))
    type(self).apply(self, grads, variables)


def DistributedOptimizer(optimizer, bucket_bytes=DEFAULT_BUCKET_BYTES, overlap=True,
                         model=None):
    """A copy of ``optimizer`` (same class, configuration and state) whose ``apply``
    first averages the gradients over the ranks (see the module docstring).

    ``bucket_bytes``: the size of the fusion buffer; ``overlap``: start each bucket
    during backward (False: every gradient is averaged in ``apply``, blocking; the
    benchmark's baseline).  ``model``: attach the gradient-ready hook now; otherwise
    :class:`fastconv.distributed.BroadcastCallback` attaches it when fit starts.
    The copy saves and loads as the wrapped class (its configuration is unchanged).
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastconv.optimizers.Optimizer, got "
                        f"{optimizer!r}")
    if isinstance(bucket_bytes, bool) or not isinstance(bucket_bytes, int) \
            or bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be a positive int, got {bucket_bytes!r}")
    if hasattr(optimizer, "_averager"):
        raise ValueError(f"optimizer {optimizer.name!r} is already a "
                         f"DistributedOptimizer")
    opt = copy.copy(optimizer)
    opt._slots = copy.deepcopy(optimizer._slots)
    opt._averager = _GradientAverager(bucket_bytes, bool(overlap))
    opt.apply = types.MethodType(_distributed_apply, opt)
    if model is not None:
        opt._averager.attach(model)
    return opt


def is_distributed(optimizer):
    """Whether ``optimizer`` came from DistributedOptimizer."""
    return hasattr(optimizer, "_averager")
