"""The padding, cropping, upsampling, pooling and activation layers inside a functional
graph (a residual Add, an activation layer shared by two branches, the activations
whose gradient needs their input): the model's input gradient against float64 finite
differences, training, and a save / load round trip."""
import numpy as np

import fastconv
from fastconv import layers as L
from fastconv.models import Model, load_model
from fastconv.reference import numeric_gradient


def build(dtype):
    d = dict(dtype=dtype)
    inp = fastconv.Input((6, 6, 2), dtype=dtype)
    a = L.ZeroPadding2D(1, **d)(inp)
    a = L.Conv2D(3, 3, activation="gelu", **d)(a)
    shared = L.Activation("silu", **d)
    b = shared(L.UpSampling2D(2, interpolation="bilinear", **d)(L.SoftPooling2D(**d)(a)))
    c = shared(L.Cropping2D(((1, 1), (2, 0)), **d)(L.ZeroPadding2D(((1, 1), (0, 2)),
                                                                   **d)(a)))
    m = L.Add(**d)([L.ReLU(6.0, **d)(b), L.LeakyReLU(**d)(c)])
    m = L.ELU(**d)(m)
    out = L.Dense(3, activation="hard_swish", **d)(L.GlobalMaxPooling2D(**d)(m))
    return Model(inp, out)


def test_input_gradient_through_the_graph_matches_finite_differences():
    rng = np.random.default_rng(0)
    model = build("float64")
    x = rng.standard_normal((2, 6, 6, 2))
    y = model(x)
    gy = rng.standard_normal(y.shape)
    g = model.backward(gy)
    num = numeric_gradient(lambda a=x: np.sum(gy * model(a)), x)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_training_and_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    fastconv.set_seed(0)
    model = build("float32")
    model.compile("adam", "mse")
    x = rng.standard_normal((16, 6, 6, 2)).astype(np.float32)
    y = rng.standard_normal((16, 3)).astype(np.float32)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=5, batch_size=8, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before
    model.save(tmp_path / "graph.npz")
    loaded = load_model(tmp_path / "graph.npz")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
