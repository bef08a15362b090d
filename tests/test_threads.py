"""Thread control, concurrent callers, and fork safety."""
import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastconv
from fastconv import reference as ref

needs_openmp = pytest.mark.skipif(not fastconv.config()["openmp"],
                                  reason="serial build: one thread only")


@needs_openmp
def test_num_threads_context_manager_restores():
    before = fastconv.get_num_threads()
    with fastconv.num_threads(1):
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() == before


def test_set_num_threads_rejects_bad_values():
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        fastconv.set_num_threads(0)
    with pytest.raises(TypeError, match="n must be an int, got '2'"):
        fastconv.set_num_threads("2")


@needs_openmp
def test_threadpoolctl_sees_and_limits_our_openmp_runtime():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fastconv.conv2d(np.ones((2, 1, 4, 4)), np.ones((1, 1, 2, 2)))  # runtime loaded
    apis = {i["user_api"] for i in threadpoolctl.threadpool_info()}
    assert "openmp" in apis
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastconv.get_num_threads() == 1
    assert fastconv.get_num_threads() >= 1


def _case(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 3, 12, 11))
    w = rng.standard_normal((5, 3, 3, 3))
    return x, w


def test_concurrent_python_threads_get_correct_results():
    """Calls release the GIL; concurrent callers on different data do not interfere."""
    cases = [_case(s) for s in range(8)]
    expected = [ref.conv2d_forward(x, w, None, (1, 1), ((1, 1), (1, 1))) for x, w in cases]
    pool_expected = [fastconv.max_pool2d(x, 2) for x, _ in cases]

    def work(i):
        x, w = cases[i]
        out = []
        for _ in range(5):
            out.append((fastconv.conv2d(x, w, padding=1), fastconv.max_pool2d(x, 2)))
        return out

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(work, range(len(cases))))
    for i, res in enumerate(results):
        for y, p in res:
            np.testing.assert_allclose(y, expected[i], rtol=1e-10, atol=1e-10)
            np.testing.assert_array_equal(p, pool_expected[i])


def _child_conv(q):
    x, w = _case(0)
    q.put((fastconv.get_num_threads(), float(fastconv.conv2d(x, w, padding=1).sum()),
           float(fastconv.max_pool2d(x, 2).sum())))


def test_fork_after_parallel_use_does_not_hang():
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    x, w = _case(0)
    big = np.random.default_rng(1).standard_normal((32, 8, 32, 32)).astype(np.float32)
    fastconv.conv2d(big, np.ones((8, 8, 3, 3), np.float32), padding=1)  # pool started
    expected = (float(fastconv.conv2d(x, w, padding=1).sum()),
                float(fastconv.max_pool2d(x, 2).sum()))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_conv, args=(q,))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("fastconv hung in a forked child")
    assert p.exitcode == 0
    threads, conv_sum, pool_sum = q.get(timeout=5)
    assert threads == 1 or not fastconv.config()["openmp"]
    assert np.isclose(conv_sum, expected[0]) and np.isclose(pool_sum, expected[1])


def _raise_runtime_count(how):
    """Set the OpenMP runtime's thread count to 2 in this process, the way ``how`` says.

    Returns a context manager to run the kernels in (a null one when the count is set
    directly).
    """
    import contextlib
    import ctypes
    import warnings
    if how == "threadpoolctl":
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=2)
    if how == "ctypes":  # what threadpoolctl does, by hand
        from threadpoolctl import threadpool_info
        path = next(i["filepath"] for i in threadpool_info() if i["user_api"] == "openmp")
        ctypes.CDLL(path).omp_set_num_threads(2)
    elif how == "runtime":  # the compiled setter, past set_num_threads' Python check
        fastconv._ext.openmp.set_num_threads(2)
    elif how == "set_num_threads":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fastconv.set_num_threads(2)
    elif how == "num_threads":
        warnings.simplefilter("ignore", RuntimeWarning)
        return fastconv.num_threads(2)
    return contextlib.nullcontext()


def _fork_child_work(x, w):
    return fastconv.conv2d(x, w, padding=1), fastconv.max_pool2d(x, 2)


def _child_raises_threads(q, how, x, w):
    with _raise_runtime_count(how):
        threads = fastconv.get_num_threads()
        y, p = _fork_child_work(x, w)
    q.put((threads, y, p))


@needs_openmp
@pytest.mark.parametrize("how", ["threadpoolctl", "ctypes", "runtime", "set_num_threads",
                                 "num_threads"])
def test_fork_guard_holds_whatever_sets_the_thread_count(how):
    """In a forked child, no way of asking for 2 threads starts the dead OpenMP pool."""
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    if how in ("threadpoolctl", "ctypes"):
        pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 8, 32, 32)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    with fastconv.num_threads(2):
        expected = _fork_child_work(x, w)  # the parent's pool is started
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_raises_threads, args=(q, how, x, w))
    p.start()
    try:
        threads, y, pooled = q.get(timeout=60)
    except Exception:
        pytest.fail(f"fastconv hung in a forked child after {how} asked for 2 threads")
    finally:
        p.join(5)
        if p.is_alive():
            p.kill()
    assert threads == 1
    np.testing.assert_array_equal(y, expected[0])
    np.testing.assert_array_equal(pooled, expected[1])
