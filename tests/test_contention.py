"""One thread while the cores are taken (fastconv/_contention.py): the state machine
on made-up readings, the batch loops running on one thread while the readings say
busy and on all again after, and the same results either way."""
import numpy as np
import pytest

import fastconv
from fastconv import _contention as C
from fastconv import _ext, layers

needs_threads = pytest.mark.skipif(not _ext.openmp.openmp_enabled(),
                                   reason="a serial build runs one thread anyway")


def _feed(m, readings):
    """readings: (wall seconds, busy?) -> the thread counts after each (wanted 2)."""
    out = []
    delay = m.delay
    for wall, busy in readings:
        delay += (wall - m.wall) * (0.5 if busy else 0.01)
        m.reading(wall, delay)
        out.append(m.threads(2))
    return out


def test_the_states_on_made_up_readings():
    m = C.Monitor(0.0, 0.0)
    # quiet: all threads; busy: one; before the retry time: still one
    assert _feed(m, [(0.1, False), (0.2, True), (0.3, False), (0.5, False)]) == [2, 1, 1, 1]
    # at the retry time (1 s after going to one thread) one interval tries all threads
    assert _feed(m, [(1.25, True)]) == [2]
    # still busy during the try: back to one, the next try twice as late
    assert _feed(m, [(1.35, True)]) == [1]
    assert m.retry == 2 * C.FIRST_RETRY
    assert _feed(m, [(2.0, False), (3.36, False)]) == [1, 2]
    # quiet during the try: all threads again, the retry time reset
    assert _feed(m, [(3.5, False), (3.6, False)]) == [2, 2]
    assert not m.single and m.retry == C.FIRST_RETRY
    # the retry time doubles up to MAX_RETRY
    m = C.Monitor(0.0, 0.0)
    wall = 0.0
    for _ in range(12):
        wall += 0.1
        _feed(m, [(wall, True)])                     # one thread (or a failed try)
        wall = m.retry_at
        assert _feed(m, [(wall, True)]) == [2]       # a try
    assert m.retry == C.MAX_RETRY


def test_threads_for_leaves_one_thread_and_disabled_alone(monkeypatch):
    monkeypatch.setattr(C, "_run_delay", lambda: pytest.fail("read"))
    assert C.threads_for(1) == 1
    monkeypatch.setattr(C, "ENABLED", False)
    assert C.threads_for(4) == 4


def test_unreadable_schedstat_turns_it_off(monkeypatch):
    monkeypatch.setattr(C, "_PATH", "/nonexistent/schedstat")
    monkeypatch.setattr(C, "ENABLED", True)
    monkeypatch.delattr(C._local, "monitor", raising=False)
    assert C.threads_for(2) == 2 and C.ENABLED is False


@needs_threads
def test_batches_run_on_one_thread_while_busy_with_the_same_results(monkeypatch):
    """A model's predict and training steps under readings that say "busy": one
    thread inside the passes (seen by a layer), the caller's count unchanged outside,
    and the same bits as on all threads."""
    seen = []

    class Seen(layers.Activation):
        def forward(self, x, training=False):
            seen.append(fastconv.get_num_threads())
            return super().forward(x, training)

    def model():
        fastconv.set_seed(5)
        m = fastconv.models.Sequential([
            fastconv.Input((8, 8, 3)), layers.Conv2D(8, 3, padding="same"),
            Seen("relu"), layers.Flatten(), layers.Dense(4, activation="softmax")])
        m.compile("sgd", "categorical_crossentropy")
        return m
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 8, 8, 3)).astype(np.float32)
    y = np.eye(4)[rng.integers(0, 4, 16)]
    clock = {"wall": 0.0, "delay": 0.0, "busy": False}

    def tick():
        step = C.INTERVAL * 1.2
        clock["wall"] += step
        clock["delay"] += step * (0.9 if clock["busy"] else 0.0)
        return clock["wall"]
    monkeypatch.setattr(C, "ENABLED", True)
    monkeypatch.setattr(C, "FIRST_RETRY", 100.0)   # (no try on all threads in here)
    monkeypatch.setattr(C, "_now", tick)
    monkeypatch.setattr(C, "_run_delay", lambda: clock["delay"])
    monkeypatch.delattr(C._local, "monitor", raising=False)
    with fastconv.num_threads(2):
        quiet = model()
        want = [quiet.train_on_batch(x, y) for _ in range(3)], quiet.predict(x, verbose=0)
        assert set(seen) == {2}
        seen.clear()
        clock["busy"] = True
        busy = model()
        got = [busy.train_on_batch(x, y) for _ in range(3)], busy.predict(x, verbose=0)
        assert seen == [1] * 4 and fastconv.get_num_threads() == 2
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    for a, b in zip(busy.get_weights(), quiet.get_weights()):
        np.testing.assert_array_equal(a, b)
