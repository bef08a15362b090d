"""fastconv.distributed.predict over Dask: equal bit for bit to model.predict on the
whole array (several chunks, a ragged last one), on the threads scheduler and on a
LocalCluster of 2 worker processes, the model loaded once per worker.

Skipped when dask (or distributed, for the cluster) is missing: pip install
'fastconv[dask]'."""
import numpy as np
import pytest

import fastconv
import fastconv.distributed as dist
from fastconv import layers as L
from fastconv.models import Sequential

da = pytest.importorskip("dask.array")


def _model():
    fastconv.set_seed(3)
    return Sequential([
        L.Conv2D(6, 5, activation="relu", input_shape=(16, 16, 1)),
        L.MaxPooling2D(2),
        L.Conv2D(8, 3, activation="tanh"),
        L.Flatten(),
        L.Dense(10, activation="softmax")])


def _data(n=700):
    return np.random.default_rng(0).standard_normal((n, 16, 16, 1)).astype(np.float32)


def test_chunk_sizes():
    assert dist.chunk_sizes(700, 250, 64) == (192, 192, 192, 124)
    assert dist.chunk_sizes(700, 10, 64) == (64,) * 10 + (60,)
    assert dist.chunk_sizes(128, 300, 64) == (128,)


@pytest.mark.parametrize("chunks", [250, 64, 1000])
def test_threads_scheduler_equals_predict(chunks):
    model, x = _model(), _data()
    ref = model.predict(x, batch_size=64, verbose=0)
    out = dist.predict(model, da.from_array(x, chunks=(chunks, 16, 16, 1)),
                       batch_size=64)
    assert isinstance(out, da.Array) and out.shape == ref.shape
    assert out.numblocks[0] == len(dist.chunk_sizes(700, min(chunks, 700), 64))
    got = out.compute(scheduler="threads")
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def test_local_cluster_equals_predict_and_ships_the_model_once_per_worker():
    distributed = pytest.importorskip("distributed")
    model, x = _model(), _data()
    ref = model.predict(x, batch_size=32, verbose=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dx = da.from_array(x, chunks=(100, 16, 16, 1))  # 7 chunks of 96, then 28
        got = dist.predict(model, dx, batch_size=32).compute()
        loads = client.run(lambda: dist._dask._loads[0])
    np.testing.assert_array_equal(got, ref)
    # 8 chunks on 2 single-thread workers: each loaded the model at most once
    assert len(loads) == 2 and max(loads.values()) == 1, loads


def test_predict_rejects_bad_arguments():
    model = _model()
    with pytest.raises(TypeError, match="x must be a dask.array.Array, got ndarray"):
        dist.predict(model, _data(10))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        dist.predict(model, da.from_array(_data(10)), batch_size=0)
    with pytest.raises(ValueError, match="cannot be applied to input shape"):
        dist.predict(model, da.zeros((10, 8, 8, 1), chunks=5))
