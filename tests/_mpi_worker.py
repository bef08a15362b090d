"""Checks of fastconv.distributed run under ``mpirun -n 2`` by tests/test_distributed.py
(several checks per launch: mpirun's startup costs seconds).  Each check raises on
failure, which aborts the job (fastconv.distributed.init's handler) with a message
naming the rank; rank 0 prints ``OK <check> <numbers>`` for each check passed.

    python tests/_mpi_worker.py equivalence broadcast fit bucketing regularized
    python tests/_mpi_worker.py kill RANK BATCH      (that rank SIGKILLs itself)
    python tests/_mpi_worker.py raise RANK BATCH     (that rank raises)
    python tests/_mpi_worker.py resume DIR EPOCHS    (fit with BackupAndRestore)
"""
import os
import signal
import sys

import numpy as np

import fastconv
import fastconv.distributed as dist
from fastconv import layers as L
from fastconv import optimizers, regularizers
from fastconv.callbacks import BackupAndRestore, Callback
from fastconv.models import Sequential

PER_RANK = 64
STEPS = 20


def net(seed, regularized=False):
    fastconv.set_seed(seed)
    reg = {"kernel_regularizer": regularizers.L2(1e-3)} if regularized else {}
    return Sequential([
        L.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 2), **reg),
        L.MaxPooling2D(2),
        L.Conv2D(6, 3, activation="tanh"),
        L.Flatten(),
        L.Dense(16, activation="relu", **reg),
        L.Dense(5, activation="softmax")])


def data(n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 2)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
    return x, y


OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.05),
    "momentum": lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "rmsprop": lambda: optimizers.RMSprop(0.003),
    "adam": lambda: optimizers.Adam(0.003),
    "adagrad": lambda: optimizers.Adagrad(0.05),
    "adamw_clip": lambda: optimizers.AdamW(0.003, global_clipnorm=0.5),
}


def same_on_all_ranks(arrays):
    """Whether every rank holds these arrays bit for bit (rank 0's, broadcast)."""
    mine = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    theirs = dist.comm().bcast(mine, root=0)
    ok = dist.comm().allreduce(int(mine == theirs))
    return ok == dist.size()


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def equivalence(regularized=False):
    x, y = data(PER_RANK * dist.size() * STEPS)
    worst = 0.0
    for name, make in OPTIMIZERS.items():
        model = net(seed=7 + dist.rank(), regularized=regularized)  # broadcast fixes it
        model.compile(dist.DistributedOptimizer(make()), "categorical_crossentropy")
        model.build((None, 8, 8, 2))
        dist.broadcast_model(model)
        model.optimizer._averager.attach(model)
        ref = net(seed=7, regularized=regularized)
        ref.compile(make(), "categorical_crossentropy")
        ref.build((None, 8, 8, 2))
        glob = PER_RANK * dist.size()
        for step in range(STEPS):
            lo = step * glob + dist.rank() * PER_RANK
            model.train_on_batch(x[lo:lo + PER_RANK], y[lo:lo + PER_RANK])
            ref.train_on_batch(x[step * glob:(step + 1) * glob],
                               y[step * glob:(step + 1) * glob])
            check(same_on_all_ranks(model.get_weights()),
                  f"{name}: ranks differ after step {step + 1}")
        for w, r in zip(model.get_weights(), ref.get_weights()):
            err = float(np.max(np.abs(w - r)) / (np.max(np.abs(r)) + 1e-30))
            worst = max(worst, err)
            check(err < 2e-5, f"{name}: 2 x {PER_RANK} differs from 1 x {glob} "
                              f"by {err:.3g} (relative)")
        check(model.optimizer._averager._inflight == [], "buckets left in flight")
    return f"{len(OPTIMIZERS)} optimizers x {STEPS} steps, worst relative {worst:.2e}"


def syncbn():
    """Synchronized BatchNormalization: 2 ranks x 32 = 1 process x 64 (weights and
    moving statistics); without synchronization the statistics differ."""
    x, y = data(64 * 10, seed=8)
    worst, unsynced = 0.0, 0.0
    for sync in (True, False):
        model = bn_net(seed=5)
        model.compile(dist.DistributedOptimizer(optimizers.SGD(0.05, momentum=0.9),
                                                model=model), "categorical_crossentropy")
        if sync:
            check(dist.sync_batch_norm(model) == 2, "two BatchNormalization layers")
        ref = bn_net(seed=5)
        ref.compile(optimizers.SGD(0.05, momentum=0.9), "categorical_crossentropy")
        for step in range(10):
            lo = step * 64 + dist.rank() * 32
            model.train_on_batch(x[lo:lo + 32], y[lo:lo + 32])
            ref.train_on_batch(x[step * 64:(step + 1) * 64], y[step * 64:(step + 1) * 64])
            if sync:
                check(same_on_all_ranks(model.get_weights()),
                      f"sync BN: ranks differ after step {step + 1}")
        # (relative to the tensor's largest value, at least 1e-3: the biases before
        # a normalization have a zero gradient and stay at rounding noise)
        err = max(float(np.max(np.abs(w - r)) / max(np.max(np.abs(r)), 1e-3))
                  for w, r in zip(model.get_weights(), ref.get_weights()))
        if sync:
            worst = err
            check(err < 2e-5, f"sync BN differs from one process by {err:.3g}")
        else:
            unsynced = err
    check(unsynced > 100 * worst, f"unsynchronized BN: {unsynced:.3g} (the check "
                                  f"would not see a missing synchronization)")
    return f"worst relative {worst:.2e} (unsynchronized: {unsynced:.2e})"


def bn_net(seed):
    fastconv.set_seed(seed)
    return Sequential([
        L.Conv2D(4, 3, padding="same", input_shape=(8, 8, 2)),
        L.BatchNormalization(momentum=0.9),
        L.Activation("relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(12),
        L.BatchNormalization(),
        L.Activation("tanh"),
        L.Dense(5, activation="softmax")])


def residual_net(seed):
    """A functional model: a residual block with batch norms, shared by both paths."""
    from fastconv.functional import Model
    fastconv.set_seed(seed)
    inp = L.Input((8, 8, 2))
    # (no bias before the normalization: its gradient is rounding noise, which Adam
    # scales to full steps)
    h = L.Conv2D(4, 3, padding="same", use_bias=False)(inp)
    h = L.BatchNormalization()(h)
    h = L.Activation("relu")(h)
    h = L.Conv2D(4, 3, padding="same")(h)
    skip = L.Conv2D(4, 1)(inp)
    h = L.Activation("relu")(L.Add()([h, skip]))
    out = L.Dense(5, activation="softmax")(L.Flatten()(h))
    return Model(inp, out)


def functional():
    """A functional model (graph runner, a shared input, sync BN): 2 x 32 = 1 x 64."""
    x, y = data(64 * 8, seed=9)
    model = residual_net(seed=4 + dist.rank())
    model.compile(dist.DistributedOptimizer(optimizers.Adam(0.003), bucket_bytes=512),
                  "categorical_crossentropy")
    dist.sync_batch_norm(model)
    cb = dist.BroadcastCallback()  # as fit runs it: weights from rank 0, the hook
    cb.set_model(model)
    model._initial_epoch = None
    cb.on_train_begin()
    ref = residual_net(seed=4)
    ref.compile(optimizers.Adam(0.003), "categorical_crossentropy")
    for step in range(8):
        lo = step * 64 + dist.rank() * 32
        model.train_on_batch(x[lo:lo + 32], y[lo:lo + 32])
        ref.train_on_batch(x[step * 64:(step + 1) * 64], y[step * 64:(step + 1) * 64])
        check(same_on_all_ranks(model.get_weights()),
              f"functional: ranks differ after step {step + 1}")
    check(model.optimizer._averager.stats["overlapped"] >= 8, "no bucket overlapped")
    err = max(float(np.max(np.abs(w - r)) / max(np.max(np.abs(r)), 1e-3))
              for w, r in zip(model.get_weights(), ref.get_weights()))
    check(err < 2e-5, f"functional: differs from one process by {err:.3g}")
    return f"8 Adam steps, worst relative {err:.2e}"


def _reuse_gradient_arrays(layer):
    """Make ``layer`` write each backward's gradients into the same arrays."""
    backward = layer._linear_backward

    def reusing(grad, need_input_grad):
        kept = dict(layer._grads)
        out = backward(grad, need_input_grad)
        for k, v in kept.items():
            np.copyto(v, layer._grads[k])
            layer._grads[k] = v
        return out
    layer._linear_backward = reusing


def abandoned():
    """Hooks of a step whose update never ran (buckets in flight) change nothing in
    the next step, even for a layer that reuses its gradient arrays."""
    x, y = data(64, seed=10)
    results = []
    for stray in (False, True):
        model = net(seed=3)
        model.compile(dist.DistributedOptimizer(optimizers.SGD(0.1), bucket_bytes=64,
                                                model=model), "categorical_crossentropy")
        model.train_on_batch(x[:32], y[:32])
        for layer in model.layers:
            if layer.trainable_weights:
                _reuse_gradient_arrays(layer)
        if stray:  # the hooks of a backward pass without its update
            for layer in reversed(model.layers):
                if layer.trainable_weights:
                    for hook in model._gradient_hooks:
                        hook(layer)
            check(model.optimizer._averager._inflight, "no bucket in flight")
        model.train_on_batch(x[32:], y[32:])
        results.append(model.get_weights())
    check(all(np.array_equal(a, b) for a, b in zip(*results)),
          "a step without update changed the next one")
    return "the next step is unchanged"


def broadcast():
    model = net(seed=100 + dist.rank())
    model.compile(optimizers.Adam(0.01), "categorical_crossentropy")
    x, y = data(8, seed=2 + dist.rank())
    model.train_on_batch(x, y)  # rank-specific slots and iterations
    n = dist.broadcast_model(model)
    iterations, slots = model.optimizer.get_state()
    check(same_on_all_ranks(model.get_weights() + slots), "broadcast left ranks apart")
    check(dist.comm().allreduce(iterations) == iterations * dist.size(), "iterations")
    # metric averaging: the mean over the ranks (0, 1, ... -> (size - 1) / 2)
    logs = {"loss": float(dist.rank()), "accuracy": 0.25 * dist.rank(), "name": "x"}
    dist.MetricAverageCallback().on_epoch_end(0, logs)
    half = (dist.size() - 1) / 2
    check(logs == {"loss": half, "accuracy": 0.25 * half, "name": "x"}, str(logs))
    return f"{n} arrays; averaged logs {logs}"


def fit(bucket_bytes=dist.DEFAULT_BUCKET_BYTES, overlap=True):
    """fit on a ShardedSequence equals one process of the global batch."""
    x, y = data(300, seed=3)
    model = net(seed=11 + dist.rank())
    model.compile(dist.DistributedOptimizer(optimizers.Adam(0.003),
                                            bucket_bytes=bucket_bytes, overlap=overlap),
                  "categorical_crossentropy", metrics=["accuracy"])
    seq = dist.ShardedSequence(x, y, batch_size=32, seed=5)
    hist = model.fit(seq, epochs=2, verbose=0, shuffle=False,
                     callbacks=[dist.BroadcastCallback(), seq.callback,
                                dist.MetricAverageCallback()])
    ref = net(seed=11)
    ref.compile(optimizers.Adam(0.003), "categorical_crossentropy")
    one = dist.ShardedSequence(x, y, batch_size=32 * dist.size(), seed=5, rank=0, size=1)
    ref.fit(one, epochs=2, verbose=0, shuffle=False, callbacks=[one.callback])
    check(same_on_all_ranks(model.get_weights()), "fit: ranks differ")
    logs = [hist.history["loss"][-1], hist.history["accuracy"][-1]]
    check(same_on_all_ranks([np.array(logs)]), "fit: averaged logs differ")
    err = max(float(np.max(np.abs(w - r))) for w, r in zip(model.get_weights(),
                                                            ref.get_weights()))
    check(err < 1e-5, f"fit: differs from one process by {err:.3g}")
    return model, f"loss {logs[0]:.4f}, max abs diff {err:.2e}"


def bucketing():
    """Buckets of any size, overlapped or not, average the same numbers."""
    base, _ = fit()
    stats = [base.optimizer._averager.stats]
    for kwargs in ({"bucket_bytes": 256}, {"overlap": False}):
        other, _ = fit(**kwargs)
        stats.append(other.optimizer._averager.stats)
        check(all(np.array_equal(a, b) for a, b in zip(base.get_weights(),
                                                       other.get_weights())),
              f"fit with {kwargs} differs from the default buckets")
    steps = 2 * len(dist.ShardedSequence(*data(300, seed=3), batch_size=32))
    # 4 MiB: one bucket per step, at apply; 256 B: several started during backward
    # (every layer's gradients but the last bucket's); no overlap: all in apply
    check(stats[0]["overlapped"] == 0 and stats[0]["at_apply"] == steps, stats[0])
    check(stats[1]["overlapped"] >= 3 * steps, stats[1])
    check(stats[2]["overlapped"] == 0 and stats[2]["at_apply"] == steps, stats[2])
    counts = [(s["overlapped"], s["at_apply"]) for s in stats]
    return (f"256 B buckets and no overlap equal 4 MiB buckets bit for bit; "
            f"buckets overlapped/at apply: {counts}")


class _Fail(Callback):
    def __init__(self, kind, rank, batch):
        super().__init__()
        self.kind, self.rank, self.batch = kind, rank, batch

    def on_train_batch_end(self, batch, logs=None):
        if dist.rank() == self.rank and batch == self.batch:
            if self.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected failure at batch {batch}")


def failing(kind, rank, batch):
    x, y = data(4000, seed=4)
    model = net(seed=1)
    model.compile(dist.DistributedOptimizer(optimizers.SGD(0.01)),
                  "categorical_crossentropy")
    seq = dist.ShardedSequence(x, y, batch_size=16)
    model.fit(seq, epochs=50, verbose=0, callbacks=[
        dist.BroadcastCallback(), seq.callback, _Fail(kind, int(rank), int(batch))])


class _Interrupt(Callback):
    def on_epoch_end(self, epoch, logs=None):
        # rank 0, after its BackupAndRestore wrote epoch 1 (rank 1 is aborted)
        if epoch == 0 and dist.is_root() and os.environ.get("FASTCONV_TEST_INTERRUPT"):
            raise RuntimeError("interrupted after epoch 1")


def resume(directory, epochs):
    x, y = data(256, seed=6)
    model = net(seed=1)
    model.compile(dist.DistributedOptimizer(optimizers.Adam(0.003)),
                  "categorical_crossentropy")
    seq = dist.ShardedSequence(x, y, batch_size=32)
    cbs = [BackupAndRestore(directory, delete_checkpoint=False)] if dist.is_root() \
        else []
    cbs += [dist.BroadcastCallback(), seq.callback, _Interrupt()]
    model.fit(seq, epochs=int(epochs), verbose=0, callbacks=cbs)
    check(same_on_all_ranks(model.get_weights()), "resume: ranks differ")
    if dist.is_root():
        np.savez(os.path.join(directory, "final.npz"), *model.get_weights())
    return f"{epochs} epochs"


def main(argv):
    dist.init(threads=1)
    if argv[0] in ("kill", "raise"):
        failing(argv[0], *argv[1:3])
        return
    if argv[0] == "resume":
        result = resume(*argv[1:3])
        if dist.is_root():
            print("OK resume", result, flush=True)
        return
    checks = {"equivalence": equivalence, "broadcast": broadcast,
              "fit": lambda: fit()[1], "bucketing": bucketing,
              "regularized": lambda: equivalence(regularized=True), "syncbn": syncbn,
              "functional": functional, "abandoned": abandoned}
    for name in argv:
        result = checks[name]()
        if dist.is_root():
            print(f"OK {name} {result}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
