"""Fusion as a model pass (fastconv/fusion.py): the step compiler on chains and graphs,
every pattern of the table fused = unfused bit for bit in inference and training, a
layer between a Conv2D and its pooling, and what summary() shows."""
import numpy as np
import pytest

import fastconv
from fastconv import conv
from fastconv import fusion
from fastconv import layers as L
from fastconv.models import Sequential


def spy(monkeypatch, name):
    """Record the results of the fused forward / backward of the table's entry name:
    returns {"forward": [(training, fused?)], "backward": [fused? or "done"]}."""
    pattern = next(p for p in fusion.PATTERNS if p.name == name)
    seen = {"forward": [], "backward": []}
    if pattern.forward is not None:
        forward = pattern.forward

        def spy_forward(a, b, x, training, tile):
            out = forward(a, b, x, training, tile)
            seen["forward"].append((training, out is not None))
            return out
        monkeypatch.setattr(pattern, "forward", spy_forward)
    if pattern.backward is not None:
        backward = pattern.backward

        def spy_backward(a, b, grad, input_grad):
            out = backward(a, b, grad, input_grad)
            seen["backward"].append("done" if out is None else out is not fusion.UNFUSED)
            return out
        monkeypatch.setattr(pattern, "backward", spy_backward)
    return seen


def fused_names(model, mode):
    return [(step.pattern.name, tuple(layer.name for layer in step.layers))
            for step in model._steps(mode) if step.pattern is not None]


# --------------------------------------------------------------------------- compiler
def built(*layers, shape=(12, 12, 4)):
    model = Sequential([L.Input(shape)] + list(layers))
    return [layer for layer in model.layers]


def test_a_pair_fuses_only_when_the_first_output_goes_to_the_second_alone():
    """On a graph, conv -> pool fuses when the pool is the conv's only consumer and the
    conv the pool's only input; a second consumer of the conv's output (a residual
    branch) or a second input of the pool turns it off."""
    conv2d, pool, flatten = built(L.Conv2D(4, 3, activation="relu"),
                                  L.AveragePooling2D(2), L.Flatten())
    chain = fusion.chain([conv2d, pool, flatten])
    assert [n.consumers for n in chain] == [(1,), (2,), ()]
    steps = fusion.compile_steps(chain, fusion.INFERENCE)
    assert [s.pattern and s.pattern.name for s in steps] == ["conv_avg_pool", None]
    assert steps[0].layers == (conv2d, pool) and steps[0].indices == (0, 1)
    branched = [fusion.Node(0, conv2d, (), (1, 2)), fusion.Node(1, pool, (0,), (2,)),
                fusion.Node(2, flatten, (0, 1), ())]
    assert all(s.pattern is None
               for s in fusion.compile_steps(branched, fusion.INFERENCE))
    joined = [fusion.Node(0, conv2d, (), (2,)), fusion.Node(1, flatten, (), (2,)),
              fusion.Node(2, pool, (0, 1), ())]
    assert all(s.pattern is None for s in fusion.compile_steps(joined, fusion.INFERENCE))
    # off, or the pool run linear (a fused loss's output layer): every layer alone
    assert len(fusion.compile_steps(chain, fusion.INFERENCE, fuse=False)) == 3
    steps = fusion.compile_steps(fusion.chain([conv2d, pool]), fusion.INFERENCE,
                                 linear=1)
    assert [s.name for s in steps] == [conv2d.name, pool.name + " (linear part)"]


@pytest.mark.parametrize("pool, act, mode, want", [
    (L.AveragePooling2D(2), "tanh", fusion.TRAINING, "conv_avg_pool"),
    (L.AveragePooling2D(2), None, fusion.INFERENCE, "conv_avg_pool"),
    (L.AveragePooling2D(2, padding="same"), "tanh", fusion.TRAINING,
     "tanh_avg_pool_grad"),
    (L.AveragePooling2D(2, padding="same"), "tanh", fusion.INFERENCE, None),
    (L.AveragePooling2D(2, strides=1), "relu", fusion.INFERENCE, None),
    (L.AveragePooling2D(3), "relu", fusion.TRAINING, None),
    (L.MaxPooling2D(2), "relu", fusion.INFERENCE, "conv_max_pool"),
    (L.MaxPooling2D(2), "relu", fusion.TRAINING, None),
    (L.MaxPooling2D(2), "tanh", fusion.INFERENCE, None),
    (L.MaxPooling2D(2), "sigmoid", fusion.INFERENCE, None),
])
def test_the_pattern_table_decides_from_types_hyperparameters_and_pass(pool, act, mode,
                                                                       want):
    layers = built(L.Conv2D(4, 3, activation=act), pool)
    steps = fusion.compile_steps(fusion.chain(layers), mode)
    assert [s.pattern.name if s.pattern else None for s in steps][0] == want
    if want is None:
        assert len(steps) == 2


def test_channels_first_layers_do_not_fuse():
    layers = built(L.Conv2D(4, 3, data_format="channels_first"),
                   L.AveragePooling2D(2, data_format="channels_first"), shape=(4, 12, 12))
    for mode in (fusion.INFERENCE, fusion.TRAINING):
        assert all(s.pattern is None
                   for s in fusion.compile_steps(fusion.chain(layers), mode))


def test_layers_know_nothing_of_their_neighbours():
    """The old neighbour protocol is gone from the layers (fusion is the model's)."""
    from fastconv.layers import base
    for name in ("_set_next", "_forward_pooled", "_backward_into", "_max_pool_next",
                 "_winograd_tile", "_fuses"):
        for cls in L.LAYER_CLASSES.values():
            assert not hasattr(cls, name), (cls, name)
    assert not hasattr(base, "PREV_DONE")


# --------------------------------------------------------------------------- bits
def train_pair(make, x, y, steps=3):
    """make() twice, fused and with fusion off: predict and `steps` training steps on
    each; returns the two models and their predictions."""
    fused, plain = make(), make()
    plain._fusion = False
    for _ in range(steps):
        fused.train_on_batch(x, y)
        plain.train_on_batch(x, y)
    return fused, plain, fused.predict(x, verbose=0), plain.predict(x, verbose=0)


def assert_same_model(fused, plain, got, want):
    np.testing.assert_array_equal(got, want)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["tanh", "relu", None])
def test_conv_avg_pool_fused_equals_unfused(act, dtype, monkeypatch):
    """LeNet-5's pairs: predict and three Adam steps, fused and unfused, bit for bit;
    the fused forward ran where its kernels take the layer (not tanh in float64) and,
    with tanh, the fused gradient (the first Conv2D's whole backward: "done")."""
    seen = spy(monkeypatch, "conv_avg_pool")

    def make():
        fastconv.set_seed(21)
        kw = {"dtype": dtype}
        model = Sequential([
            L.Conv2D(6, 5, activation=act, input_shape=(21, 20, 1),
                     bias_initializer="random_normal", **kw),
            L.AveragePooling2D(2, **kw), L.Conv2D(16, 3, activation=act, **kw),
            L.AveragePooling2D(2, **kw), L.Flatten(**kw),
            L.Dense(10, activation="softmax", **kw)])
        model.compile("adam", "categorical_crossentropy")
        return model
    rng = np.random.default_rng(22)
    x = rng.standard_normal((7, 21, 20, 1)).astype(dtype)
    y = np.eye(10)[rng.integers(0, 10, 7)]
    fused, plain, got, want = train_pair(make, x, y)
    assert_same_model(fused, plain, got, want)
    assert len(fused_names(fused, "training")) == 2 and not fused_names(plain, "training")
    forward_fused = not (act == "tanh" and dtype == "float64")
    assert seen["forward"] == [(True, forward_fused)] * 6 + [(False, forward_fused)] * 2
    assert seen["backward"] == ([True, "done"] * 3 if act == "tanh" else
                                [False, False] * 3)


@pytest.mark.parametrize("channels", [3, 16])  # pixel-row kernels; Winograd in float32
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", None])
def test_conv_max_pool_fused_equals_unfused(act, dtype, channels, monkeypatch):
    """The CIFAR-10 network's pairs: predict and evaluate fused, the training steps on
    the same Winograd tiles, all bit for bit against fusion off."""
    seen = spy(monkeypatch, "conv_max_pool")

    def make():
        fastconv.set_seed(23)
        kw = {"dtype": dtype}
        model = Sequential([
            L.Conv2D(16, 3, activation=act, input_shape=(17, 19, channels), **kw),
            L.MaxPooling2D(2, **kw), L.Dropout(0.25, seed=1, **kw),
            L.Conv2D(32, 3, padding="same", activation=act, **kw),
            L.MaxPooling2D(2, **kw), L.Flatten(**kw),
            L.Dense(4, activation="softmax", **kw)])
        model.compile("rmsprop", "categorical_crossentropy")
        return model
    rng = np.random.default_rng(24)
    x = rng.standard_normal((5, 17, 19, channels)).astype(dtype)
    y = np.eye(4)[rng.integers(0, 4, 5)]
    fused, plain, got, want = train_pair(make, x, y)
    assert_same_model(fused, plain, got, want)
    assert seen["forward"] == [(False, True)] * 2
    assert fused.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    assert [s.winograd_tile() for s in plain._steps("inference")][:4] == \
        [conv._winograd_pool_tile(), None, None, conv._winograd_pool_tile()]


@pytest.mark.parametrize("first", ["conv", "activation"])
def test_tanh_avg_pool_gradient_fused_equals_unfused(first, monkeypatch):
    """A tanh layer before an average pool that the forward does not fuse (a 'same'
    pool of an even map; an Activation layer): the gradient through both in one pass
    (for a first Conv2D, its weight gradient straight from the pool's), bit for bit."""
    seen = spy(monkeypatch, "tanh_avg_pool_grad")

    def make():
        fastconv.set_seed(25)
        head = ([L.Conv2D(6, 5, activation="tanh", input_shape=(20, 20, 1))]
                if first == "conv" else
                [L.Conv2D(6, 5, input_shape=(20, 20, 1)), L.Activation("tanh")])
        model = Sequential(head + [L.AveragePooling2D(2, padding="same"),
                                   L.Conv2D(8, 3, activation="tanh"),
                                   L.AveragePooling2D(2, padding="same"), L.Flatten(),
                                   L.Dense(3)])
        model.compile("adam", "mse")
        return model
    rng = np.random.default_rng(26)
    x = rng.standard_normal((6, 20, 20, 1)).astype(np.float32)
    y = rng.standard_normal((6, 3)).astype(np.float32)
    fused, plain, got, want = train_pair(make, x, y)
    assert_same_model(fused, plain, got, want)
    assert not fused_names(fused, "inference")
    assert seen["backward"] == ([True, "done"] if first == "conv" else [True, True]) * 3


# --------------------------------------------------------------------------- between
def layer_by_layer_steps(layers, loss, optimizer, batches):
    """The independent oracle: each layer's public forward and backward, in order."""
    for x, y in batches:
        out = x
        for layer in layers:
            out = layer(out, training=True)
        _, grad = loss.value_and_gradient(y, out)
        for layer in reversed(layers):
            grad = layer.backward(grad)
        optimizer.apply([g for layer in layers for g in layer.gradients],
                        [w for layer in layers for w in layer.weights])


@pytest.mark.parametrize("between", ["linear", "dropout", "relu"])
@pytest.mark.parametrize("pool", [L.AveragePooling2D, L.MaxPooling2D])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_a_layer_between_conv_and_pool_trains_right_and_does_not_fuse(between, pool,
                                                                      act):
    """Conv2D -> (Activation, Dropout(0.0)) -> pooling: no step fuses the Conv2D, and
    three SGD steps give the weights of the layers run one by one."""
    def make():
        fastconv.set_seed(27)
        middle = {"linear": L.Activation("linear"), "dropout": L.Dropout(0.0),
                  "relu": L.Activation("relu")}[between]
        model = Sequential([L.Conv2D(6, 5, activation=act, input_shape=(16, 16, 1)),
                            middle, pool(2), L.Conv2D(16, 3, activation="relu"),
                            L.Flatten(), L.Dense(3)])
        model.compile(fastconv.optimizers.SGD(learning_rate=0.05), "mse")
        return model
    model, oracle = make(), make()
    for mode in ("inference", "training"):
        assert not fused_names(model, mode)
    assert all(s.winograd_tile() is None for s in model._steps())
    rng = np.random.default_rng(28)
    batches = [(rng.standard_normal((4, 16, 16, 1)).astype(np.float32),
                rng.standard_normal((4, 3)).astype(np.float32)) for _ in range(3)]
    for x, y in batches:
        model.train_on_batch(x, y)
    layer_by_layer_steps(oracle.layers, oracle.loss, oracle.optimizer, batches)
    for a, b in zip(model.get_weights(), oracle.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(),
                                                       make().get_weights()))
    x = batches[0][0]
    out = x
    for layer in oracle.layers:
        out = layer(out)
    np.testing.assert_array_equal(model.predict(x, verbose=0), out)


def test_steps_follow_the_model_changes():
    """The steps are compiled again after add, pop and compile (the fused loss turns the
    last layer's step into its linear part)."""
    model = Sequential([L.Conv2D(4, 3, input_shape=(10, 10, 2))])
    assert fused_names(model, "inference") == []
    model.add(L.AveragePooling2D(2))
    assert [n for n, _ in fused_names(model, "inference")] == ["conv_avg_pool"]
    model.add(L.Flatten())
    model.add(L.Dense(3, activation="softmax"))
    model.compile("sgd", "categorical_crossentropy")
    assert model._steps("training", True)[-1].name.endswith("(linear part)")
    model.pop()
    model.pop()
    model.pop()
    assert fused_names(model, "inference") == []


# --------------------------------------------------------------------------- summary
def test_summary_shows_fused_steps_and_conv_kernels():
    lines = []
    model = fastconv.applications.cifar10_cnn()
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    c1, c2, _, _, c3, c4 = model.layers[:6]
    for layer, step in zip(model.layers, model._steps()):
        if isinstance(layer, L.Conv2D):
            row = next(line for line in lines if line.startswith(f" {layer.name} "))
            assert row.endswith(fusion.forward_algorithm(layer, step.winograd_tile()))
    # c2 and c4 run on the fused max pool's tiles; c3's 15x15 output on F(5x5)
    assert [fusion.forward_algorithm(c, t) for c, t in ((c2, 4), (c3, None), (c4, 4))] \
        == ["winograd_f4", "winograd_f5", "winograd_f4"]
    assert fastconv.explain_conv((32, 15, 15, 32), c3.kernel.shape, padding="same",
                                 data_format="channels_last").algorithm == "winograd_f5"
    pools = [layer.name for layer in model.layers if isinstance(layer, L.MaxPooling2D)]
    assert (f"Fused steps, predict / evaluate:\n  {c2.name} + {pools[0]} (fused): "
            f"conv_max_pool\n  {c4.name} + {pools[1]} (fused): conv_max_pool\n"
            f"Fused steps, training: none") in text
    lines.clear()
    lenet = fastconv.applications.lenet5()
    lenet.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert text.count(": conv_avg_pool") == 4  # two pairs, in both passes
    row = next(line for line in lines if line.startswith(f" {lenet.layers[4].name} "))
    assert row.endswith("  dense")  # C5: one product per image


# ------------------------------------------------------------------- residual add + relu
def residual_model(dtype, three=False):
    fastconv.set_seed(41)
    inp = fastconv.Input((6, 6, 4), dtype=dtype)
    a = L.Conv2D(4, 3, padding="same", dtype=dtype)(inp)
    b = L.Conv2D(4, 1, dtype=dtype)(inp)
    parts = [a, b] + ([L.Conv2D(4, 1, use_bias=False, dtype=dtype)(inp)] if three else [])
    h = L.ReLU(dtype=dtype)(L.Add(dtype=dtype)(parts))
    h = L.Conv2D(5, 3, dtype=dtype)(h)
    out = L.Dense(3, activation="softmax", dtype=dtype)(L.Flatten(dtype=dtype)(h))
    model = fastconv.Model(inp, out)
    model.compile("adam", "categorical_crossentropy")
    return model


@pytest.mark.parametrize("three", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_add_relu_fused_equals_unfused(dtype, three, monkeypatch):
    """The residual sum and its ReLU in one pass: predict and three Adam steps bit for
    bit against the same model unfused; the fused forward ran in both passes."""
    seen = spy(monkeypatch, "add_relu")
    rng = np.random.default_rng(42)
    x = rng.standard_normal((5, 6, 6, 4)).astype(dtype)
    y = np.eye(3)[rng.integers(0, 3, 5)]
    fused, plain = residual_model(dtype, three), residual_model(dtype, three)
    plain.set_weights(fused.get_weights())
    plain._fusion = False
    assert [n for n, _ in fused_names(fused, "training")] == ["add_relu"]
    assert [n for n, _ in fused_names(fused, "inference")] == ["add_relu"]
    for _ in range(3):
        assert fused.train_on_batch(x, y) == plain.train_on_batch(x, y)
    for a, b in zip(fused.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fused.predict(x, verbose=0), plain.predict(x, verbose=0))
    assert seen["forward"] == [(True, True)] * 3 + [(False, True)]


def test_add_relu_takes_a_plain_relu_only():
    pattern = next(p for p in fusion.PATTERNS if p.name == "add_relu")
    for relu, fuses in ((L.ReLU(), True), (L.ReLU(6.0), False),
                        (L.ReLU(negative_slope=0.1), False)):
        assert pattern.matches(L.Add(), relu, fusion.TRAINING) == fuses
    assert not pattern.matches(L.Subtract(), L.ReLU(), fusion.TRAINING)
