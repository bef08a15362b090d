"""The Functional API: Input, layers called on symbolic tensors, Model(inputs, outputs)
with branches, shared layers, several inputs and outputs; the merge layers; graph
errors; Sequential as a chain of the same machinery; save / load of graphs."""
import numpy as np
import pytest

import fastconv
from fastconv import fusion
from fastconv import layers as L
from fastconv import reference as ref
from fastconv.models import Model, ModelFileError, Sequential, load_model
from fastconv.reference import numeric_gradient

F64 = {"dtype": "float64"}


def conv_ref(x, layer):
    """A channels_last 'same'/'valid' stride-1 Conv2D by the naive reference."""
    kh, kw = layer.kernel.shape[:2]
    pads = ((0, 0), (0, 0)) if layer.padding == "valid" else \
        (((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2))
    y = ref.conv2d_forward(ref.to_channels_first(x), layer.kernel.transpose(3, 2, 0, 1),
                           layer.bias, (1, 1), pads)
    return ref.to_channels_last(y)


def residual_model():
    fastconv.set_seed(3)
    x = fastconv.Input((5, 6, 3), dtype="float64")
    c1 = L.Conv2D(3, 3, padding="same", activation="tanh",
                  bias_initializer="random_normal", **F64)
    c2 = L.Conv2D(3, (3, 2), padding="same", bias_initializer="random_normal", **F64)
    add = L.Add(**F64)
    y = add([c2(c1(x)), x])
    dense = L.Dense(4, activation="sigmoid", bias_initializer="random_normal", **F64)
    out = dense(L.Flatten(**F64)(y))
    model = Model(x, out)

    def numpy_forward(xv):
        h = np.tanh(conv_ref(xv, c1))
        h = conv_ref(h, c2) + xv
        z = h.reshape(len(xv), -1) @ dense.kernel + dense.bias
        return 1 / (1 + np.exp(-z))
    return model, numpy_forward


def concat_model():
    fastconv.set_seed(4)
    x = fastconv.Input((6, 6, 2), dtype="float64")
    a = L.Conv2D(3, 1, activation="relu", bias_initializer="random_normal", **F64)
    b = L.Conv2D(2, 3, padding="same", bias_initializer="random_normal", **F64)
    pool = L.AveragePooling2D(2, **F64)
    y = L.Concatenate(**F64)([pool(a(x)), pool_b := L.AveragePooling2D(2, **F64)(b(x))])
    del pool_b
    dense = L.Dense(3, bias_initializer="random_normal", **F64)
    out = dense(L.Flatten(**F64)(y))
    model = Model(x, out)

    def avg(v):
        n, h, w, c = v.shape
        return v.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))

    def numpy_forward(xv):
        ya = avg(np.maximum(conv_ref(xv, a), 0))
        yb = avg(conv_ref(xv, b))
        h = np.concatenate([ya, yb], axis=-1)
        return h.reshape(len(xv), -1) @ dense.kernel + dense.bias
    return model, numpy_forward


def check_gradients(model, x, rtol=1e-6):
    """Input and weight gradients of sum(up * model(x)) vs float64 finite
    differences, with a random upstream gradient."""
    rng = np.random.default_rng(7)
    y = model(x)
    up = rng.standard_normal(y.shape)
    gx = model.backward(up)
    grads = [g.copy() for layer in model.layers for g in layer.gradients]
    assert len(grads) == len(model.weights) > 0

    def f():
        return float(np.sum(up * model(x)))
    np.testing.assert_allclose(gx, numeric_gradient(f, x), rtol=rtol, atol=1e-8)
    for w, g in zip(model.weights, grads):
        np.testing.assert_allclose(g, numeric_gradient(f, w), rtol=rtol, atol=1e-8)


@pytest.mark.parametrize("make", [residual_model, concat_model])
def test_graph_forward_is_the_numpy_composition(make):
    model, numpy_forward = make()
    x = np.random.default_rng(0).standard_normal((3,) + model.input_shape[1:])
    want = numpy_forward(x)
    np.testing.assert_allclose(model(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("make", [residual_model, concat_model])
def test_graph_gradients_match_finite_differences(make):
    model, _ = make()
    x = np.random.default_rng(1).standard_normal((2,) + model.input_shape[1:])
    check_gradients(model, x)


def test_shared_layer_gradient_is_summed_over_its_calls():
    fastconv.set_seed(5)
    x = fastconv.Input((4, 4, 2), dtype="float64")
    shared = L.Conv2D(2, 3, padding="same", activation="tanh",
                      bias_initializer="random_normal", **F64)
    y = shared(shared(x))  # the same layer twice in a row, then on a branch
    z = L.Multiply(**F64)([y, shared(x)])
    model = Model(x, L.Dense(2, **F64)(L.Flatten(**F64)(z)))
    assert len(model._calls) == 6 and model.count_params() == 2 * 3 * 3 * 2 + 2 + 66
    x_val = np.random.default_rng(2).standard_normal((2, 4, 4, 2))
    check_gradients(model, x_val)


def test_fan_out_of_an_input_and_merge_layers_gradients():
    """Every merge layer on tensors read twice: d/dx of sum(up * f) by differences."""
    x = fastconv.Input((3, 4), dtype="float64")
    d = L.Dense(4, bias_initializer="random_normal", **F64)
    h = d(x)
    merged = [L.Add(**F64)([x, h, x]), L.Subtract(**F64)([h, x]),
              L.Multiply(**F64)([x, h]), L.Average(**F64)([x, h]),
              L.Maximum(**F64)([x, h, L.Dense(4, **F64)(x)]),
              L.Minimum(**F64)([h, x]), L.Concatenate(axis=1, **F64)([x, h])]
    out = L.Concatenate(axis=1, **F64)([L.Flatten(**F64)(m) for m in merged])
    model = Model(x, out)
    x_val = np.random.default_rng(3).standard_normal((2, 3, 4))
    check_gradients(model, x_val)


def test_merge_layers_forward_on_arrays_and_broadcasting():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 1, 4))
    np.testing.assert_allclose(L.Add(**F64)([a, b]), a + b)
    np.testing.assert_allclose(L.Subtract(**F64)([a, b]), a - b)
    np.testing.assert_allclose(L.Multiply(**F64)([a, b]), a * b)
    np.testing.assert_allclose(L.Average(**F64)([a, b, a]), (2 * a + b) / 3)
    np.testing.assert_allclose(L.Maximum(**F64)([a, b]), np.maximum(a, b))
    np.testing.assert_allclose(L.Minimum(**F64)([a, b]), np.minimum(a, b))
    np.testing.assert_allclose(L.Concatenate(axis=1, **F64)([a, b]),
                               np.concatenate([a, b], axis=1))
    layer = L.Multiply(**F64)
    layer([a, b])
    up = rng.standard_normal((2, 3, 4))
    ga, gb = layer.backward(up)
    np.testing.assert_allclose(ga, up * b)
    np.testing.assert_allclose(gb, (up * a).sum(axis=1, keepdims=True))
    assert L.Add().compute_output_shape([(None, 3, 1), (None, 1, 4)]) == (None, 3, 4)
    assert L.Concatenate().compute_output_shape([(None, 3, 2), (None, 3, 5)]) == \
        (None, 3, 7)


def test_merge_shape_mismatches_raise_naming_layer_and_shapes():
    x, z = fastconv.Input((4, 3)), fastconv.Input((5, 3))
    with pytest.raises(ValueError, match=r"'bad_add'.*\(None, 4, 3\), \(None, 5, 3\)"):
        L.Add(name="bad_add")([x, z])
    with pytest.raises(ValueError, match=r"'bad_cat'.*\(None, 4, 3\), \(None, 5, 3\)"):
        L.Concatenate(axis=-1, name="bad_cat")([x, z])
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        L.Subtract()([x, x, x])
    with pytest.raises(ValueError, match="list of tensors"):
        L.Add()(x)
    with pytest.raises(ValueError, match="takes one input"):
        L.Dense(2)([x, z])


def test_graph_errors_name_the_layers():
    a, b = fastconv.Input((3,), name="in_a"), fastconv.Input((3,), name="in_b")
    out = L.Dense(2, name="head")(a)
    with pytest.raises(ValueError, match="in_b.*not used"):
        Model([a, b], out)
    other = fastconv.Input((3,), name="in_other")
    mixed = L.Add(name="joins")([L.Dense(3)(a), other])
    with pytest.raises(ValueError, match="graph disconnected: layer 'joins'.*in_other"):
        Model(a, mixed)
    with pytest.raises(ValueError, match="made by fastconv.Input"):
        Model(out, out)
    dup = L.Dense(2, name="head")(a)
    with pytest.raises(ValueError, match="'head' is used by 2 layers"):
        Model(a, [out, dup])
    with pytest.raises(ValueError, match="layer 'head'.*size 3.*shape \\(None, 4\\)"):
        L.Dense(2, name="head2")(a) and out.node.layer(fastconv.Input((4,)))


def test_config_with_a_cycle_raises():
    x = fastconv.Input((3,), name="cx")
    model = Model(x, L.Dense(2, name="d2")(L.Dense(3, name="d1")(x)))
    config = model.get_config()
    d1 = next(e for e in config["layers"] if e["name"] == "d1")
    d2 = next(e for e in config["layers"] if e["name"] == "d2")
    d1["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["d2", 0, 0]
    with pytest.raises(ValueError, match=r"\['d1', 'd2'\] wait on each other"):
        Model.from_config(config)
    d2["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["nowhere", 0, 0]
    with pytest.raises(ValueError, match="'nowhere'"):
        Model.from_config(config)


def two_in_two_out(seed=0):
    fastconv.set_seed(seed)
    img = fastconv.Input((6, 6, 1), name="img")
    meta = fastconv.Input((3,), name="meta")
    h = L.Flatten()(L.MaxPooling2D(2)(L.Conv2D(4, 3, activation="relu")(img)))
    h = L.Concatenate()([h, L.Dense(4, activation="relu")(meta)])
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(1, name="reg")(h)
    return Model([img, meta], [cls, reg])


def two_in_two_out_data(n=48):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((n, 6, 6, 1)).astype(np.float32)
    meta = rng.standard_normal((n, 3)).astype(np.float32)
    labels = (img.mean(axis=(1, 2, 3)) > 0).astype(int) + (meta[:, 0] > 0)
    target = meta.sum(axis=1, keepdims=True)
    return [img, meta], [labels, target]


def test_multi_input_multi_output_trains_and_returns_keras_shaped_results():
    model = two_in_two_out()
    x, y = two_in_two_out_data()
    model.compile(fastconv.optimizers.Adam(0.01),
                  loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], []])
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert set(history.history) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}
    losses = history.history["loss"]
    assert losses[-1] < 0.6 * losses[0]
    after = model.evaluate(x, y, verbose=0)
    assert len(after) == 4 and after[0] < before["loss"]
    # the total is the sum of the outputs' losses (evaluated on the same batches)
    np.testing.assert_allclose(after[0], after[1] + after[2], rtol=1e-5)
    preds = model.predict(x, verbose=0)
    assert isinstance(preds, list) and [p.shape for p in preds] == [(48, 3), (48, 1)]
    by_name = model.predict({"img": x[0], "meta": x[1]}, verbose=0)
    np.testing.assert_array_equal(by_name[1], preds[1])
    out = model.train_on_batch(x, {"cls": y[0], "reg": y[1]}, return_dict=True)
    assert set(out) == {"loss", "cls_loss", "reg_loss", "cls_accuracy"}


def test_dict_outputs_and_loss_weights():
    model = two_in_two_out(1)
    outs = dict(zip(["a", "b"], model.outputs))
    model = Model(model.inputs, outs)
    x, y = two_in_two_out_data(8)
    model.compile("sgd", loss={"a": "sparse_categorical_crossentropy", "b": "mse"},
                  loss_weights={"a": 0.5, "b": 2.0})
    logs = model.evaluate(x, {"a": y[0], "b": y[1]}, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], 0.5 * logs["a_loss"] + 2 * logs["b_loss"],
                               rtol=1e-5)
    assert set(model.predict(x, verbose=0)) == {"a", "b"}


def chain_layers():
    return [L.Conv2D(4, 3, activation="tanh"), L.AveragePooling2D(2),
            L.Conv2D(5, 2, activation="relu"), L.Flatten(),
            L.Dense(3, activation="softmax")]


def test_sequential_and_the_same_chain_built_functionally_are_bit_identical():
    fastconv.set_seed(9)
    seq = Sequential([L.Input((10, 10, 2))] + chain_layers())
    fastconv.set_seed(9)
    layers = chain_layers()
    x_in = fastconv.Input((10, 10, 2))
    h = x_in
    for layer in layers:
        h = layer(h)
    func = Model(x_in, h)
    func.set_weights(seq.get_weights())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 10, 10, 2)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    np.testing.assert_array_equal(seq.predict(x, verbose=0), func.predict(x, verbose=0))
    for model in (seq, func):
        model.compile(fastconv.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # 3 steps
    for a, b in zip(seq.get_weights(), func.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(seq.predict(x, verbose=0), func.predict(x, verbose=0))
    # the same fusions run in the graph: conv + average pool in both passes
    names = [s.pattern.name for s in func._steps(fusion.TRAINING, (True,)) if s.pattern]
    assert names == ["conv_avg_pool"]


def test_a_pair_fuses_only_when_the_first_output_has_one_consumer():
    x = fastconv.Input((8, 8, 1))
    conv = L.Conv2D(2, 3, activation="tanh")
    c = conv(x)
    pooled = L.AveragePooling2D(2)(c)
    side = L.GlobalAveragePooling2D()(c)  # conv's output read twice
    model = Model(x, [L.Flatten()(pooled), side])
    assert all(s.pattern is None for s in model._steps(fusion.INFERENCE))
    alone = Model(x, L.Flatten()(L.AveragePooling2D(2)(L.Conv2D(2, 3)(x))))
    assert [s.pattern.name for s in alone._steps(fusion.INFERENCE) if s.pattern] == \
        ["conv_avg_pool"]


def test_gradient_hooks_see_each_layer_once_with_final_gradients():
    fastconv.set_seed(2)
    x = fastconv.Input((4,))
    shared = L.Dense(4, activation="tanh", name="shared")
    out = L.Dense(2, name="out")(L.Add()([shared(x), shared(shared(x))]))
    model = Model(x, out)
    model.compile(fastconv.optimizers.SGD(0.0), "mse")
    seen = []
    model._gradient_hooks.append(
        lambda layer: seen.append((layer.name, [g.copy() for g in layer.gradients])))
    xv = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    model.train_on_batch(xv, np.zeros((5, 2), np.float32))
    assert [name for name, _ in seen] == ["out", "shared"]
    for name, grads in seen:
        layer = next(la for la in model.layers if la.name == name)
        for g, final in zip(grads, layer.gradients):
            np.testing.assert_array_equal(g, final)


def test_summary_shows_connected_to():
    model = two_in_two_out()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text
    cat = next(la for la in model.layers if isinstance(la, L.Concatenate))
    reads = [t.name for t in cat._inbound_nodes[0].inputs]
    row = next(line for line in lines if line.startswith(f" {cat.name} "))
    assert f"{reads[0]}[0][0], {reads[1]}[0][0]" in row


def test_save_load_round_trip_of_a_functional_model(tmp_path):
    model = two_in_two_out(3)
    x, y = two_in_two_out_data(16)
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"],
                  metrics=[["accuracy"], []])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "graph.npz"
    model.save(path)
    loaded = load_model(path)
    assert [la.name for la in loaded.layers] == [la.name for la in model.layers]
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    h1 = model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0).history
    h2 = loaded.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0).history
    assert h1 == h2


def rewrite_config(path, edit):
    """Rewrite the JSON config of the model file at path through edit(doc)."""
    import io
    import json
    import zipfile
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(str(np.load(io.BytesIO(members["config.npy"]))[()]))
    edit(doc)
    buf = io.BytesIO()
    np.save(buf, np.array(json.dumps(doc)))
    members["config.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def _set_class(doc):
    doc["model"]["config"]["layers"][2]["class_name"] = "Lambda"


def _dangling(doc):
    node = doc["model"]["config"]["layers"][2]["inbound_nodes"][0]
    node["args"][0]["config"]["keras_history"] = ["ghost", 0, 0]


def _cycle(doc):
    layers = doc["model"]["config"]["layers"]
    first = next(e for e in layers if e["inbound_nodes"])
    last = layers[-1]
    first["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = \
        [last["name"], 0, 0]


def _extra_key(doc):
    doc["model"]["config"]["layers"][1]["module"] = "os"


@pytest.mark.parametrize("edit,match", [
    (_set_class, "unknown layer class 'Lambda'"), (_dangling, "'ghost'"),
    (_cycle, "wait on each other"), (_extra_key, "exactly class_name, config")])
def test_bad_functional_files_raise_model_file_error(tmp_path, edit, match):
    model = two_in_two_out(4)
    path = tmp_path / "m.npz"
    model.save(path)
    rewrite_config(path, edit)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def test_input_keeps_working_in_sequential():
    a = Sequential([L.Input((5,)), L.Dense(2)])
    b = Sequential([L.InputLayer((5,)), L.Dense(2)])
    assert a.built and b.built and a.input_shape == b.input_shape == (None, 5)
    t = fastconv.Input((5,), name="named")
    assert t.shape == (None, 5) and t.node.layer.name == "named"
    with pytest.raises(TypeError, match="output of layer"):
        Sequential([L.Dense(2)(t)])


def bn_residual(seed=6):
    fastconv.set_seed(seed)
    x = fastconv.Input((5, 5, 3), dtype="float64")
    h = L.Conv2D(3, 3, padding="same", **F64)(x)
    h = L.BatchNormalization(gamma_initializer="random_normal",
                             beta_initializer="random_normal", **F64)(h)
    h = L.Add(**F64)([L.Activation("tanh", **F64)(h), x])
    h = L.BatchNormalization(gamma_initializer="random_normal",
                             beta_initializer="random_normal", **F64)(h)
    return Model(x, L.Dense(2, **F64)(L.Flatten(**F64)(h)))


def test_batch_normalization_in_a_graph_training_gradients():
    """Training mode (batch statistics): input and trainable-weight gradients of
    sum(up * model(x, training=True)) by finite differences, random gamma / beta."""
    model = bn_residual()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 5, 5, 3))
    up = rng.standard_normal((4, 2))
    model(x, training=True)
    gx = model.backward(up)
    grads = {id(w): g.copy() for layer in model.layers
             for w, g in zip(layer.trainable_weights, layer.trainable_gradients)}

    def f():
        return float(np.sum(up * model(x, training=True)))
    np.testing.assert_allclose(gx, numeric_gradient(f, x), rtol=1e-6, atol=1e-8)
    for w in model.trainable_weights:
        np.testing.assert_allclose(grads[id(w)], numeric_gradient(f, w), rtol=1e-6,
                                   atol=1e-8)


def test_optimizer_sees_trainable_weights_only():
    """BatchNormalization's moving statistics are weights (Keras's order) that the
    optimizer never sees: one fit step moves them by the momentum rule only."""
    model = bn_residual(7)
    conv, bn = model.layers[1], model.layers[2]
    assert isinstance(bn, L.BatchNormalization)
    assert [w.shape for w in model.weights[2:6]] == [(3,)] * 4
    assert len(model.weights) == 2 + 4 + 4 + 2
    assert len(model.trainable_weights) == 2 + 2 + 2 + 2
    model.compile(fastconv.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(0).standard_normal((6, 5, 5, 3))
    batch_mean = conv(x).mean(axis=(0, 1, 2))  # (the weights before the step)
    model.fit(x, np.zeros((6, 2)), epochs=1, batch_size=6, verbose=0)
    assert model.optimizer.iterations == 1
    np.testing.assert_allclose(bn.moving_mean, 0.01 * batch_mean, rtol=1e-10)


def test_normalization_layer_is_trainable_with_frozen_statistics():
    norm = L.Normalization(axis=-1)
    norm.adapt(np.random.default_rng(0).standard_normal((20, 3)) * 4 + 1)
    assert norm.trainable and norm.trainable_weights == []
    x = fastconv.Input((3,))
    model = Model(x, L.Dense(1)(norm(x)))
    model.compile("sgd", "mse")
    stats = [w.copy() for w in norm.weights]
    model.fit(np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32), verbose=0)
    for a, b in zip(stats, norm.weights):
        np.testing.assert_array_equal(a, b)
    assert len(model.trainable_weights) == 2


def test_conv_batch_norm_folds_inside_a_graph():
    """The inference pass folds a conv's BatchNormalization (its output read by the
    BN alone), not one whose conv output is also read by the skip connection."""
    fastconv.set_seed(8)
    x = fastconv.Input((6, 6, 3))
    c1 = L.Conv2D(3, 3, padding="same")(x)
    h = L.BatchNormalization(gamma_initializer="random_normal",
                             moving_mean_initializer="random_normal")(c1)
    c2 = L.Conv2D(3, 1)(h)
    y = L.Add()([L.BatchNormalization()(c2), c2])  # c2 read twice: no fold
    model = Model(x, L.Flatten()(y))
    fused = [s.name for s in model._steps(fusion.INFERENCE) if s.pattern]
    assert fused == [f"{model.layers[1].name} + {model.layers[2].name} (fused)"]
    xv = np.random.default_rng(0).standard_normal((4, 6, 6, 3)).astype(np.float32)
    folded = model.predict(xv, verbose=0)
    model._fusion = False
    np.testing.assert_allclose(folded, model.predict(xv, verbose=0), rtol=1e-5,
                               atol=1e-5)


def test_two_inputs_two_outputs_gradients_and_generator_data():
    fastconv.set_seed(10)
    a, b = fastconv.Input((3,), dtype="float64"), fastconv.Input((2,), dtype="float64")
    h = L.Concatenate(**F64)([L.Dense(4, activation="tanh", **F64)(a), b])
    shared = L.Dense(3, activation="sigmoid", bias_initializer="random_normal", **F64)
    model = Model([a, b], [shared(h), L.Subtract(**F64)([shared(h), L.Dense(
        3, **F64)(b)])])
    rng = np.random.default_rng(5)
    xa, xb = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    ups = [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))]
    model([xa, xb])
    ga, gb = model.backward(ups)
    grads = [g.copy() for layer in model.layers for g in layer.gradients]

    def f():
        y1, y2 = model([xa, xb])
        return float(np.sum(ups[0] * y1) + np.sum(ups[1] * y2))
    np.testing.assert_allclose(ga, numeric_gradient(f, xa), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, numeric_gradient(f, xb), rtol=1e-6, atol=1e-8)
    for w, g in zip(model.weights, grads):
        np.testing.assert_allclose(g, numeric_gradient(f, w), rtol=1e-6, atol=1e-8)
    model.compile("sgd", "mse")

    def batches():
        while True:
            yield [xa, xb], [np.zeros((2, 3)), np.zeros((2, 3))]
    logs = model.fit(batches(), steps_per_epoch=2, epochs=2, verbose=0).history
    assert logs["loss"][1] < logs["loss"][0]
    with pytest.raises(ValueError, match="2 arrays"):
        model.predict([xa], verbose=0)


def test_a_deep_chain_maps_without_recursion():
    """1,500 calls: the graph is walked without recursion."""
    x = fastconv.Input((2,))
    h = x
    for _ in range(1500):
        h = L.Activation("linear")(h)
    model = Model(x, L.Dense(1)(h))
    assert len(model._calls) == 1501
    xv = np.ones((3, 2), np.float32)
    np.testing.assert_array_equal(model(xv), model.layers[-1](xv))


def test_an_output_without_a_loss_leaves_its_layer_alone(tmp_path):
    x = fastconv.Input((3,))
    head = L.Dense(2, name="no_loss_head")
    model = Model(x, [L.Dense(1, name="fit_head")(x), head(x)])
    model.compile(fastconv.optimizers.Adam(0.1), loss=["mse", None])
    before = head.get_weights()
    xv = np.ones((4, 3), np.float32)
    model.fit(xv, [np.ones((4, 1), np.float32), np.zeros((4, 2), np.float32)],
              epochs=2, verbose=0)
    for a, b in zip(before, head.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.evaluate(xv, [np.ones((4, 1)), np.zeros((4, 2))], verbose=0,
                          return_dict=True).keys() == {"loss", "fit_head_loss"}
    model.save(tmp_path / "m.npz")  # the optimizer's state: the trained layer only
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.optimizer.get_state()[0] == model.optimizer.get_state()[0] == 2


def test_input_arrays_are_checked_against_the_inputs():
    model = two_in_two_out(2)
    x, _ = two_in_two_out_data(4)
    with pytest.raises(ValueError, match=r"input 'img'.*\(None, 6, 6, 1\), got \(4, 5, 6, 1\)"):
        model.predict([x[0][:, :5], x[1]], verbose=0)
    with pytest.raises(ValueError, match="keyed by"):
        model.predict({"img": x[0], "other": x[1]}, verbose=0)


def test_layer_and_model_input_output_and_get_layer():
    """Keras's feature extraction: a model from an inner layer's output shares the
    layers (and weights) of the first."""
    model, _ = residual_model()
    add = next(la for la in model.layers if isinstance(la, L.Add))
    assert model.get_layer(add.name) is add and model.get_layer(index=0) is \
        model.layers[0]
    assert model.input is model.inputs[0] and model.output is model.outputs[0]
    assert [t.name for t in add.input] == [model.layers[2].name, model.layers[0].name]
    features = Model(model.input, add.output)
    x = np.random.default_rng(0).standard_normal((2, 5, 6, 3))
    np.testing.assert_array_equal(
        features.predict(x, verbose=0),
        add([model.layers[2](model.layers[1](x)), x]))
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.get_layer("nope")
    shared = L.Dense(2)
    t = fastconv.Input((3,))
    shared(t), shared(t)
    with pytest.raises(ValueError, match="2 calls"):
        shared.output


def test_a_model_called_on_tensors_shares_its_layers():
    fastconv.set_seed(11)
    backbone = Sequential([L.Input((6, 6, 2)), L.Conv2D(3, 3, activation="relu"),
                           L.Flatten()])
    t = fastconv.Input((48,))
    head = Model(t, L.Dense(2, activation="softmax")(L.Dense(4)(t)))
    x = fastconv.Input((6, 6, 2))
    model = Model(x, head(backbone(x)))
    assert model.count_params() == backbone.count_params() + head.count_params()
    xv = np.random.default_rng(0).standard_normal((5, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(xv, verbose=0),
                               head.predict(backbone.predict(xv, verbose=0),
                                            verbose=0), rtol=1e-6)
    model.compile(fastconv.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    model.fit(xv, np.array([0, 1, 0, 1, 1]), epochs=1, verbose=0)
    np.testing.assert_array_equal(backbone.get_weights()[0], model.get_weights()[0])
    with pytest.raises(ValueError, match="expects shape"):
        head(fastconv.Input((47,)))
