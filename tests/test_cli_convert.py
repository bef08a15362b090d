"""``fastconv convert``, ``fastconv predict`` and ``fastconv evaluate`` on every model
format (fastconv/_cli_convert.py), run in-process through fastconv.cli.main."""
import os
import re

import numpy as np
import pytest

import fastconv
from fastconv import applications, cli, models

h5py = pytest.importorskip("h5py")


def lenet(seed=0):
    fastconv.set_seed(seed)
    model = applications.lenet5()
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def x_lenet(n=3):
    return np.random.default_rng(7).random((n, 32, 32, 1), dtype=np.float32)


def predictions(path):
    return models.load_model(path).predict(x_lenet(), verbose=0)


def test_convert_between_model_formats_keeps_predictions(tmp_path, capsys):
    model = lenet()
    want = model.predict(x_lenet(), verbose=0)
    model.save(tmp_path / "a.npz")
    chain = ["a.npz", "b.keras", "c.h5", "d.npz"]
    for src, dst in zip(chain, chain[1:]):
        assert cli.main(["convert", str(tmp_path / src), str(tmp_path / dst)]) == 0
        assert f"wrote {tmp_path / dst} (8 layers, 61,706 parameters)" in \
            capsys.readouterr().out
        np.testing.assert_array_equal(predictions(tmp_path / dst), want)


@pytest.mark.parametrize("weights", ["w.weights.h5", "w.safetensors", "w.h5"])
def test_convert_weights_need_an_architecture(tmp_path, capsys, weights):
    if weights.endswith(".safetensors"):
        pytest.importorskip("safetensors")
    model = lenet(1)
    model.save_weights(tmp_path / weights)
    w = str(tmp_path / weights)
    if not weights == "w.h5":  # a .h5 file may be a whole model: no --model needed
        assert cli.main(["convert", w, str(tmp_path / "m.keras")]) == 1
        assert "holds weights only: give the architecture with --model" in \
            capsys.readouterr().err
    else:
        assert cli.main(["convert", w, str(tmp_path / "m.keras")]) == 1
        assert "holds weights only (no model_config)" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()
    assert cli.main(["convert", w, str(tmp_path / "m.keras"), "--model", "lenet5"]) == 0
    np.testing.assert_array_equal(predictions(tmp_path / "m.keras"),
                                  model.predict(x_lenet(), verbose=0))
    # an architecture from a model file, writing weights again
    other = lenet(2)
    other.save(tmp_path / "arch.npz")
    assert cli.main(["convert", w, str(tmp_path / "w2.safetensors" if
                                       weights != "w.safetensors" else
                                       tmp_path / "w2.weights.h5"),
                     "--model", str(tmp_path / "arch.npz")]) == 0


def test_convert_to_and_from_onnx(tmp_path, capsys):
    pytest.importorskip("onnx")
    from fastconv import layers as L
    kw = dict(data_format="channels_first")
    fastconv.set_seed(3)
    model = models.Sequential([
        L.Input((1, 12, 12)), L.Conv2D(4, 3, activation="relu", **kw),
        L.MaxPooling2D(2, **kw), L.Flatten(**kw), L.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).random((2, 1, 12, 12), dtype=np.float32)
    model.save(tmp_path / "a.keras")
    assert cli.main(["convert", str(tmp_path / "a.keras"), str(tmp_path / "a.onnx")]) == 0
    assert cli.main(["convert", str(tmp_path / "a.onnx"), str(tmp_path / "b.npz"),
                     "--data-format", "channels_first"]) == 0
    back = models.load_model(tmp_path / "b.npz")
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_convert_errors(tmp_path, capsys):
    lenet().save(tmp_path / "a.npz")
    a = str(tmp_path / "a.npz")
    cases = [(["convert", a, a], "the output .* is the input file"),
             (["convert", a, str(tmp_path / "x.txt")], "unknown output format"),
             (["convert", str(tmp_path / "nope.keras"), str(tmp_path / "y.npz")],
              "does not exist"),
             (["convert", a, str(tmp_path / "no" / "y.keras")], "folder"),
             (["convert", a, str(tmp_path / "y.npz"), "--model", "resnet"], None)]
    for argv, message in cases:
        code = cli.main(argv)
        err = capsys.readouterr().err
        if message is None:  # --model is ignored for a whole model file
            assert code == 0
            continue
        assert code == 1, argv
        assert re.search(message, err), err
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "y.npz"]


def test_evaluate_accepts_keras_files(tmp_path, capsys):
    model = lenet()
    model.save(tmp_path / "m.keras")
    assert cli.main(["evaluate", str(tmp_path / "m.keras")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out


# --------------------------------------------------------------------------- predict
def write_png(path, pixels):
    from PIL import Image
    Image.fromarray(pixels).save(path)


def test_predict_prints_class_and_probability(tmp_path, capsys):
    pytest.importorskip("PIL")
    model = lenet(4)
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (32, 32), dtype=np.uint8),
            rng.integers(0, 256, (28, 28), dtype=np.uint8)]  # padded to 32x32
    for i, im in enumerate(imgs):
        write_png(tmp_path / f"{i}.png", im)
    from PIL import Image
    Image.fromarray(imgs[0]).convert("RGB").save(tmp_path / "rgb.jpg", quality=100)
    paths = [str(tmp_path / f) for f in ("0.png", "1.png", "rgb.jpg")]
    names = ",".join(f"n{i}" for i in range(10))
    assert cli.main(["predict", str(tmp_path / "m.keras"), *paths, "--labels", names,
                     "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    x = np.stack([imgs[0], np.pad(imgs[1], 2)])[..., None].astype(np.float32) / 255
    probs = model.predict(x, verbose=0)
    for path, line, p in zip(paths, lines, probs):
        first, second = np.argsort(-p)[:2]
        assert line == (f"{path}: class {first} 'n{first}' (p={p[first]:.4f}), class "
                        f"{second} 'n{second}' (p={p[second]:.4f})")
    # the JPEG: an RGB copy of image 0, converted back to grayscale
    assert lines[2].startswith(paths[2] + ": class ")


def test_predict_errors(tmp_path, capsys):
    pytest.importorskip("PIL")
    lenet().save(tmp_path / "m.npz")
    write_png(tmp_path / "big.png", np.zeros((40, 30), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    from PIL import Image
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "x.bmp")
    m = str(tmp_path / "m.npz")
    cases = [([str(tmp_path / "big.png")], "is 30x40 pixels, the model takes 32x32 "
              r"\(give --resize"),
             ([str(tmp_path / "bad.png")], "not a readable PNG/JPEG image"),
             ([str(tmp_path / "x.bmp")], "a BMP image"),
             ([str(tmp_path / "none.png")], "does not exist")]
    for images, message in cases:
        assert cli.main(["predict", m, *images]) == 1
        err = capsys.readouterr().err
        assert re.search(message, err), err
    assert cli.main(["predict", m, str(tmp_path / "big.png"), "--labels", "a,b"]) == 1
    assert "--labels names 2 classes, the model scores 10" in capsys.readouterr().err
    assert cli.main(["predict", m, str(tmp_path / "big.png"), "--resize"]) == 0
    assert capsys.readouterr().out.startswith(str(tmp_path / "big.png") + ": class ")
