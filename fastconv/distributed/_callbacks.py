"""The callbacks of a data-parallel fit and the sharded data set.

- BroadcastCallback: at train begin, every rank takes rank 0's weights, optimizer
  state (iterations, slots, learning rate), starting epoch and the model's random
  generator (fit's shuffling of the batch order) (a backup restored on
  rank 0 by a BackupAndRestore placed before it resumes every rank); it also attaches
  the DistributedOptimizer's gradient-ready hook to the model.
- MetricAverageCallback: the epoch logs (loss, metrics) averaged over the ranks, so
  that what rank 0 prints and the callbacks after it read are the job's numbers.
- ShardedSequence: each rank's slice of (x, y), reshuffled at every epoch from a seed
  all ranks share; rank r's batch i is the r-th part of global batch i, so that N ranks
  of batch B see the batches of one process of batch N * B.
"""
import numbers

import numpy as np

from ..callbacks import Callback
from ..utils import Sequence
from . import _comm

__all__ = ["BroadcastCallback", "MetricAverageCallback", "ShardedSequence"]


def broadcast_model(model, root=0):
    """Give every rank root's weights and optimizer state (in place); returns the
    number of arrays broadcast."""
    weights = model.weights
    _comm.broadcast_arrays(weights, root)
    n = len(weights)
    opt = model.optimizer
    if opt is None:
        return n
    iterations, slots = opt.get_state()
    lr = opt.__dict__.get("_learning_rate")
    meta = _comm.broadcast_object(
        (iterations, [(s.shape, s.dtype.str) for s in slots],
         lr if isinstance(lr, float) else None), root)
    iterations, shapes, lr = meta
    if _comm.rank() != root:
        slots = [np.empty(shape, np.dtype(dt)) for shape, dt in shapes]
    _comm.broadcast_arrays(slots, root)
    if _comm.rank() != root:
        opt.set_state(iterations, slots, model.trainable_weights)
        if lr is not None:
            opt.learning_rate = lr
    return n + len(slots)


class BroadcastCallback(Callback):
    """Rank ``root_rank``'s weights, optimizer state, starting epoch and random
    generator to every rank when fit starts (place it after a BackupAndRestore that
    rank 0 owns)."""

    def __init__(self, root_rank=0):
        super().__init__()
        if isinstance(root_rank, bool) or not isinstance(root_rank, numbers.Integral) \
                or not 0 <= root_rank < _comm.size():
            raise ValueError(f"root_rank must be an int in [0, {_comm.size()}), got "
                             f"{root_rank!r}")
        self.root_rank = int(root_rank)

    def on_train_begin(self, logs=None):
        model = self.model
        averager = getattr(model.optimizer, "_averager", None)
        if averager is not None:
            averager.attach(model)
        broadcast_model(model, self.root_rank)
        # the starting epoch, and the generator fit shuffles with (batch order)
        model._initial_epoch, model._rng = _comm.broadcast_object(
            (model._initial_epoch, model._rng), self.root_rank)


class MetricAverageCallback(Callback):
    """Average the numbers of each epoch's logs over the ranks (in place, in the
    order of the sorted keys), before the callbacks after it read them."""

    def on_epoch_end(self, epoch, logs=None):
        if not logs or _comm.size() == 1:
            return
        keys = sorted(k for k, v in logs.items()
                      if isinstance(v, numbers.Real) and not isinstance(v, bool))
        keys = _comm.broadcast_object(keys)
        means = _comm.allreduce_mean([float(logs[k]) for k in keys])
        for k, v in zip(keys, means):
            logs[k] = float(v)


class ShardedSequence(Sequence):
    """This rank's batches of ``(x, y[, sample_weight])``.

    At each epoch a permutation of all samples is drawn from
    ``numpy.random.default_rng((seed, epoch))`` (the same on every rank); global batch
    i is ``perm[i * size * B:(i + 1) * size * B]`` and this rank's batch is its part
    ``rank`` of ``size`` equal parts.  A last global batch smaller than ``size * B`` is
    split into ``size`` equal parts (the ``len % size`` samples left over, different
    ones at each epoch, are skipped), so every rank runs the same number of steps on
    batches of the same size: the mean of the ranks' mean losses is the global mean.
    ``augment(x, y)``, when given, transforms each batch (it may draw from its own
    generator).  Pass ``seq.callback`` to fit so that a resumed run reshuffles as the
    uninterrupted one.
    """

    def __init__(self, x, y, batch_size, seed=0, shuffle=True, sample_weight=None,
                 augment=None, rank=None, size=None):
        super().__init__()
        x, y = np.asarray(x), np.asarray(y)
        if x.shape[:1] != y.shape[:1]:
            raise ValueError(f"x and y must have the same number of samples, got "
                             f"{x.shape[0]} and {y.shape[0]}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.rank = _comm.rank() if rank is None else rank
        self.size = _comm.size() if size is None else size
        if not 0 <= self.rank < self.size:
            raise ValueError(f"rank must be in [0, size={self.size}), got {self.rank!r}")
        if len(x) < self.size:
            raise ValueError(f"{len(x)} samples cannot be shared by {self.size} ranks")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be callable or None, got {augment!r}")
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size, self.seed, self.shuffle = int(batch_size), seed, bool(shuffle)
        self.augment = augment
        self.epoch = 0
        self._order = np.arange(len(x))
        self.callback = _EpochSetter(self)

    def __len__(self):
        return -(-(len(self.x) // self.size) // self.batch_size)

    def on_epoch_begin(self):
        if self.shuffle:
            rng = np.random.default_rng((self.seed, self.epoch))
            self._order = rng.permutation(len(self.x))
        self.epoch += 1

    def indices(self, i):
        """The sample indices of this rank's batch ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"batch index {i} out of range for {len(self)} batches")
        glob = self.size * self.batch_size
        start = i * glob
        part = min(glob, len(self.x) - start) // self.size
        lo = start + self.rank * part
        return self._order[lo:lo + part]

    def __getitem__(self, i):
        idx = self.indices(i)
        x, y = self.x[idx], self.y[idx]
        if self.augment is not None:
            x, y = self.augment(x, y)
        if self.sample_weight is None:
            return x, y
        return x, y, np.asarray(self.sample_weight)[idx]


class _EpochSetter(Callback):
    """Sets the sequence's epoch from fit's (for a run resumed at epoch k)."""

    def __init__(self, seq):
        super().__init__()
        self._seq = seq

    def on_epoch_begin(self, epoch, logs=None):
        self._seq.epoch = epoch
