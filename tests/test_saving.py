"""Model files (fastconv/saving.py): hostile and damaged files, file modes, Keras names.

Every damaged or crafted file must give a ModelFileError naming the file (a missing
path: FileNotFoundError), quickly and without large allocations; a file that loads must
give back exactly the saved model.
"""
import io
import json
import os
import stat
import struct
import threading
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv import optimizers
from fastconv._random import generator_from_state
from fastconv.models import Sequential
from fastconv.saving import ModelFileError, load_model


# --------------------------------------------------------------------------- helpers
def tiny_model(optimizer="adam"):
    fastconv.set_seed(3)
    model = Sequential([L.Input((6, 5, 2)), L.Conv2D(3, 3, activation="relu"),
                        L.Flatten(), L.Dropout(0.25), L.Dense(4, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 5, 2)).astype(np.float32)
    y = rng.integers(0, 4, 8)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return model, x


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, x, path, file bytes) of a small trained model with optimizer state."""
    model, x = tiny_model()
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    model.save(path)
    return model, x, path, path.read_bytes()


def members(data):
    """[(name, bytes)] of an archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def archive(items, compression=zipfile.ZIP_STORED):
    """Bytes of a zip archive holding ``items`` [(name, bytes)], duplicates allowed."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(buf, "w", compression) as z:
            for name, data in items:
                z.writestr(name, data)
    return buf.getvalue()


def npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def npy_raw(header, data=b"", version=b"\x01\x00"):
    """A .npy file with a hand-written header (any text) and data."""
    h = header.encode("latin1")
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(h)) + h + data


def config_text(data):
    return str(np.load(io.BytesIO(dict(members(data))["config.npy"]))[()])


def with_config(data, text):
    """The archive with its config replaced by ``text`` (a JSON string)."""
    return archive([(n, npy(np.array(text)) if n == "config.npy" else b)
                    for n, b in members(data)])


def with_field(data, edit, raw=None):
    """The archive with ``edit(doc)`` applied to its config; ``raw`` replaces the
    string "__RAW__" in the JSON text (for Infinity, NaN, 1e400, deep nesting)."""
    doc = json.loads(config_text(data))
    edit(doc)
    text = json.dumps(doc)
    if raw is not None:
        text = text.replace('"__RAW__"', raw)
    return with_config(data, text)


def setter(*keys, value="__RAW__"):
    def edit(doc):
        d = doc
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


def assert_identical(loaded, model, x):
    assert loaded.get_config() == model.get_config()
    a, b = loaded.get_weights(), model.get_weights()
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and u.shape == v.shape
        assert u.tobytes() == v.tobytes()
    it_a, slots_a = loaded.optimizer.get_state()
    it_b, slots_b = model.optimizer.get_state()
    assert it_a == it_b and len(slots_a) == len(slots_b)
    for u, v in zip(slots_a, slots_b):
        assert u.dtype == v.dtype and u.tobytes() == v.tobytes()
    assert loaded._rng.bit_generator.state == model._rng.bit_generator.state
    for la, lb in zip(loaded.layers, model.layers):
        if hasattr(lb, "generator"):
            assert la.generator.bit_generator.state == lb.generator.bit_generator.state
    assert loaded.predict(x, verbose=0).tobytes() == model.predict(x, verbose=0).tobytes()


def load_bytes(tmp_path, data, name="case.npz"):
    path = tmp_path / name
    path.write_bytes(data)
    return load_model(path)


# --------------------------------------------------------------------------- item 6
def test_a_saved_model_loads_identically(saved, tmp_path):
    model, x, path, data = saved
    assert_identical(load_bytes(tmp_path, data), model, x)
    # the same archive deflated (savez_compressed style) reads the same
    assert_identical(load_bytes(tmp_path, archive(members(data), zipfile.ZIP_DEFLATED)),
                     model, x)


def test_weighted_metrics_are_saved_and_restored(tmp_path):
    model, x = tiny_model()
    y = np.random.default_rng(1).integers(0, 4, len(x))
    w = np.random.default_rng(2).random(len(x))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    model.fit(x, y, sample_weight=w, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "weighted.npz"
    model.save(path)
    doc = json.loads(config_text(path.read_bytes()))
    assert doc["compile"]["weighted_metrics"] == [
        "accuracy", "sparse_top_k_categorical_accuracy"]
    loaded = load_model(path)
    assert_identical(loaded, model, x)
    logs = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy", "weighted_accuracy",
                         "sparse_top_k_categorical_accuracy"}
    assert loaded.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True) == logs
    # the weighted metrics are weighted: unweighted they would equal accuracy
    acc = (np.argmax(model.predict(x, verbose=0), 1) == y).astype(float)
    np.testing.assert_allclose(logs["weighted_accuracy"], (w * acc).sum() / w.sum(),
                               rtol=1e-12)
    # a model compiled without them saves no such field, and loads without them
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(path)
    assert "weighted_metrics" not in json.loads(config_text(path.read_bytes()))[
        "compile"]
    assert set(load_model(path).evaluate(x, y, sample_weight=w, verbose=0,
                                         return_dict=True)) == {"loss", "accuracy"}


@pytest.mark.parametrize("value", [None, "accuracy", [1], ["accuracy", None],
                                   {"accuracy": 1}])
def test_weighted_metrics_must_be_a_list_of_names(saved, tmp_path, value):
    _, _, _, data = saved
    with pytest.raises(ModelFileError, match=r"case\.npz.*compile\.weighted_metrics"):
        load_bytes(tmp_path, with_field(data, setter("compile", "weighted_metrics",
                                                     value=value)))


def test_unknown_weighted_metrics_and_compile_fields_are_refused(saved, tmp_path):
    _, _, _, data = saved
    with pytest.raises(ModelFileError, match=r"case\.npz"):
        load_bytes(tmp_path, with_field(data, setter("compile", "weighted_metrics",
                                                     value=["no_such_metric"])))
    with pytest.raises(ModelFileError, match=r"case\.npz.*optionally weighted_metrics"):
        load_bytes(tmp_path, with_field(data, setter("compile", "sample_weight_mode",
                                                     value=[])))


def test_unbalanced_npy_header_is_a_model_file_error(saved, tmp_path):
    _, _, _, data = saved
    bad = archive([(n, npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (")
                    if n == "weight_00000.npy" else b) for n, b in members(data)])
    with pytest.raises(ModelFileError, match=r"case\.npz"):
        load_bytes(tmp_path, bad)
    bad = archive([(n, npy_raw("{'descr': '<U5', 'shape': ((((") if n == "config.npy"
                    else b) for n, b in members(data)])
    with pytest.raises(ModelFileError, match=r"case\.npz.*config"):
        load_bytes(tmp_path, bad)


def central_entry(data, name):
    """Offset of ``name``'s central directory record in ``data``."""
    i = data.index(b"PK\x01\x02")
    while data[i + 46:i + 46 + len(name)] != name.encode():
        i = data.index(b"PK\x01\x02", i + 4)
    return i


def test_unknown_compression_method_is_a_model_file_error(saved, tmp_path):
    _, _, _, data = saved
    for name in ("config.npy", "weight_00001.npy"):
        i = central_entry(data, name)
        for method in (99, 12, 14):  # unknown, bzip2, lzma
            bad = data[:i + 10] + struct.pack("<H", method) + data[i + 12:]
            with pytest.raises(ModelFileError, match=r"case\.npz.*compression method"):
                load_bytes(tmp_path, bad)


def test_a_huge_declared_shape_is_refused_before_allocating(saved, tmp_path):
    _, _, _, data = saved
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    bad = archive([(n, npy_raw(header) if n == "weight_00000.npy" else b)
                   for n, b in members(data)])
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"case\.npz.*weight_00000.*shape"):
            load_bytes(tmp_path, bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


@pytest.mark.parametrize("field", [("n_weights",), ("n_optimizer_arrays",),
                                   ("optimizer_iterations",),
                                   ("model", "config", "input_shape")])
@pytest.mark.parametrize("raw", ["Infinity", "-Infinity", "NaN", "1e400"])
def test_non_finite_numbers_in_the_config_are_refused(saved, tmp_path, field, raw):
    _, _, _, data = saved
    edit = setter(*field) if field[-1] != "input_shape" else \
        (lambda doc: doc["model"]["config"].__setitem__("input_shape",
                                                        [6, "__RAW__", 2]))
    with pytest.raises(ModelFileError, match=r"case\.npz.*config"):
        load_bytes(tmp_path, with_field(data, edit, raw))


@pytest.mark.parametrize("value", [[1, 2], "abc", 7, None,
                                   {"model": [], "layers": {}},
                                   {"model": {"bit_generator": "PCG64"}, "layers": {}}])
def test_a_malformed_random_state_is_refused(saved, tmp_path, value):
    _, _, _, data = saved
    with pytest.raises(ModelFileError, match=r"case\.npz"):
        load_bytes(tmp_path, with_field(data, setter("random_state", value=value)))


def test_deeply_nested_json_is_refused(saved, tmp_path):
    _, _, _, data = saved
    deep = "[" * 100000 + "]" * 100000
    with pytest.raises(ModelFileError, match=r"case\.npz.*config"):
        load_bytes(tmp_path, with_field(data, setter("compile", "metrics"), deep))
    deep = '{"a": ' * 50000 + "1" + "}" * 50000
    with pytest.raises(ModelFileError, match=r"case\.npz.*config"):
        load_bytes(tmp_path, with_field(data, setter("random_state", "layers"), deep))


def test_an_unused_deflated_member_is_not_inflated(saved, tmp_path):
    _, _, _, data = saved
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        with z.open("junk.npy", "w", force_zip64=True) as m:
            block = bytes(2**20)
            for _ in range(64):
                m.write(block)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"bomb\.npz.*unexpected entry 'junk"):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_an_architecture_larger_than_its_weights_is_refused_before_building(
        saved, tmp_path):
    _, _, _, data = saved

    def edit(doc):
        doc["model"]["config"]["layers"][-1]["config"]["units"] = 2**19
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"case\.npz.*must have shape"):
            load_bytes(tmp_path, with_field(data, edit))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


@pytest.mark.parametrize("value", [-1, -(2**70), 1.5, "4", True, None, [4], 2**80])
def test_optimizer_iterations_must_be_a_non_negative_int(saved, tmp_path, value):
    _, _, _, data = saved
    with pytest.raises(ModelFileError, match=r"case\.npz.*optimizer_iterations"):
        load_bytes(tmp_path, with_field(data, setter("optimizer_iterations",
                                                     value=value)))


@pytest.mark.parametrize("field,value", [
    ("n_weights", -1), ("n_weights", 5), ("n_weights", 7), ("n_weights", 10**12),
    ("n_weights", "6"), ("n_optimizer_arrays", 3), ("n_optimizer_arrays", -2),
    ("n_optimizer_arrays", 0.0), ("format_version", 2), ("format_version", True),
    ("format", "other"), ("compile", []), ("compile", {"optimizer": "adam"}),
    ("model", None), ("model", {"class_name": "Functional", "config": {}})])
def test_every_config_field_is_checked(saved, tmp_path, field, value):
    _, _, _, data = saved
    with pytest.raises(ModelFileError, match=r"case\.npz"):
        load_bytes(tmp_path, with_field(data, setter(field, value=value)))


@pytest.mark.parametrize("shape", [[], [6, 5], [6, 0, 2], [6, -5, 2], [6, 5.0, 2],
                                   [6, "5", 2], [6, True, 2], [6, 2**40, 2], "652"])
def test_input_shape_must_be_positive_ints(saved, tmp_path, shape):
    _, _, _, data = saved
    with pytest.raises(ModelFileError, match=r"case\.npz"):
        load_bytes(tmp_path, with_field(data, setter("model", "config", "input_shape",
                                                     value=shape)))


def test_unknown_missing_and_duplicate_members_are_refused(saved, tmp_path):
    _, _, _, data = saved
    items = members(data)
    cases = {
        "unexpected entry 'extra.npy'": items + [("extra.npy", npy(np.zeros(2)))],
        "unexpected entry 'weight_00000'": items + [("weight_00000", b"")],
        "'weight_00000.npy' twice": items + [("weight_00000.npy", items[1][1])],
        "holds 4 weight and|missing or unexpected":
            [i for i in items if i[0] != "weight_00003.npy"],
        "missing or unexpected": [i for i in items if i[0] != "weight_00001.npy"]
        + [("weight_00009.npy", dict(items)["weight_00001.npy"])],
    }
    for message, case in cases.items():
        with pytest.raises(ModelFileError, match=rf"case\.npz.*({message})"):
            load_bytes(tmp_path, archive(case))


@pytest.mark.parametrize("array", [np.zeros((3, 3, 2, 3), np.int32),
                                   np.zeros((3, 3, 2, 3), np.float16),
                                   np.zeros((3, 3, 2, 3), np.complex64),
                                   np.zeros((3, 3, 2, 3), np.float64),
                                   np.array("text")])
def test_weights_of_the_wrong_dtype_are_refused(saved, tmp_path, array):
    _, _, _, data = saved
    bad = archive([(n, npy(array) if n == "weight_00000.npy" else b)
                   for n, b in members(data)])
    with pytest.raises(ModelFileError, match=r"case\.npz.*weight_00000.*dtype"):
        load_bytes(tmp_path, bad)


def test_object_arrays_are_refused_without_unpickling(saved, tmp_path):
    _, _, _, data = saved
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (3, 3, 2, 3), }"
    for name in ("weight_00000.npy", "config.npy", "optimizer_00000.npy"):
        bad = archive([(n, npy_raw(header, b"\x80\x04N.") if n == name else b)
                       for n, b in members(data)])
        with pytest.raises(ModelFileError, match=r"case\.npz"):
            load_bytes(tmp_path, bad)


def test_a_big_endian_or_fortran_order_weight_loads_the_same(saved, tmp_path):
    model, x, _, data = saved
    items = dict(members(data))
    kernel = np.load(io.BytesIO(items["weight_00000.npy"]))
    for variant in (kernel.astype(">f4"), np.asfortranarray(kernel)):
        items["weight_00000.npy"] = npy(variant)
        assert_identical(load_bytes(tmp_path, archive(list(items.items()))), model, x)


def test_non_regular_files_fail_quickly(saved, tmp_path):
    _, x, path, _ = saved
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    with pytest.raises(ModelFileError, match=r"folder\.npz.*directory"):
        load_model(folder)
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError):
        load_model(dangling)
    link = tmp_path / "link.npz"
    link.symlink_to(path)
    assert_identical(load_model(link), saved[0], x)

    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match=r"pipe\.npz.*not a regular file"):
        load_fifo(fifo)
    link_to_fifo = tmp_path / "to_pipe.npz"
    link_to_fifo.symlink_to(fifo)
    with pytest.raises(ModelFileError, match=r"to_pipe\.npz.*not a regular file"):
        load_fifo(link_to_fifo)


def load_fifo(fifo):
    """load_model(fifo) in a thread; fails the test if it blocks in open()."""
    outcome = []

    def run():
        try:
            outcome.append(load_model(fifo))
        except Exception as exc:
            outcome.append(exc)
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # release the reader stuck in open()
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
        pytest.fail("load_model blocked on a FIFO")
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]


def test_generator_and_optimizer_states_are_checked():
    good = np.random.default_rng(1).bit_generator.state
    assert generator_from_state(good).bit_generator.state == good
    bad = [dict(good, state={"state": -1, "inc": 3}),
           dict(good, state={"state": 1, "inc": 2**128 + 1}),
           dict(good, state={"state": 1, "inc": 4}),
           dict(good, state={"state": 1.0, "inc": 3}),
           dict(good, has_uint32=2), dict(good, uinteger=2**32),
           dict(good, extra=1), [good], None]
    for state in bad:
        with pytest.raises(ValueError, match="where.*PCG64"):
            generator_from_state(state, "where")
    opt = optimizers.Adam()
    w = np.zeros(3, np.float32)
    for iterations in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="iterations must be a non-negative int"):
            opt.set_state(iterations, [], [w])
    with pytest.raises(TypeError, match="floating-point"):
        opt.set_state(1, [np.zeros(3, np.int64), np.zeros(3, np.float32)], [w])
    with pytest.raises(ValueError, match="expects 2 state arrays"):
        opt.set_state(1, [np.zeros(3, np.float32)], [w])
    opt.set_state(5, [np.ones(3, np.float32), np.ones(3, np.float32)], [w])
    assert opt.iterations == 5


# --------------------------------------------------------------------------- Keras files
@pytest.mark.parametrize("name,magic", [("model.keras", b"PK\x03\x04"),
                                        ("model.h5", b"\x89HDF"),
                                        ("Model.HDF5", b"\x89HDF")])
def test_saving_under_a_keras_name_writes_a_keras_file(tmp_path, name, magic):
    pytest.importorskip("h5py")
    model, _ = tiny_model()
    model.save(tmp_path / name)  # fastconv/keras_files (tests/test_keras_files.py)
    assert (tmp_path / name).read_bytes()[:4] == magic


def test_loading_a_damaged_keras_file_names_it(tmp_path):
    pytest.importorskip("h5py")
    keras = tmp_path / "model.keras"
    keras.write_bytes(archive([("metadata.json", b"{}"), ("config.json", b"{}"),
                               ("model.weights.h5", b"\x89HDF\r\n\x1a\n")]))
    with pytest.raises(ModelFileError, match=r"model\.keras"):
        load_model(keras)
    h5 = tmp_path / "model.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelFileError, match=r"model\.h5"):
        load_model(h5)


# --------------------------------------------------------------------------- item 7
@pytest.fixture
def umask():
    def set_umask(value):
        os.umask(value)
    old = os.umask(0o022)
    os.umask(old)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_file_follows_the_umask(tmp_path, umask, mask):
    model, _ = tiny_model()
    umask(mask)
    path = tmp_path / "model.npz"
    model.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_an_existing_file_keeps_its_mode(tmp_path, umask):
    model, x = tiny_model()
    umask(0o077)
    path = tmp_path / "model.npz"
    for mode in (0o644, 0o640, 0o604):
        path.write_bytes(b"old")
        os.chmod(path, mode)
        model.save(path)
        assert stat.S_IMODE(path.stat().st_mode) == mode
        assert_identical(load_model(path), model, x)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError("disk full")])
def test_an_interrupted_save_leaves_no_temporary_file(tmp_path, monkeypatch, exc):
    model, _ = tiny_model()
    path = tmp_path / "model.npz"
    model.save(path)
    original = path.read_bytes()

    def interrupted(f, **arrays):
        f.write(b"partial data")
        raise exc
    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(type(exc) if isinstance(exc, BaseException) else exc):
        model.save(path)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


# --------------------------------------------------------------------------- fuzzing
def crafted_members(data):
    """(label, archive bytes) of archives with crafted members, all invalid."""
    items = members(data)
    d = dict(items)
    def replace(name, blob):
        return archive([(n, blob if n == name else b) for n, b in items])
    w0 = "weight_00000.npy"
    out = [
        ("huge shape", replace(w0, npy_raw(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (10**12,), }"))),
        ("huge shape, 2.0 header", replace(w0, npy_raw(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2**40, 2**20), }",
            version=b"\x02\x00"))),
        ("negative shape", replace(w0, npy_raw(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-3, 3, 2, 3), }"))),
        ("object dtype", replace(w0, npy_raw(
            "{'descr': '|O', 'fortran_order': False, 'shape': (54,), }", bytes(432)))),
        ("structured dtype", replace(w0, npy(np.zeros((3, 3, 2, 3),
                                                      [("a", "<f4")])))),
        ("void dtype", replace(w0, npy(np.zeros((3, 3, 2, 3), "V4")))),
        ("int dtype", replace(w0, npy(np.zeros((3, 3, 2, 3), np.int32)))),
        ("version 3 header", replace(w0, d[w0][:6] + b"\x03\x00" + d[w0][8:])),
        ("bad magic", replace(w0, b"\x93NUMPX" + d[w0][6:])),
        ("header only", replace(w0, d[w0][:128])),
        ("extra data", replace(w0, d[w0] + b"\0" * 4)),
        ("empty member", replace(w0, b"")),
        ("header too long", replace(w0, npy_raw("{" + " " * 20000 + "}"))),
        ("literal_eval bomb", replace(w0, npy_raw("(" * 5000 + ")" * 5000))),
        ("call in header", replace(w0, npy_raw("__import__('os').getcwd()"))),
        ("config as float", replace("config.npy", npy(np.zeros(3)))),
        ("config as array of strings", replace("config.npy",
                                               npy(np.array([config_text(data)] * 2)))),
        ("config as bytes", replace("config.npy",
                                    npy(np.array(config_text(data).encode())))),
        ("config not json", replace("config.npy", npy(np.array("{not json")))),
        ("config a list", replace("config.npy", npy(np.array("[1, 2]")))),
        ("extra member", archive(items + [("notes.txt", b"hi")])),
        ("directory member", archive(items + [("sub/", b"")])),
        ("path member", archive(items + [("../weight_00000.npy", d[w0])])),
        ("duplicate member", archive(items + [(w0, d[w0])])),
        ("missing config", archive(items[1:])),
        ("missing weight", archive([i for i in items if i[0] != w0])),
        ("missing slot", archive([i for i in items if i[0] != "optimizer_00003.npy"])),
        ("empty archive", archive([])),
        ("swapped weights", archive([(n, d["weight_00001.npy"] if n == w0 else
                                      d[w0] if n == "weight_00001.npy" else b)
                                     for n, b in items])),
        ("slot of another shape", replace("optimizer_00000.npy",
                                          d["optimizer_00002.npy"])),
    ]
    return out


def crafted_fields(data):
    """(label, archive bytes) of archives with crafted config fields, all invalid."""
    cases = []
    fields = [("n_weights",), ("n_optimizer_arrays",), ("optimizer_iterations",),
              ("format_version",), ("model", "config", "name"),
              ("model", "config", "input_shape"), ("model", "config", "layers"),
              ("compile", "metrics"), ("compile", "optimizer"), ("compile", "loss"),
              ("random_state", "model"), ("random_state", "layers"),
              ("model", "class_name")]
    values = [-1, 2**80, 1.5, "x", [], {}, True]
    valid = {("name", "'x'"), ("metrics", "[]")}  # another model, not a broken file
    raws = ["Infinity", "NaN", "-1e400", "[" * 3000 + "]" * 3000]
    for field in fields:
        for value in values:
            if (field[-1], repr(value)) in valid:
                continue
            cases.append((f"{field}={value!r}", with_field(data, setter(*field,
                                                                         value=value))))
        for raw in raws:
            cases.append((f"{field}={raw[:10]}", with_field(data, setter(*field), raw)))
    layer = ("model", "config", "layers", 1, "config")
    for key, value in [("filters", 10**9), ("filters", -3), ("kernel_size", [2**30, 3]),
                       ("units", 0), ("kernel_size", "3"), ("strides", [0, 1])]:
        def edit(doc, key=key, value=value):
            layers = doc["model"]["config"]["layers"]
            target = layers[0] if key in ("filters", "kernel_size", "strides") \
                else layers[-1]
            target["config"][key] = value
        cases.append((f"layer {key}={value!r}", with_field(data, edit)))
    cases.append(("unknown layer class", with_field(
        data, setter(*layer[:-1], "class_name", value="os.system"))))
    cases.append(("duplicate key", with_config(
        data, config_text(data).replace('{"format": ',
                                        '{"n_weights": 1, "format": ', 1))))
    cases.append(("inc even", with_field(
        data, lambda doc: doc["random_state"]["model"]["state"].__setitem__("inc", 2))))
    cases.append(("unknown layer generator", with_field(
        data, lambda doc: doc["random_state"]["layers"].__setitem__(
            "ghost", doc["random_state"]["model"]))))
    return cases


def damaged(data, rng, n):
    """(label, bytes, False) of ``n`` truncations and ``4 n`` byte-flipped copies of
    ``data`` and of its deflated form."""
    cases = []
    deflated = archive(members(data), zipfile.ZIP_DEFLATED)
    for blob, kind in ((data, "stored"), (deflated, "deflated")):
        for off in rng.integers(0, len(blob), n):
            cases.append((f"{kind}, truncated at {off}", blob[:off], False))
        for _ in range(2 * n):
            buf = bytearray(blob)
            for pos in rng.integers(0, len(blob), rng.integers(1, 4)):
                buf[pos] ^= int(rng.integers(1, 256))
            cases.append((f"{kind}, byte flips", bytes(buf), False))
    return cases


def run_fuzz(saved, tmp_path, cases):
    model, x, path, _ = saved
    outcomes = {"identical": 0, "error": 0}
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        for label, blob, must_fail in cases:
            case = tmp_path / "case.npz"
            case.write_bytes(blob)
            try:
                loaded = load_model(case)
            except ModelFileError as exc:
                assert "case.npz" in str(exc), (label, exc)
                outcomes["error"] += 1
                continue
            assert not must_fail, f"{label}: loaded"
            assert_identical(loaded, model, x)
            outcomes["identical"] += 1
        # odd paths: a folder, a FIFO, a dangling symlink, a symlink to the model
        (tmp_path / "folder.npz").mkdir()
        with pytest.raises(ModelFileError, match="folder.npz"):
            load_model(tmp_path / "folder.npz")
        os.mkfifo(tmp_path / "fifo.npz")
        with pytest.raises(ModelFileError, match="fifo.npz"):
            load_fifo(tmp_path / "fifo.npz")
        (tmp_path / "dangling.npz").symlink_to(tmp_path / "gone.npz")
        with pytest.raises(FileNotFoundError):
            load_model(tmp_path / "dangling.npz")
        (tmp_path / "link.npz").symlink_to(path)
        assert_identical(load_model(tmp_path / "link.npz"), model, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, peak
    assert time.perf_counter() - t0 < 60 + 0.2 * len(cases)
    return outcomes


def test_fuzz_load_model(saved, tmp_path):
    """Truncations, byte flips, crafted members and fields, odd paths: each outcome is
    the saved model, bit for bit, or a ModelFileError; peak memory stays small."""
    data = saved[3]
    cases = damaged(data, np.random.default_rng(20240622), 50)
    cases += [(label, blob, True) for label, blob in crafted_members(data)]
    cases += [(label, blob, True) for label, blob in crafted_fields(data)]
    assert len(cases) > 400
    outcomes = run_fuzz(saved, tmp_path, cases)
    assert outcomes["error"] > 350


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_fuzz_load_model_long(saved, tmp_path, seed):
    cases = damaged(saved[3], np.random.default_rng(seed), 600)
    outcomes = run_fuzz(saved, tmp_path, cases)
    assert outcomes["error"] > 0.9 * len(cases)
