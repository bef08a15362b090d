"""Data-parallel training over MPI (mpi4py) and prediction over Dask.

Training, Horovod's way: every rank holds the whole model and trains on its shard of
the data; the gradients are averaged over the ranks before each update.

    import fastconv.distributed as dist
    rank, size, local_rank = dist.init()          # threads per rank, abort on failure
    model.compile(optimizer=dist.DistributedOptimizer(SGD(0.01 * size)), loss=...)
    data = dist.ShardedSequence(x, y, batch_size=64, seed=0)
    model.fit(data, epochs=5, verbose=1 if dist.is_root() else 0,
              callbacks=[dist.BroadcastCallback(), data.callback,
                         dist.MetricAverageCallback()])

Run it with ``mpirun -n N python script.py`` (docs/distributed.md: the flags, the
cluster recipe, the cost model).  Prediction: :func:`predict` over a Dask array.
Without init() (or with one rank) everything runs as a single process.
"""
from ._callbacks import (BroadcastCallback, MetricAverageCallback,  # noqa: F401
                         ShardedSequence, broadcast_model)
from ._comm import (abort, allreduce_mean, comm, init, is_root, local_rank,  # noqa: F401
                    local_size, rank, size, threads_for_rank)
from ._dask import chunk_sizes, predict  # noqa: F401
from ._optimizer import (DEFAULT_BUCKET_BYTES, DistributedOptimizer,  # noqa: F401
                         is_distributed)
from ._sync_bn import sync_batch_norm  # noqa: F401

__all__ = ["init", "rank", "size", "local_rank", "local_size", "is_root", "comm",
           "abort", "allreduce_mean", "threads_for_rank", "DistributedOptimizer",
           "DEFAULT_BUCKET_BYTES", "is_distributed", "BroadcastCallback",
           "MetricAverageCallback", "ShardedSequence", "broadcast_model",
           "sync_batch_norm", "predict", "chunk_sizes"]
