"""Data pipelines (fastconv/utils.py): fit / evaluate / predict on Python generators and
Sequences (with and without worker threads) against the same batches as arrays, the
Keras 3 behaviour of finite generators, errors raised in worker threads, and the
callback protocol of fit (shared logs, History last, stop_training after a batch)."""
import threading
import traceback
import warnings

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv import optimizers
from fastconv.callbacks import Callback, History
from fastconv.models import Sequential
from fastconv.utils import DataWorkerError, Sequence

N, BS = 40, 8


def model_and_data(seed=0):
    fastconv.set_seed(seed)
    model = Sequential([L.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 2)),
                        L.Flatten(), L.Dense(4, activation="softmax")])
    model.compile(optimizers.SGD(learning_rate=0.1, momentum=0.9),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    rs = np.random.RandomState(1)
    x = rs.rand(N, 6, 6, 2).astype(np.float32)
    y = rs.randint(0, 4, N)
    return model, x, y


def batches(x, y, w=None):
    for lo in range(0, len(x), BS):
        if w is None:
            yield x[lo:lo + BS], y[lo:lo + BS]
        else:
            yield x[lo:lo + BS], y[lo:lo + BS], w[lo:lo + BS]


def cycle(x, y, w=None):
    while True:
        yield from batches(x, y, w)


class ArraySequence(Sequence):
    def __init__(self, x, y, w=None, batch_size=BS, fail_at=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.w, self.bs, self.fail_at = x, y, w, batch_size, fail_at
        self.epoch_ends = 0
        self.calls = []
        self.lock = threading.Lock()

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __getitem__(self, i):
        with self.lock:
            self.calls.append(i)
        if i == self.fail_at:
            raise_from_worker(i)
        sl = slice(i * self.bs, (i + 1) * self.bs)
        if self.w is None:
            return self.x[sl], self.y[sl]
        return self.x[sl], self.y[sl], self.w[sl]

    def on_epoch_end(self):
        self.epoch_ends += 1


def raise_from_worker(i):
    raise ValueError(f"bad batch {i}")


def same_weights(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def data_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastconv-data")]


# ------------------------------------------------------------------ generators
def test_generator_with_steps_equals_arrays_bit_for_bit():
    ref, x, y = model_and_data()
    h_ref = ref.fit(x, y, batch_size=BS, epochs=3, shuffle=False, verbose=0)
    gen, _, _ = model_and_data()
    h = gen.fit(cycle(x, y), steps_per_epoch=N // BS, epochs=3, verbose=0)
    same_weights(ref, gen)
    assert h.history == h_ref.history


def test_generator_with_sample_weights_equals_arrays():
    w = np.random.RandomState(2).rand(N).astype(np.float32)
    ref, x, y = model_and_data()
    ref.fit(x, y, sample_weight=w, batch_size=BS, epochs=2, shuffle=False, verbose=0)
    gen, _, _ = model_and_data()
    gen.fit(cycle(x, y, w), steps_per_epoch=N // BS, epochs=2, verbose=0)
    same_weights(ref, gen)


def test_generator_class_weight_equals_arrays():
    cw = {0: 2.0, 2: 0.5}
    ref, x, y = model_and_data()
    ref.fit(x, y, class_weight=cw, batch_size=BS, epochs=1, shuffle=False, verbose=0)
    gen, _, _ = model_and_data()
    gen.fit(batches(x, y), class_weight=cw, epochs=1, verbose=0)
    same_weights(ref, gen)


def test_finite_generator_ends_the_epoch_then_training():
    ref, x, y = model_and_data()
    ref.fit(x, y, batch_size=BS, epochs=1, shuffle=False, verbose=0)
    gen, _, _ = model_and_data()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = gen.fit(batches(x, y), epochs=3, verbose=0)
    assert h.epoch == [0]
    same_weights(ref, gen)
    # with steps_per_epoch: running out mid-epoch ends that epoch and training
    gen, _, _ = model_and_data()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = gen.fit(batches(x, y), steps_per_epoch=3, epochs=3, verbose=0)
    assert h.epoch == [0, 1]


def test_generator_errors():
    model, x, y = model_and_data()
    with pytest.raises(ValueError, match="y must not be given"):
        model.fit(batches(x, y), y, verbose=0)
    with pytest.raises(ValueError, match="without y"):
        model.fit((xb for xb, _ in batches(x, y)), verbose=0)
    with pytest.raises(ValueError, match="validation_split is only supported"):
        model.fit(batches(x, y), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int"):
        model.fit(batches(x, y), steps_per_epoch=0, verbose=0)
    with pytest.raises(ValueError, match="tuple of 4"):
        model.fit(((x, y, y, y) for _ in range(2)), verbose=0)


def test_validation_generator_and_sequence_equal_arrays():
    ref, x, y = model_and_data()
    h_ref = ref.fit(x[:32], y[:32], batch_size=BS, epochs=2, shuffle=False, verbose=0,
                    validation_data=(x[32:], y[32:]))
    gen, _, _ = model_and_data()
    h = gen.fit(x[:32], y[:32], batch_size=BS, epochs=2, shuffle=False, verbose=0,
                validation_data=cycle(x[32:], y[32:]), validation_steps=1)
    assert h.history == h_ref.history
    seq, _, _ = model_and_data()
    h = seq.fit(x[:32], y[:32], batch_size=BS, epochs=2, shuffle=False, verbose=0,
                validation_data=ArraySequence(x[32:], y[32:], workers=2))
    assert h.history == h_ref.history
    # a finite validation generator without validation_steps: a clear error later
    bad, _, _ = model_and_data()
    with pytest.raises(ValueError, match="gave no batches"):
        bad.fit(x[:32], y[:32], batch_size=BS, epochs=2, verbose=0,
                validation_data=batches(x[32:], y[32:]))


def test_evaluate_and_predict_on_generators_and_sequences():
    model, x, y = model_and_data()
    w = np.random.RandomState(3).rand(N)
    expected = model.evaluate(x, y, batch_size=BS, sample_weight=w, verbose=0)
    assert model.evaluate(batches(x, y, w), verbose=0) == expected
    assert model.evaluate(ArraySequence(x, y, w, workers=3), verbose=0) == expected
    assert model.evaluate(cycle(x, y, w), steps=N // BS, verbose=0) == expected
    pred = model.predict(x, batch_size=BS, verbose=0)
    np.testing.assert_array_equal(model.predict(batches(x, y), verbose=0), pred)
    np.testing.assert_array_equal(model.predict((xb for xb, _ in batches(x, y)),
                                                verbose=0), pred)
    np.testing.assert_array_equal(
        model.predict(ArraySequence(x, y, workers=2), verbose=0), pred)
    np.testing.assert_array_equal(model.predict(x, batch_size=BS, steps=2, verbose=0),
                                  pred[:2 * BS])


def test_steps_per_epoch_on_arrays():
    ref, x, y = model_and_data()
    ref.fit(x[:16], y[:16], batch_size=BS, epochs=1, shuffle=False, verbose=0)
    part, _, _ = model_and_data()
    part.fit(x, y, batch_size=BS, epochs=1, steps_per_epoch=2, shuffle=False, verbose=0)
    same_weights(ref, part)
    with pytest.raises(ValueError, match="steps_per_epoch=6 is more than the 5"):
        part.fit(x, y, batch_size=BS, steps_per_epoch=6, verbose=0)


# ------------------------------------------------------------------ Sequences
@pytest.mark.parametrize("shuffle", [False, True])
def test_sequence_workers_give_the_same_weights(shuffle):
    runs = []
    for workers in (1, 2, 4):
        model, x, y = model_and_data()
        seq = ArraySequence(x, y, workers=workers, max_queue_size=2)
        h = model.fit(seq, epochs=3, shuffle=shuffle, verbose=0)
        assert seq.epoch_ends == 3
        runs.append((model, h.history))
    for model, history in runs[1:]:
        same_weights(runs[0][0], model)
        assert history == runs[0][1]
    assert not data_threads()


def test_sequence_without_shuffle_equals_arrays():
    ref, x, y = model_and_data()
    ref.fit(x, y, batch_size=BS, epochs=2, shuffle=False, verbose=0)
    model, _, _ = model_and_data()
    model.fit(ArraySequence(x, y, workers=3), epochs=2, shuffle=False, verbose=0)
    same_weights(ref, model)


def test_sequence_shuffle_permutes_batches():
    model, x, y = model_and_data()
    seq = ArraySequence(x, y)
    model.fit(seq, epochs=2, shuffle=True, verbose=0)
    first, second = seq.calls[:5], seq.calls[5:]
    assert sorted(first) == sorted(second) == list(range(5))
    assert first != list(range(5)) or second != list(range(5))


def test_sequence_queue_is_bounded():
    model, x, y = model_and_data()
    seq = ArraySequence(x, y, workers=4, max_queue_size=2)
    ahead = []

    class Watch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            with seq.lock:
                ahead.append(len(seq.calls) - (batch + 1))
    model.fit(seq, epochs=1, shuffle=False, verbose=0, callbacks=[Watch()])
    assert max(ahead) <= 2


def test_sequence_refuses_multiprocessing():
    with pytest.raises(ValueError, match="use_multiprocessing=True is not supported"):
        ArraySequence(np.zeros((2, 1)), np.zeros(2), use_multiprocessing=True)
    with pytest.raises(ValueError, match="workers must be a positive int"):
        ArraySequence(np.zeros((2, 1)), np.zeros(2), workers=0)


def run_with_timeout(fn, seconds=60):
    result = {}

    def target():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result["error"] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "fit hung"
    return result.get("error")


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_exception_surfaces_with_traceback(workers):
    model, x, y = model_and_data()
    seq = ArraySequence(x, y, fail_at=3, workers=workers)
    error = run_with_timeout(lambda: model.fit(seq, epochs=2, shuffle=False,
                                               verbose=0))
    if workers == 1:  # read in the training loop itself: the exception unchanged
        assert isinstance(error, ValueError)
        cause = error
    else:
        assert isinstance(error, DataWorkerError)
        assert "ArraySequence[3] raised ValueError" in str(error)
        cause = error.__cause__
        assert isinstance(cause, ValueError)
    assert str(cause) == "bad batch 3"
    frames = [f.name for f in traceback.extract_tb(cause.__traceback__)]
    assert "raise_from_worker" in frames
    assert not data_threads()
    assert seq.epoch_ends == 1  # the epoch was closed


def test_threads_stop_when_training_stops_or_a_callback_fails():
    model, x, y = model_and_data()
    seq = ArraySequence(x, y, workers=3)

    class Stop(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True
    assert run_with_timeout(lambda: model.fit(seq, epochs=3, verbose=0,
                                              callbacks=[Stop()])) is None
    assert not data_threads()

    class Boom(Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyError("boom")
    error = run_with_timeout(lambda: model.fit(seq, epochs=3, verbose=0,
                                               callbacks=[Boom()]))
    assert isinstance(error, KeyError)
    assert not data_threads()


# ------------------------------------------------------------------ callback protocol
def test_one_logs_dict_per_epoch_and_history_last():
    model, x, y = model_and_data()
    seen = []

    class Adds(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs)
            logs["extra"] = float(epoch)

    class Reads(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs)
    h = model.fit(x, y, batch_size=BS, epochs=2, verbose=0, callbacks=[Adds(), Reads()])
    assert seen[0] is seen[1] and seen[2] is seen[3] and seen[0] is not seen[2]
    assert h.history["extra"] == [0.0, 1.0]  # History runs after the user's callbacks


def test_history_passed_in_callbacks_is_reused():
    model, x, y = model_and_data()
    mine = History()
    h = model.fit(x, y, batch_size=BS, epochs=2, verbose=0, callbacks=[mine])
    assert h is mine and model.history is mine
    assert len(mine.history["loss"]) == 2


def test_stop_training_is_checked_after_every_batch():
    model, x, y = model_and_data()
    batches_run = []

    class StopAt(Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches_run.append(batch)
            if batch == 1:
                self.model.stop_training = True
    h = model.fit(x, y, batch_size=BS, epochs=3, verbose=0, validation_split=0.2,
                  callbacks=[StopAt()])
    assert batches_run == [0, 1]
    assert h.epoch == [0] and "val_loss" in h.history  # the epoch still ends


def test_progress_bar_on_a_generator_of_unknown_length(capsys):
    model, x, y = model_and_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(batches(x, y), epochs=1, verbose=2)
    assert "5/5" in capsys.readouterr().out
