"""Sequential: whole-model gradients, training, progress output, save/load/resume,
reproducibility and configuration errors."""
import numpy as np
import pytest

import fastconv
from fastconv import fusion
from fastconv import layers as L
from fastconv.models import ModelFileError, Sequential, load_model
from fastconv.reference import numeric_gradient


def small_net(dtype="float32", dropout=0.0, act_out="softmax", classes=3):
    kw = {"dtype": dtype}
    layers = [L.Conv2D(4, 3, padding="same", activation="tanh", input_shape=(8, 9, 2),
                       **kw),
              L.MaxPooling2D(2, **kw),
              L.Conv2D(5, (2, 3), activation="relu", bias_initializer="random_normal",
                       **kw),
              L.AveragePooling2D((1, 2), **kw),
              L.Flatten(**kw)]
    if dropout:
        layers.append(L.Dropout(dropout, **kw))
    layers += [L.Dense(6, activation="sigmoid", **kw),
               L.Dense(classes, activation=act_out, **kw)]
    return Sequential(layers)


def spy_pattern(monkeypatch, name, forward=None, backward=None):
    """Wrap the fused forward / backward of the fusion table's entry name: each call's
    result goes to forward(out, training) / backward(out)."""
    pattern = next(p for p in fusion.PATTERNS if p.name == name)
    if forward is not None:
        original_forward = pattern.forward

        def spy_forward(a, b, x, training, tile):
            out = original_forward(a, b, x, training, tile)
            forward(out, training)
            return out
        monkeypatch.setattr(pattern, "forward", spy_forward)
    if backward is not None:
        original_backward = pattern.backward

        def spy_backward(a, b, grad, input_grad):
            out = original_backward(a, b, grad, input_grad)
            backward(out)
            return out
        monkeypatch.setattr(pattern, "backward", spy_backward)
    return pattern


def blob_data(n, seed=0):
    """A learnable 4-class problem: which quadrant of a 12x12 image holds a bright blob."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, 4, n)
    for i, q in enumerate(y):
        a, b = (q // 2) * 6, (q % 2) * 6
        x[i, a + 1:a + 5, b + 1:b + 5, 0] += 1.5
    return x, y


def blob_net():
    return Sequential([L.Input((12, 12, 1)), L.Conv2D(4, 3, activation="relu"),
                       L.MaxPooling2D(2), L.Flatten(), L.Dense(16, activation="tanh"),
                       L.Dense(4, activation="softmax")])


# --------------------------------------------------------------------------- gradients
def test_whole_model_gradient_check_float64():
    fastconv.set_seed(0)
    model = small_net("float64")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 9, 2))
    y = model(x)
    up = rng.standard_normal(y.shape)
    gx = model.backward(up)
    grads = [g.copy() for layer in model.layers for g in layer.gradients]

    def f():
        return float(np.sum(up * model(x)))
    np.testing.assert_allclose(gx, numeric_gradient(f, x), rtol=1e-5, atol=1e-8)
    for w, g in zip(model.weights, grads):
        np.testing.assert_allclose(g, numeric_gradient(f, w), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss,act", [("categorical_crossentropy", "softmax"),
                                      ("sparse_categorical_crossentropy", "softmax"),
                                      ("categorical_crossentropy", "sigmoid"),
                                      ("mean_squared_error", "linear")])
def test_training_step_uses_the_loss_gradient(loss, act):
    """SGD(lr=1): the weight change of one train_on_batch is minus the gradient of the
    loss, checked against finite differences of the loss (fused softmax path included)."""
    fastconv.set_seed(1)
    model = small_net("float64", act_out=act)
    model.compile(fastconv.optimizers.SGD(learning_rate=1.0), loss)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 8, 9, 2))
    labels = rng.integers(0, 3, 3)
    y = labels if loss.startswith("sparse") else np.eye(3)[labels]
    before = model.get_weights()
    loss_fn = model.loss

    def f():
        return loss_fn(y, model(x))
    expected = [numeric_gradient(f, w) for w in model.weights]
    value = model.train_on_batch(x, y)
    for w0, w1, g in zip(before, model.get_weights(), expected):
        np.testing.assert_allclose(w0 - w1, g, rtol=1e-5, atol=1e-8)
    model.set_weights(before)
    assert value == pytest.approx(f(), rel=1e-12)


# --------------------------------------------------------------------------- training
def test_learns_a_small_problem():
    fastconv.set_seed(0)
    x, y = blob_data(512)
    model = blob_net()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0)  # 256 steps
    assert history.history["accuracy"][-1] > 0.95
    assert history.history["loss"][-1] < history.history["loss"][0] / 3
    xt, yt = blob_data(200, seed=1)
    loss, acc = model.evaluate(xt, yt, verbose=0)
    assert acc > 0.95
    assert model.predict(xt, verbose=0).argmax(axis=1).tolist() == \
        model.predict(xt, batch_size=7, verbose=0).argmax(axis=1).tolist()


def test_fit_history_validation_and_progress_output(capsys):
    fastconv.set_seed(0)
    x, y = blob_data(100)
    model = blob_net()
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    onehot = np.eye(4, dtype=np.float32)[y]
    history = model.fit(x, onehot, batch_size=32, epochs=2, validation_split=0.2,
                        verbose=0)
    assert capsys.readouterr().out == ""
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == [0, 1] and len(history.history["val_loss"]) == 2
    # the logged validation loss is the loss of the last 20 samples (Keras's split)
    val = model.evaluate(x[80:], onehot[80:], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val[0], rel=1e-6)
    model.fit(x, onehot, batch_size=32, epochs=2, verbose=2,
              validation_data=(x[:10], onehot[:10]))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2"
    for line in (out[1], out[3]):
        assert line.startswith("4/4 - ") and "samples/s" in line
        assert "loss: " in line and "accuracy: " in line and "val_accuracy: " in line


def test_loss_is_batch_size_weighted_mean():
    fastconv.set_seed(0)
    x, y = blob_data(10)
    model = blob_net()
    model.compile(fastconv.optimizers.SGD(learning_rate=0.0),
                  "sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    per_batch = [model.test_on_batch(x[i:i + 4], y[i:i + 4]) for i in (0, 4, 8)]
    expected = (4 * per_batch[0] + 4 * per_batch[1] + 2 * per_batch[2]) / 10
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)


def test_callbacks_can_stop_training():
    class Stop(fastconv.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True
    fastconv.set_seed(0)
    x, y = blob_data(20)
    model = blob_net()
    model.compile("sgd", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=5, callbacks=[Stop()], verbose=0)
    assert history.epoch == [0]


def test_seed_makes_training_reproducible():
    x, y = blob_data(64)

    def run():
        fastconv.set_seed(123)
        model = small_net(dropout=0.3, classes=4)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x[:, :8, :9].repeat(2, axis=3), y, batch_size=8, epochs=2, verbose=0)
        return model.get_weights()
    a, b = run(), run()
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    fastconv.set_seed(124)
    other = small_net(classes=4).get_weights()
    assert not np.array_equal(other[0], a[0])


# --------------------------------------------------------------------------- save / load
def make_trained(tmp_path):
    fastconv.set_seed(5)
    x, y = blob_data(64)
    model = Sequential([L.Input((12, 12, 1)), L.Conv2D(3, 3, activation="relu"),
                        L.AveragePooling2D(2), L.Dropout(0.2), L.Flatten(),
                        L.Dense(8, activation="relu"), L.Dropout(0.1),
                        L.Dense(4, activation="softmax")])
    model.compile(fastconv.optimizers.RMSprop(momentum=0.5),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model, x, y


def test_save_load_identical_predictions_and_resumed_training(tmp_path):
    model, x, y = make_trained(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.optimizer.iterations == model.optimizer.iterations == 4
    # resume: shuffling, dropout masks and optimizer state continue identically
    h1 = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    h2 = loaded.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_save_is_atomic(tmp_path, monkeypatch):
    model, x, _ = make_trained(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    original = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_load_rejects_truncated_corrupted_and_foreign_files(tmp_path):
    model, _, _ = make_trained(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated.npz.*truncated or corrupted"):
        load_model(truncated)
    corrupted = tmp_path / "corrupted.npz"
    mid = len(data) // 3
    corrupted.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64])
                          + data[mid + 64:])
    with pytest.raises(ModelFileError, match="corrupted.npz"):
        load_model(corrupted)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="notes.txt.* is not a fastconv model file"):
        load_model(text)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="other.npz.*no 'config' entry"):
        load_model(other)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.npz")
    assert issubclass(ModelFileError, ValueError)


def test_load_rejects_a_weight_of_the_wrong_shape(tmp_path):
    model, _, _ = make_trained(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    entries = dict(np.load(path, allow_pickle=False))
    name = next(k for k in entries if k.startswith("weight_") and entries[k].ndim >= 2)
    good = entries[name].shape
    entries[name] = np.zeros(tuple(d + 1 for d in good), entries[name].dtype)
    bad = tmp_path / "bad_shape.npz"
    np.savez(bad, **entries)
    with pytest.raises(ModelFileError, match=r"bad_shape.npz.*must have shape"):
        load_model(bad)


def test_load_refuses_unknown_layer_classes(tmp_path):
    import json
    model, _, _ = make_trained(tmp_path)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    doc = json.loads(str(arrays["config"]))
    doc["model"]["config"]["layers"][0]["class_name"] = "os.system"
    arrays["config"] = np.array(json.dumps(doc))
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ModelFileError, match="bad.npz.*unknown layer class 'os.system'"):
        load_model(bad)


# --------------------------------------------------------------------------- structure
def test_summary_counts_and_shapes():
    lines = []
    fastconv.applications.lenet5().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: 61,706" in text and "(None, 28, 28, 6)" in text
    assert "Trainable params: 61,706 (241.04 KB)" in text
    lines.clear()
    fastconv.applications.cifar10_cnn().summary(print_fn=lines.append)
    assert "Total params: 1,250,858" in "\n".join(lines)


def test_build_add_pop_and_weights():
    model = Sequential()
    model.add(L.Dense(4, activation="relu"))
    model.add(L.Dense(2))
    assert not model.built
    model.build((None, 3))
    assert model.output_shape == (None, 2) and model.count_params() == 16 + 10
    assert [w.shape for w in model.get_weights()] == [(3, 4), (4,), (4, 2), (2,)]
    model.add(L.Dense(5))
    assert model.output_shape == (None, 5)
    assert model.pop().units == 5 and model.output_shape == (None, 2)
    with pytest.raises(ValueError, match="has 4 weight arrays, got 3"):
        model.set_weights(model.get_weights()[:3])


# --------------------------------------------------------------------------- errors
def test_configuration_errors():
    x, y = blob_data(8)
    model = blob_net()
    with pytest.raises(ValueError, match=r"compile\(\) before calling fit\(\)"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"compile\(\) before calling evaluate"):
        model.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match="unknown optimizer 'adadelta'"):
        model.compile("adadelta", "mse")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.compile("adam", "hinge")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile("adam", "mse", metrics=["f1"])
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"x and y must have the same number of samples, "
                                         r"got x with 8 and y with 7"):
        model.fit(x, y[:7], verbose=0)
    with pytest.raises(ValueError, match=r"must have rank 4 .*got shape \(None, 12, 12\)"):
        model.fit(x[..., 0], y, verbose=0)
    with pytest.raises(ValueError, match=r"must have size 1 on axis -1"):
        model.predict(np.zeros((2, 12, 12, 3)), verbose=0)
    with pytest.raises(ValueError, match="labels must be in"):
        model.fit(x, y + 4, verbose=0)
    model.compile("adam", "categorical_crossentropy")
    with pytest.raises(ValueError, match="sparse_categorical_crossentropy, or one-hot"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        model.predict(x, batch_size=0)
    with pytest.raises(ValueError, match="validation_split must be a float"):
        model.fit(x, np.eye(4)[y], validation_split=1.0)
    with pytest.raises(ValueError, match="unique names"):
        Sequential([L.Dense(2, name="d"), L.Dense(2, name="d")])
    with pytest.raises(TypeError, match="expects a fastconv layer"):
        Sequential().add("dense")
    with pytest.raises(ValueError, match="not built yet"):
        Sequential([L.Dense(2)]).summary()


def test_progress_bar_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    stream = Terminal()
    bar = fastconv.callbacks.ProgbarLogger(1, stream=stream)
    bar.set_params({"epochs": 2, "steps": 2})
    bar.on_epoch_begin(1)
    bar.on_train_batch_end(0, {"loss": 2.0, "size": 8})
    bar.on_train_batch_end(1, {"loss": 1.5, "size": 8})
    bar.on_epoch_end(1, {"loss": 1.5})
    out = stream.getvalue()
    assert out.startswith("Epoch 2/2\n\r1/2 [")
    assert "ETA" in out and "loss: 2.0000" in out
    final = out.rsplit("\r", 1)[1]
    assert final.startswith("2/2 - ") and "16 samples/s" not in final[:3]
    assert "samples/s - loss: 1.5000" in final and final.endswith("\n")


@pytest.mark.parametrize("hw", [(10, 12), (11, 9)])  # pooled maps even; odd (a tail)
def test_training_step_through_tanh_and_average_pooling(hw, monkeypatch):
    """LeNet-5's pattern, Conv2D(tanh) -> AveragePooling2D(2), whose two gradients the
    training step takes in one fused pass (for the first Conv2D, its parameter
    gradients too): the step still moves every weight by minus the finite-difference
    gradient of the loss, and the fused passes really ran."""
    fastconv.set_seed(3)
    kw = {"dtype": "float64"}
    model = Sequential([L.Conv2D(3, 3, activation="tanh", input_shape=hw + (2,), **kw),
                        L.AveragePooling2D(2, **kw), L.Conv2D(4, 2, activation="tanh", **kw),
                        L.AveragePooling2D(2, **kw), L.Flatten(**kw),
                        L.Dense(3, activation="softmax", **kw)])
    model.compile(fastconv.optimizers.SGD(learning_rate=1.0), "categorical_crossentropy")
    fused = []
    pattern = spy_pattern(monkeypatch, "conv_avg_pool", backward=lambda out: fused.append(
        "done" if out is None else out is not fusion.UNFUSED))
    assert pattern.backward is not None
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3,) + hw + (2,))
    y = np.eye(3)[rng.integers(0, 3, 3)]
    before = model.get_weights()

    def f():
        return model.loss(y, model(x))
    expected = [numeric_gradient(f, w) for w in model.weights]
    model.train_on_batch(x, y)
    for w0, w1, g in zip(before, model.get_weights(), expected):
        np.testing.assert_allclose(w0 - w1, g, rtol=1e-5, atol=1e-8)
    # the second pooling's maps (3x4 / 3x2) are fused with the tanh before them; the
    # first's (8x10 / 9x7, every window inside) with the first Conv2D's whole backward
    # (no input gradient there: its weight gradient takes the pooling's directly)
    assert fused == [True, "done"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["tanh", "relu", None])
def test_predict_and_evaluate_fuse_convolution_and_average_pooling(act, dtype,
                                                                   monkeypatch):
    """predict and evaluate run a Conv2D and the 2x2/2 AveragePooling2D after it as one
    pass where a kernel fuses them (LeNet-5's C1 + S2, C3 + S4): the same outputs as the
    layers one by one (bit for bit but for the fused tanh's ulp), odd map sizes included,
    and the layers still train afterwards."""
    fastconv.set_seed(4)
    kw = {"dtype": dtype}
    model = Sequential([L.Conv2D(6, 5, activation=act, input_shape=(31, 32, 1),
                                 bias_initializer="random_normal", **kw),
                        L.AveragePooling2D(2, **kw), L.Conv2D(16, 5, activation=act, **kw),
                        L.AveragePooling2D(2, **kw), L.Flatten(**kw),
                        L.Dense(10, activation="softmax", **kw)])
    model.compile("sgd", "categorical_crossentropy")
    fused, trained = [], []
    spy_pattern(monkeypatch, "conv_avg_pool", forward=lambda out, training: (
        trained if training else fused).append(out is not None))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 31, 32, 1)).astype(dtype)
    y = np.eye(10)[rng.integers(0, 10, 9)]
    want = model(x)  # layer by layer
    assert not fused
    got = model.predict(x, batch_size=9, verbose=0)  # (one batch: the same products)
    assert len(fused) == 2 and (any(fused) or (act == "tanh" and dtype == "float64"))
    if act == "tanh" and dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(got, want)
    loss = model.loss(y, want)
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=9, verbose=0), loss,
                               rtol=1e-6)
    assert all(layer._x is None for layer in model.layers)  # nothing kept
    before = model.get_weights()
    model.train_on_batch(x, y)  # fused too, keeping the activations for the backward
    assert len(trained) == 2 and trained == fused[:2]
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_conv2d_before_a_max_pool_takes_the_fused_passes_winograd_tiles(monkeypatch):
    """A Conv2D that its model fuses with the MaxPooling2D after it (in inference) runs
    its forward on Winograd F(4x4) (the fused pass's tiles) in every pass, even where
    F(5x5) suits its output better, so that predict gives model(x)'s bits; one before
    anything else keeps F(5x5); the model compiles its steps again when its layers
    change (pop, add)."""
    from fastconv import conv

    def tiles(model, mode="plain"):
        return [step.winograd_tile() for step in model._steps(mode)]
    fastconv.set_seed(3)
    first = L.Conv2D(16, 3, activation="relu", input_shape=(17, 17, 16))
    second = L.Conv2D(16, 3, activation="relu")
    model = Sequential([first, L.MaxPooling2D(2), second, L.Flatten(), L.Dense(3)])
    # 15x15 and 5x5 outputs: F(5x5) by size
    assert conv._winograd_tile_for(15, 15) == conv._winograd_tile_for(5, 5) == 5
    assert tiles(model) == tiles(model, "training") == [4, None, None, None, None]
    steps = model._steps("inference")
    assert [s.name for s in steps][0] == f"{first.name} + {model.layers[1].name} (fused)"
    assert tiles(model, "inference") == [4, None, None, None]
    x = np.random.default_rng(4).standard_normal((3, 17, 17, 16)).astype(np.float32)
    fused = []
    spy_pattern(monkeypatch, "conv_max_pool",
                forward=lambda out, training: fused.append(out is not None))
    np.testing.assert_array_equal(model.predict(x, verbose=0), model(x))
    assert fused == [True]  # fused on F(4x4)
    single = Sequential([L.Conv2D(16, 3, input_shape=(17, 17, 16)), L.MaxPooling2D(2)])
    assert tiles(single) == [4, None]
    single.pop()
    assert tiles(single) == [None]
    single.add(L.MaxPooling2D(3))  # (not fused: 3x3 windows)
    assert tiles(single) == [None, None]
    assert all(step.pattern is None for step in single._steps("inference"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", None])
def test_predict_fuses_convolution_and_max_pooling(act, dtype, monkeypatch):
    """predict and evaluate run a Conv2D on the pixel-row kernels and the 2x2/2
    MaxPooling2D after it as one pass (the CIFAR-10 network's pairs): the same outputs
    as the layers one by one, bit for bit, odd map sizes included; a training step runs
    them one by one (its backward pass needs the full-size activations)."""
    fastconv.set_seed(6)
    kw = {"dtype": dtype}
    model = Sequential([L.Conv2D(32, 3, padding="same", activation=act,
                                 input_shape=(18, 17, 3), **kw),
                        L.Conv2D(32, 3, activation=act, **kw), L.MaxPooling2D(2, **kw),
                        L.Dropout(0.25, **kw), L.Conv2D(64, 3, activation=act, **kw),
                        L.MaxPooling2D(2, **kw), L.Flatten(**kw),
                        L.Dense(10, activation="softmax", **kw)])
    model.compile("rmsprop", "categorical_crossentropy")
    calls = []
    spy_pattern(monkeypatch, "conv_max_pool",
                forward=lambda out, training: calls.append((training, out is not None)))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 18, 17, 3)).astype(dtype)
    y = np.eye(10)[rng.integers(0, 10, 6)]
    want = model(x)  # layer by layer
    assert not calls
    got = model.predict(x, batch_size=6, verbose=0)
    assert calls == [(False, True)] * 2
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(model.evaluate(x, y, batch_size=6, verbose=0),
                               model.loss(y, want), rtol=1e-6)
    calls.clear()
    before = model.get_weights()
    model.train_on_batch(x, y)
    assert not calls and all(step.pattern is None for step in model._steps("training"))
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    np.testing.assert_array_equal(model.predict(x, batch_size=6, verbose=0), model(x))


def test_inference_arena_reuses_arrays_between_passes_only():
    """The kernels' outputs of one inference pass are reused by the next
    (fastconv/_arena.py): the same arrays for the same shapes, new ones otherwise, never
    two live at once in a pass; only inside an active arena, one per thread."""
    import threading

    from fastconv import _arena
    arena = _arena.Arena()
    with arena:
        a = _arena.empty((3, 4), np.float32)
        b = _arena.empty((3, 4), np.float32)
        c = _arena.empty((3, 4), np.float64)
        seen = []
        t = threading.Thread(target=lambda: seen.append(_arena.empty((3, 4), np.float32)))
        t.start()
        t.join()
        assert seen[0] is not a and seen[0] is not b  # no arena in that thread
        with pytest.raises(RuntimeError, match="already active"):
            with arena:
                pass
    assert a is not b and arena.nbytes() == 2 * 48 + 96
    with arena:
        again = {id(_arena.empty((3, 4), np.float32)) for _ in range(3)}
        assert id(_arena.empty((3, 4), np.float64)) == id(c)
    assert {id(a), id(b)} < again  # both reused, a third one new
    assert _arena.empty((3, 4), np.float32) is not a  # outside: plain np.empty


def test_arena_hands_out_again_within_a_pass_what_nothing_refers_to():
    """Inside a pass an array nobody refers to any more (no variable, no view) is handed
    out again for its shape and dtype; one still referred to, directly or through a
    view, never is; the next pass gets every array of this one."""
    from fastconv import _arena
    arena = _arena.Arena()
    with arena:
        a = _arena.empty((5, 2), np.float32)
        a_id = id(a)
        b = _arena.empty((5, 2), np.float32)
        del a
        c = _arena.empty((5, 2), np.float32)
        assert id(c) == a_id and c is not b      # a's array, recycled
        view = c.reshape(-1)
        del c
        d = _arena.empty((5, 2), np.float32)
        assert d is not view.base and d is not b  # a view keeps its base out
        assert _arena.empty((5, 2), np.float64).dtype == np.float64
    assert arena.nbytes() == 3 * 40 + 80
    with arena:
        taken = [_arena.empty((5, 2), np.float32) for _ in range(4)]
    assert {id(view.base), id(b), id(d)} < {id(t) for t in taken}


def test_predictions_survive_later_passes_and_match_the_layers():
    """predict hands out copies: later predictions (which reuse the pass's arrays) leave
    earlier results alone, and every prediction equals the layers run one by one."""
    fastconv.set_seed(6)
    model = Sequential([L.Conv2D(8, 3, activation="relu", input_shape=(12, 12, 3)),
                        L.MaxPooling2D(2), L.Conv2D(4, 3, padding="same"),
                        L.GlobalAveragePooling2D()])
    model.compile("sgd", "mse")
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((5, 12, 12, 3)).astype(np.float32) for _ in range(3)]
    first = [model.predict(x, verbose=0) for x in xs]
    kept = [p.copy() for p in first]
    for x, p, k in zip(xs, first, kept):
        np.testing.assert_array_equal(p, k)
        np.testing.assert_array_equal(model.predict(x, verbose=0), model(x))
    assert model._pass_arena().nbytes() > 0
    # a pass that fails inside leaves the arena inactive: the next one runs
    layer = model.layers[2]

    def boom(x, training=False):
        raise RuntimeError("boom")
    layer.forward = boom
    with pytest.raises(RuntimeError, match="boom"):
        model.predict(xs[0], verbose=0)
    del layer.forward
    from fastconv import _arena
    assert getattr(_arena._local, "arena", None) is None
    np.testing.assert_array_equal(model.predict(xs[0], verbose=0), kept[0])
    np.testing.assert_allclose(model.evaluate(xs[1], first[1], verbose=0), 0, atol=1e-12)


def test_training_steps_reusing_arrays_match_steps_without():
    """Training steps take the kernels' outputs from the model's arena (the arrays of
    the step before): several steps, with a prediction between them, must move the
    weights exactly as the same steps run through the public layer-by-layer API, which
    allocates everything afresh."""
    def make():
        fastconv.set_seed(8)
        model = Sequential([L.Conv2D(6, 3, activation="tanh", input_shape=(10, 10, 2)),
                            L.AveragePooling2D(2), L.Conv2D(8, 2, activation="relu"),
                            L.MaxPooling2D(2), L.Flatten(), L.Dense(3)])
        model.compile(fastconv.optimizers.SGD(learning_rate=0.1), "mse")
        return model
    rng = np.random.default_rng(9)
    batches = [(rng.standard_normal((4, 10, 10, 2)).astype(np.float32),
                rng.standard_normal((4, 3)).astype(np.float32)) for _ in range(3)]
    fast, plain = make(), make()
    for x, y in batches:
        fast.train_on_batch(x, y)
        fast.predict(batches[0][0], verbose=0)  # a pass of other use in between
        out = plain(x, training=True)
        _, grad = plain.loss.value_and_gradient(y, out)
        plain.backward(grad)
        plain.optimizer.apply([g for layer in plain.layers for g in layer.gradients],
                              plain.weights)
    assert fast._pass_arena().nbytes() > 0
    for a, b in zip(fast.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_steps_with_fused_convolution_and_pooling_equal_unfused(dtype,
                                                                        monkeypatch):
    """In a training step a Conv2D on the wide kernels writes its activations and their
    2x2 average pool in one pass: three Adam steps of a LeNet-5-shaped model move the
    weights exactly as with the two layers run one by one."""
    def make():
        fastconv.set_seed(10)
        kw = {"dtype": dtype}
        act = "tanh" if dtype == "float32" else "relu"  # (tanh fuses in float32)
        model = Sequential([L.Conv2D(6, 5, activation=act, input_shape=(17, 18, 1), **kw),
                            L.AveragePooling2D(2, **kw), L.Conv2D(16, 3, **kw),
                            L.AveragePooling2D(2, **kw), L.Flatten(**kw),
                            L.Dense(10, activation="softmax", **kw)])
        model.compile("adam", "categorical_crossentropy")
        return model
    fused, plain = make(), make()
    plain._fusion = False
    calls = []
    spy_pattern(monkeypatch, "conv_avg_pool",
                forward=lambda out, training: calls.append(out is not None))
    rng = np.random.default_rng(11)
    for _ in range(3):
        x = rng.standard_normal((5, 17, 18, 1)).astype(dtype)
        y = np.eye(10)[rng.integers(0, 10, 5)]
        fused.train_on_batch(x, y)
        plain.train_on_batch(x, y)
    assert calls == [True, True] * 3
    assert all(step.pattern is None for step in plain._steps("training"))
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_predictions_in_several_threads_at_once_are_each_right():
    """Each thread's passes take arrays from an arena of their own: predictions made in
    four threads at once, on different inputs, equal those made one at a time."""
    import threading
    fastconv.set_seed(12)
    model = Sequential([L.Conv2D(6, 5, activation="tanh", input_shape=(20, 20, 1)),
                        L.AveragePooling2D(2), L.Conv2D(8, 3, activation="relu"),
                        L.MaxPooling2D(2), L.Flatten(), L.Dense(4)])
    rng = np.random.default_rng(13)
    xs = [rng.standard_normal((6, 20, 20, 1)).astype(np.float32) for _ in range(4)]
    want = [model.predict(x, verbose=0) for x in xs]
    got, errors = [[] for _ in xs], []

    def work(k):
        try:
            for _ in range(15):
                got[k].append(model.predict(xs[k], verbose=0))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        for g in got[k]:
            np.testing.assert_array_equal(g, want[k])


# --------------------------------------------------------------------------- hardening
def _arena_bytes_after(model, sizes):
    x = np.random.default_rng(0).standard_normal((max(sizes), 12, 12, 1)).astype(np.float32)
    for n in sizes:
        model.predict(x[:n], batch_size=n, verbose=0)
    return model._pass_arena().nbytes()


def test_a_model_keeps_the_arrays_of_its_last_pass_only():
    """Predictions on many batch sizes (a server answering requests of n images) leave
    the model holding one pass's arrays, those of the last size, not one set per size."""
    fastconv.set_seed(3)
    one = _arena_bytes_after(blob_net(), [7])
    assert one > 0
    assert _arena_bytes_after(blob_net(), [5, 9, 13, 2, 11, 7]) == one
    model = blob_net()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = blob_data(16)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    trained = model._pass_arena().nbytes()
    model.predict(x[:7], batch_size=7, verbose=0)
    assert model._pass_arena().nbytes() == one != trained


def test_the_arena_of_a_finished_thread_is_released():
    import gc
    import threading
    import weakref
    model = blob_net()
    x = blob_data(4)[0]
    refs = []

    def work():
        model.predict(x, verbose=0)
        refs.append(weakref.ref(model._pass_arena()))
    for _ in range(3):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    gc.collect()
    assert len(refs) == 3 and all(r() is None for r in refs)
    assert model._pass_arena() is model._pass_arena()  # this thread keeps its own


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy",
                                  "categorical_crossentropy"])
def test_every_path_computes_one_loss_for_a_saturated_prediction(loss):
    """fit, train_on_batch, evaluate, test_on_batch and val_loss take the cross-entropy
    of a softmax output from its logits: a prediction saturated at logits (100, 0, 0)
    for label 2 costs lse(z) - z_2 = 100 + log(1 + 2 e^-100) = 100 everywhere (not
    -log(1e-7) = 16.1 from clipped probabilities)."""
    model = Sequential([L.Input((2,)), L.Dense(3, activation="softmax")])
    model.compile(fastconv.optimizers.SGD(0.0), loss)
    w = np.zeros((2, 3), np.float32)
    w[0, 0] = 100.0
    model.set_weights([w, np.zeros(3, np.float32)])
    x = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    labels = np.array([2, 1])
    y = labels if loss.startswith("sparse") else np.eye(3, dtype=np.float32)[labels]
    want = (100.0 + np.log(3.0)) / 2  # second sample: logits 0, 0, 0
    assert model.evaluate(x, y, verbose=0) == pytest.approx(want, rel=1e-6)
    assert model.test_on_batch(x, y) == pytest.approx(want, rel=1e-6)
    assert model.train_on_batch(x, y) == pytest.approx(want, rel=1e-6)
    hist = model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False,
                     validation_data=(x, y)).history
    assert hist["loss"][0] == pytest.approx(want, rel=1e-6)
    assert hist["val_loss"][0] == pytest.approx(want, rel=1e-6)


def test_empty_batches_are_refused_with_a_clear_message():
    model = blob_net()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((0, 12, 12, 1), np.float32), np.zeros(0, np.int64)
    for method in (model.train_on_batch, model.test_on_batch, model.evaluate):
        with pytest.raises(ValueError, match=rf"{method.__name__}\(\) needs at least one "
                                             r"sample, got x of shape \(0, 12, 12, 1\)"):
            method(x, y)
    xs, ys = blob_data(4)
    with pytest.raises(ValueError, match="needs at least one sample, got validation_data"):
        model.fit(xs, ys, validation_data=(x, y), verbose=0)
    assert model.predict(x, verbose=0).shape == (0, 4)  # an empty batch, an empty result
