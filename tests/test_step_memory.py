"""What a training step keeps alive: the saved activations go as the backward pass
moves back (fastconv/_runner.py, release), and the merges whose gradients need only
their inputs' shapes keep no input array (fastconv/layers/merge.py, _reads_inputs)."""
import numpy as np
import pytest

import fastconv
from fastconv import layers


def _residual(merge):
    inp = fastconv.Input((8, 8, 4))
    a = layers.Conv2D(4, 3, padding="same")(inp)
    a = layers.BatchNormalization()(a)
    a = layers.ReLU()(a)
    b = layers.Conv2D(4, 1)(inp)
    h = merge()([a, b])
    h = layers.ReLU()(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(3, activation="softmax")(h)
    model = fastconv.Model(inp, out)
    model.compile(fastconv.optimizers.SGD(0.1), "categorical_crossentropy")
    return model


@pytest.mark.parametrize("merge", [layers.Add, layers.Subtract, layers.Average,
                                   lambda: layers.Concatenate()])
def test_shape_only_merges_keep_no_input(merge):
    x = [np.random.default_rng(0).standard_normal((5, 8, 8, 4)).astype(np.float32)
         for _ in range(2)]
    layer = merge()
    y = layer(x)
    for kept, a in zip(layer._x, x):
        assert kept.shape == a.shape and kept.dtype == a.dtype
        assert not np.shares_memory(kept, a) and kept.nbytes == a.nbytes
        assert kept.strides == (0,) * a.ndim      # (no data behind it)
    # the gradients still come out right: against the definition
    g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    grads = layer.backward(g)
    if isinstance(layer, layers.Concatenate):
        np.testing.assert_array_equal(np.concatenate(grads, axis=-1), g)
    else:
        sign = [1, -1] if isinstance(layer, layers.Subtract) else [1, 1]
        scale = 0.5 if isinstance(layer, layers.Average) else 1.0
        for s, gi in zip(sign, grads):
            np.testing.assert_allclose(gi, s * scale * g, rtol=1e-7)


def test_multiply_keeps_its_inputs():
    """Multiply's gradient reads the other inputs' values: it keeps them."""
    x = [np.full((2, 3), 2.0, np.float32), np.full((2, 3), 5.0, np.float32)]
    layer = layers.Multiply()
    layer(x)
    g = layer.backward(np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(g[0], 5.0)
    np.testing.assert_array_equal(g[1], 2.0)


def test_a_training_step_leaves_no_saved_activations():
    model = _residual(layers.Add)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 8, 8, 4)).astype(np.float32)
    y = np.eye(3)[rng.integers(0, 3, 6)]
    model.train_on_batch(x, y)
    for layer in model.layers:
        for attr in layer._cache_attrs + ("_y",):
            assert getattr(layer, attr, None) is None, (layer.name, attr)
