"""The ``fastconv`` command, run as ``python -m fastconv`` in a subprocess on tiny data."""
import gzip
import importlib.util
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

import fastconv
from fastconv import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
HAS_MODELS = importlib.util.find_spec("fastconv.applications") is not None
needs_models = pytest.mark.skipif(not HAS_MODELS, reason="fastconv.applications missing")


def run(*args, env=None, timeout=120):
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("FASTCONV_DEBUG", None)
    e["OMP_NUM_THREADS"] = e.get("OMP_NUM_THREADS", "1")
    if env:
        e.update(env)
    p = subprocess.run([sys.executable, "-m", "fastconv", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env=e)
    return p.returncode, p.stdout, p.stderr


def assert_one_line_error(rc, out, err, expected_rc, match):
    assert rc == expected_rc, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(match, lines[0]), lines[0]


def write_idx(folder, n_train=96, n_test=40, seed=0):
    """Tiny learnable Fashion-MNIST look-alike: class k has a bright band at row 2k+4."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)

    def images(n):
        y = np.arange(n) % 10
        rng.shuffle(y)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 * k + 4: 2 * k + 6, 4:24] = 250
        return x, y.astype(np.uint8)

    for split, n in (("train", n_train), ("t10k", n_test)):
        x, y = images(n)
        for kind, arr, rank in (("images", x, 3), ("labels", y, 1)):
            head = bytes([0, 0, 8, rank]) + b"".join(
                int(d).to_bytes(4, "big") for d in arr.shape)
            with gzip.open(os.path.join(folder, f"{split}-{kind}-idx{rank}-ubyte.gz"),
                           "wb") as f:
                f.write(head + arr.tobytes())
    return folder


def write_cifar(folder, n=6, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"batch_label": name.encode(), b"filenames": [b"x.png"] * n}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


# ---------------------------------------------------------------------------------------
# argument errors: one line, non-zero, no traceback
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,match", [
    ((), "required: COMMAND"),
    (("train",), "required: model"),
    (("train", "resnet50"), "invalid choice: 'resnet50'"),
    (("train", "lenet5", "--epochs", "0"), "--epochs: must be > 0, got 0"),
    (("train", "lenet5", "--epochs", "-3"), "--epochs: must be > 0, got -3"),
    (("train", "lenet5", "--batch-size", "many"), "--batch-size: expected a positive"),
    (("train", "lenet5", "--lr", "0"), "--lr: must be a finite number > 0"),
    (("train", "lenet5", "--plot", "curves.pdf"), "must end in .png"),
    (("train", "lenet5", "--augment", "rotate"), "unknown augmentation 'rotate'"),
    (("train", "lenet5", "--validation-split", "1.5"), r"must lie in \[0, 1\)"),
    (("train", "lenet5", "--frobnicate"), "unrecognized arguments: --frobnicate"),
    (("fly",), "invalid choice: 'fly'"),
])
def test_usage_errors_in_process(capsys, args, match):
    rc = cli.main(list(args))
    captured = capsys.readouterr()
    assert_one_line_error(rc, captured.out, captured.err, 2, match)


def test_usage_error_subprocess():
    assert_one_line_error(*run("train", "nonet"), 2, r"^fastconv train: error: .*nonet")


def test_missing_data_path(tmp_path):
    missing = tmp_path / "nowhere"
    assert_one_line_error(*run("train", "lenet5", "--data", missing), 1,
                          rf"--data {re.escape(str(missing))}: no such file or folder")
    assert_one_line_error(*run("evaluate", tmp_path / "model.npz"), 1,
                          "model file .*model.npz' does not exist")


def test_cifar_not_found_lists_places(tmp_path):
    env = {"HOME": str(tmp_path), "FASTCONV_DATA": str(tmp_path / "data")}
    assert_one_line_error(*run("train", "cifar10", env=env), 1,
                          r"CIFAR-10 not found; looked in: .*data")


def test_corrupted_data_is_one_line(tmp_path):
    folder = write_idx(tmp_path / "fm")
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    assert_one_line_error(*run("train", "lenet5", "--data", folder), 1,
                          r"t10k-images-idx3-ubyte\.gz.*(truncated|corrupted)")


def test_info():
    rc, out, err = run("info")
    assert rc == 0, err
    assert f"fastconv {fastconv.__version__}" in out
    assert "OpenMP:" in out and "BLAS" in out
    assert "Fashion-MNIST subset (bundled): " in out and "missing" not in out


@pytest.mark.skipif(importlib.util.find_spec("fastconv.benchmark") is None,
                    reason="fastconv.benchmark missing")
def test_bench_passes_arguments_on(capsys):
    assert cli.main(["bench", "--help"]) == 0
    assert "usage" in capsys.readouterr().out
    assert cli.main(["bench", "--no-such-option"]) == 2


def test_bench_without_module(monkeypatch, capsys):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    monkeypatch.setattr(cli.importlib, "import_module", missing)
    rc = cli.main(["bench"])
    assert_one_line_error(rc, *capsys.readouterr(), 2, "no benchmark module")


def test_plot_without_matplotlib_fails_before_training(tmp_path):
    fake = tmp_path / "fake" / "matplotlib"
    os.makedirs(fake)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {"PYTHONPATH": str(tmp_path / "fake") + os.pathsep + ROOT}
    rc, out, err = run("train", "lenet5", "--plot", tmp_path / "c.png", env=env)
    assert_one_line_error(rc, out, err, 1, r"pip install 'fastconv\[plot\]'")
    assert "epoch" not in out


# ---------------------------------------------------------------------------------------
# real runs on tiny data
# ---------------------------------------------------------------------------------------

@needs_models
def test_train_lenet5_save_plot_then_evaluate(tmp_path):
    data = write_idx(tmp_path / "fm")
    model_file = tmp_path / "lenet.npz"
    args = ["train", "lenet5", "--data", data, "--epochs", "2", "--batch-size", "16",
            "--threads", "1", "--seed", "3", "--save", model_file]
    plot = tmp_path / "curves.png"
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    if has_mpl:
        args += ["--plot", plot]
    rc, out, err = run(*args)
    assert rc == 0, err
    assert "96 training, 40 test images" in out
    assert "threads 1" in out
    epochs = re.findall(r"epoch +(\d)/2 +loss ([\d.]+) +acc ([\d.]+) .* samples/s", out)
    assert [e[0] for e in epochs] == ["1", "2"]
    acc = float(re.search(r"test accuracy: ([\d.]+) \(loss [\d.]+, 40 images\)", out)[1])
    assert re.search(r"total time: [\d.]+ s \(training .* samples/s, [\d.]+ s/epoch\)", out)
    assert model_file.exists()
    if has_mpl:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the saved model, evaluated on the same test images, gives the same accuracy
    rc, out2, err2 = run("evaluate", model_file, "--data", data)
    assert rc == 0, err2
    acc2 = float(re.search(r"test accuracy ([\d.]+)", out2)[1])
    assert acc2 == pytest.approx(acc, abs=1e-4)

    # the same seed repeats the run exactly
    rc, out3, _ = run(*args[:-2] if has_mpl else args)
    assert re.findall(r"loss ([\d.]+)", out3)[:2] == re.findall(r"loss ([\d.]+)", out)[:2]


@needs_models
def test_train_cifar10_tiny_with_augmentation(tmp_path):
    data = write_cifar(tmp_path / "cifar-10-batches-py")
    rc, out, err = run("train", "cifar10", "--data", data, "--epochs", "1",
                       "--batch-size", "10", "--augment", "flip,shift,mixup",
                       "--validation-split", "0.2")
    assert rc == 0, err
    n_train, n_val = map(int, re.search(r"(\d+) training, (\d+) val images", out).groups())
    assert n_train + n_val == 30 and 0 < n_val < 15
    assert "augmentation flip, mixup, shift" in out
    assert re.search(r"test accuracy: [\d.]+ \(loss [\d.]+, 6 images\)", out)


@needs_models
def test_train_lenet5_learns_tiny_problem(tmp_path):
    data = write_idx(tmp_path / "fm", n_train=300, n_test=100)
    rc, out, err = run("train", "lenet5", "--data", data, "--epochs", "3",
                       "--batch-size", "16", "--limit", "300")
    assert rc == 0, err
    acc = float(re.search(r"test accuracy: ([\d.]+)", out)[1])
    assert acc > 0.5  # a band per class is easy; chance is 0.1


@pytest.mark.slow
@needs_models
def test_main_job_default_recipe_reaches_80_percent():
    """The README's main job: `fastconv train lenet5` on the bundled subset, >= 80 %."""
    rc, out, err = run("train", "lenet5", "--quiet", env={"OMP_NUM_THREADS": "2"},
                       timeout=600)
    assert rc == 0, err
    acc = float(re.search(r"test accuracy: ([\d.]+) \(loss [\d.]+, 2000 images\)", out)[1])
    assert acc >= 0.80


def test_plot_history_checks_its_input(tmp_path):
    from fastconv import plotting
    with pytest.raises(ValueError, match="no 'loss' values"):
        plotting.plot_history({"accuracy": [0.5]}, tmp_path / "a.png")
    with pytest.raises(TypeError, match="History or a dict"):
        plotting.plot_history([0.1, 0.2], tmp_path / "a.png")
    if importlib.util.find_spec("matplotlib") is None:
        with pytest.raises(ImportError, match=r"pip install 'fastconv\[plot\]'"):
            plotting.plot_history({"loss": [1.0, 0.5]}, tmp_path / "a.png")
    else:
        out = plotting.plot_history({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]},
                                    tmp_path / "a.png")
        assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
