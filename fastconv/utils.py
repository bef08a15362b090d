"""Data for fit / evaluate / predict: ``Sequence`` (Keras 3's PyDataset API) and the
data adapters that turn arrays, Python generators and Sequences into per-epoch
iterators of batches ``(x, y, sample_weight)``.

What the adapters do (the decisions, where Keras leaves room):

- Arrays: batches of ``batch_size`` in order, or in the order of a permutation drawn
  from the model's generator when the epoch starts (``shuffle``), exactly as fit always
  did.  ``steps_per_epoch=k`` takes the first k batches of each epoch.
- A Python generator (any iterator) yields ``(x, y)`` or ``(x, y, sample_weight)``.
  It cannot be replayed: without ``steps_per_epoch`` its first epoch ends when it is
  exhausted and training then stops with Keras's warning ("Your input ran out of
  data; interrupting training") if more epochs were asked; with ``steps_per_epoch=k``
  each epoch takes the next k batches, and a generator that runs out mid-epoch ends
  that epoch and the training (same warning).
- A ``Sequence``: batch i is ``seq[i]``; the batch order is shuffled per epoch with the
  model's generator when ``shuffle`` (Keras shuffles a PyDataset's batches the same
  way), ``on_epoch_begin`` / ``on_epoch_end`` run around every epoch.
  ``steps_per_epoch=k`` takes the first k batches of each epoch's order (Keras would
  instead continue where the previous epoch stopped).
- ``workers > 1``: ``__getitem__`` runs in that many threads (threads only: a
  ``Sequence`` with ``use_multiprocessing=True`` is refused), at most
  ``max_queue_size`` batches ahead of the training loop, and the batches are
  delivered in index order, so training gives the same weights as with one worker,
  bit for bit.  An exception in a worker is raised in the training loop as a
  ``DataWorkerError`` whose cause (``raise ... from``) is the original exception with
  its traceback; the threads are stopped and joined when an epoch ends, when training
  stops early and on every error.  ``__getitem__`` must be safe to call from several
  threads at once.
- ``class_weight`` ({class: weight}) becomes per-sample weights as Keras's
  ``class_weight_to_sample_weights``: integer labels, or the argmax of one-hot /
  categorical targets (a last axis of 1 is squeezed), rounded; a class missing from the
  dict weighs 1.  It cannot be combined with sample weights.
"""
import abc
import collections
import concurrent.futures
import numbers
import warnings

import numpy as np

from ._validation import as_array

__all__ = ["Sequence", "PyDataset", "DataWorkerError", "class_weight_to_sample_weights"]

_RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your "
            "dataset or generator can generate at least `steps_per_epoch * epochs` "
            "batches.")


class DataWorkerError(RuntimeError):
    """A ``Sequence.__getitem__`` failed in a worker thread (the original exception,
    with its traceback, is the ``__cause__``)."""


class Sequence(abc.ABC):
    """Base class of a data set read by batch (Keras 3's ``PyDataset``).

    Subclasses define ``__len__`` (the number of batches) and ``__getitem__(i)``
    returning batch i as ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``;
    they may define ``on_epoch_begin`` / ``on_epoch_end`` (e.g. to reshuffle).

    ``workers``: with more than 1, batches are read by that many threads, ahead of the
    training loop by at most ``max_queue_size`` batches and delivered in order (the
    results equal a one-worker run).  ``use_multiprocessing`` is accepted for Keras's
    signature but only ``False`` is supported: worker processes are not implemented.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    # (getattr defaults: a subclass that does not call super().__init__ still works)
    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value):
        self._workers = _check_positive_int(value, "workers")

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        if value:
            raise ValueError("use_multiprocessing=True is not supported: fastconv's "
                             "Sequence reads batches in worker threads only (give "
                             "workers=N with use_multiprocessing=False)")
        self._use_multiprocessing = False

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = _check_positive_int(value, "max_queue_size")

    @abc.abstractmethod
    def __len__(self):
        """The number of batches."""

    @abc.abstractmethod
    def __getitem__(self, index):
        """Batch ``index``."""

    @property
    def num_batches(self):
        return len(self)

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


PyDataset = Sequence  # Keras 3's name


def _check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_steps(value, name):
    """None or a positive int (steps_per_epoch, validation_steps, steps)."""
    return None if value is None else _check_positive_int(value, name)


def is_generator(data):
    """Whether ``data`` is read as a generator (any iterator that is not an array)."""
    return hasattr(data, "__next__") and not isinstance(data, (np.ndarray, Sequence))


def class_weight_to_sample_weights(y, class_weight):
    """Per-sample weights of targets ``y`` (Keras's class_weight_to_sample_weights):
    float32, class_weight.get(class, 1.0) of each sample's class."""
    check_class_weight(class_weight)
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else np.squeeze(y, axis=-1)
    if y.ndim != 1:
        raise ValueError(f"class_weight needs one class per sample, got class "
                         f"indices of shape {y.shape} from the targets")
    classes = np.round(y).astype(np.int64)
    table = {int(k): float(v) for k, v in class_weight.items()}
    return np.array([table.get(int(c), 1.0) for c in classes], dtype=np.float32)


def check_class_weight(class_weight):
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be a dict {{class index: weight}}, got "
                        f"{class_weight!r}")
    for k, v in class_weight.items():
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise ValueError(f"class_weight's keys must be integer class indices, got "
                             f"{k!r}")
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise ValueError(f"class_weight's values must be numbers, got {v!r} for "
                             f"class {k}")


def weights_for(y, sample_weight, class_weight, yname="y"):
    """The per-sample weights of a batch or data set (None: unweighted)."""
    if class_weight is not None:
        if sample_weight is not None:
            raise ValueError("You cannot use class_weight and sample_weight at the same "
                             "time")
        return class_weight_to_sample_weights(y, class_weight)
    if sample_weight is None:
        return None
    w = as_array(sample_weight, "sample_weight")
    if w.dtype.kind not in "fiub":
        raise ValueError(f"sample_weight must be numeric, got dtype {w.dtype}")
    if w.ndim < 1 or w.shape[0] != np.shape(y)[0]:
        raise ValueError(f"sample_weight must have one weight per sample of {yname}: "
                         f"shape ({np.shape(y)[0]},), got {w.shape}")
    return w


def unpack(batch, where):
    """(x, y, sample_weight) of one batch of a generator or Sequence (Keras's
    unpack_x_y_sample_weight)."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if len(batch) == 1:
        return batch[0], None, None
    if len(batch) == 2:
        return batch[0], batch[1], None
    if len(batch) == 3:
        return batch
    raise ValueError(f"{where} must yield x, (x,), (x, y) or (x, y, sample_weight); got "
                     f"a tuple of {len(batch)} items")


# ------------------------------------------------------------------ worker threads
class _OrderedReader:
    """Reads ``seq[i]`` for i in ``indices`` with ``workers`` threads, at most
    ``max_queue_size`` reads ahead of the consumer, yielding the batches in order.
    ``close()`` cancels what has not started and joins the threads."""

    def __init__(self, seq, indices, workers, max_queue_size):
        self._seq = seq
        self._indices = iter(indices)
        self._pending = collections.deque()
        self._ahead = max(max_queue_size, 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="fastconv-data")
        self._fill()

    def _fill(self):
        while len(self._pending) < self._ahead:
            index = next(self._indices, None)
            if index is None:
                return
            self._pending.append((index, self._pool.submit(self._seq.__getitem__,
                                                           index)))

    def __iter__(self):
        return self

    def __next__(self):
        if not self._pending:
            self.close()
            raise StopIteration
        index, future = self._pending.popleft()
        try:
            batch = future.result()
        except BaseException as exc:
            self.close()
            raise DataWorkerError(
                f"{type(self._seq).__name__}[{index}] raised {type(exc).__name__} in "
                f"a worker thread: {exc}") from exc
        self._fill()
        return batch

    def close(self):
        if self._pool is not None:
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ------------------------------------------------------------------ adapters
class _Epoch:
    """The batches of one epoch: an iterator of (x, y, sample_weight) with close()."""

    def __init__(self, iterator, close=None):
        self._it = iterator
        self._close = close

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)

    def close(self):
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ArrayAdapter:
    """Arrays x, y (and per-sample weights w) in batches of ``batch_size``."""
    exhausted = False

    def __init__(self, x, y, w, batch_size, shuffle=False, steps=None):
        self.x, self.y, self.w = x, y, w
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.n = x.shape[0]
        full = -(-self.n // batch_size)
        if steps is not None and steps > full:
            raise ValueError(f"steps_per_epoch={steps} is more than the {full} batches "
                             f"of {self.n} samples at batch_size={batch_size}")
        self.num_batches = full if steps is None else steps

    def epoch(self, rng=None):
        """This epoch's batches; the permutation (shuffle) is drawn now."""
        order = rng.permutation(self.n) if self.shuffle else None
        return _Epoch(self._batches(order))

    def _batches(self, order):
        x, y, w, bs = self.x, self.y, self.w, self.batch_size
        for step in range(self.num_batches):
            lo, hi = step * bs, min(self.n, (step + 1) * bs)
            if order is None:
                yield x[lo:hi], y[lo:hi], None if w is None else w[lo:hi]
            else:
                idx = order[lo:hi]
                yield x[idx], y[idx], None if w is None else w[idx]


class GeneratorAdapter:
    """A Python generator (iterator) of batches, read ``steps`` at a time (or to its
    end)."""

    def __init__(self, generator, steps=None, class_weight=None, where="x"):
        self.generator = generator
        self.num_batches = steps
        self.class_weight = class_weight
        self.exhausted = False
        self.where = where

    def epoch(self, rng=None):
        return _Epoch(self._batches())

    def _batches(self):
        step = 0
        while self.num_batches is None or step < self.num_batches:
            try:
                batch = next(self.generator)
            except StopIteration:
                self.exhausted = True
                return
            step += 1
            yield _weighted(unpack(batch, self.where), self.class_weight)


class SequenceAdapter:
    """A Sequence: ``seq[i]`` for each batch index, in order or shuffled per epoch,
    read by its worker threads when it has more than one."""
    exhausted = False

    def __init__(self, seq, shuffle=False, steps=None, class_weight=None, where="x"):
        if getattr(seq, "use_multiprocessing", False):
            raise ValueError("use_multiprocessing=True is not supported: fastconv's "
                             "Sequence reads batches in worker threads only")
        self.seq = seq
        self.shuffle = shuffle
        self.class_weight = class_weight
        self.where = where
        n = len(seq)
        if n < 1:
            raise ValueError(f"{where}: the Sequence has no batches (len 0)")
        if steps is not None and steps > n:
            raise ValueError(f"steps={steps} is more than the {n} batches of the "
                             f"Sequence {where}")
        self.length = n
        self.num_batches = n if steps is None else steps

    def epoch(self, rng=None):
        seq = self.seq
        order = rng.permutation(self.length) if (self.shuffle and rng is not None) \
            else np.arange(self.length)
        indices = [int(i) for i in order[:self.num_batches]]
        getattr(seq, "on_epoch_begin", lambda: None)()
        workers = getattr(seq, "workers", 1)
        if workers > 1:
            reader = _OrderedReader(seq, indices, workers,
                                    getattr(seq, "max_queue_size", 10))
            source, close_reader = reader, reader.close
        else:
            source, close_reader = (seq[i] for i in indices), None
        done = []

        def close():
            if close_reader is not None:
                close_reader()
            if not done:
                done.append(True)
                getattr(seq, "on_epoch_end", lambda: None)()

        def batches():
            for batch in source:
                yield _weighted(unpack(batch, self.where), self.class_weight)
        return _Epoch(batches(), close)


def _weighted(batch, class_weight):
    x, y, w = batch
    if class_weight is not None:
        if y is None:
            raise ValueError("class_weight needs targets: the batches have no y")
        w = weights_for(y, w, class_weight)
    return x, y, w


def adapter(x, y=None, sample_weight=None, class_weight=None, batch_size=32,
            shuffle=False, steps=None, where="x"):
    """The adapter of generator or Sequence data (arrays: ArrayAdapter, after the
    caller has checked them); y and sample_weight must then be None."""
    if isinstance(x, Sequence) or is_generator(x):
        for value, label in ((y, "y"), (sample_weight, "sample_weight")):
            if value is not None:
                raise ValueError(f"{label} must not be given when {where} is a "
                                 f"generator or a Sequence (it yields (x, y[, "
                                 f"sample_weight]) batches)")
        if class_weight is not None:
            check_class_weight(class_weight)
        if isinstance(x, Sequence):
            return SequenceAdapter(x, shuffle, steps, class_weight, where)
        return GeneratorAdapter(x, steps, class_weight, where)
    return None


def warn_ran_out():
    warnings.warn(_RAN_OUT, stacklevel=3)
