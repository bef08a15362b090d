"""The ``fastconv`` command, run as ``python -m fastconv`` in a subprocess on tiny data."""
import argparse
import errno
import gzip
import importlib.util
import os
import pickle
import re
import subprocess
import sys
import tempfile

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
    (("tune",), "required: model"),
    (("tune", "cifar10"), "invalid choice: 'cifar10'"),
    (("tune", "lenet5", "--trials", "0"), "--trials: must be > 0, got 0"),
    (("tune", "lenet5", "--validation-split", "0"), r"must lie in \(0, 1\)"),
    (("tune", "lenet5", "--plot", "history.svg"), "must end in .png"),
    (("evaluate", "m.npz", "--plot", "cm.jpg"), "must end in .png"),
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
    rc, out, err = run("train", "cifar10", env=env)
    assert_one_line_error(rc, out, err, 1, r"CIFAR-10 not found; looked in: .*data")
    # a command-line user is told about command-line options and the official source,
    # not about path= (a Python argument)
    assert "--data PATH" in err and "--download" in err and "path=" not in err
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in err
    assert "c58f30108f718f92721af3b95e74349a" in err
    assert str(tmp_path / ".fastconv" / "datasets") in err  # where --download puts it


def test_help_shows_every_default(capsys):
    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "evaluate"):
        for action in subs.choices[name]._actions:
            if action.option_strings and action.dest != "help":
                assert "default" in (action.help or ""), (name, action.option_strings)
    assert cli.main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for key, option in (("epochs", "--epochs"), ("batch_size", "--batch-size"),
                        ("optimizer", "--optimizer"), ("schedule", "--schedule")):
        values = ", ".join(f"{cfg[key]} for {net}" for net, cfg in cli.TRAIN_DEFAULTS.items())
        assert f"(default: {values})" in out, option
    lrs = ", ".join(f"{cfg['lr']:g} for {net}" for net, cfg in cli.TRAIN_DEFAULTS.items())
    assert f"(default: {lrs})" in out
    assert "none for lenet5, flip for cifar10" in out
    assert "(default: 0.9)" in out and "(default: 0)" in out
    assert cli.main(["evaluate", "--help"]) == 0
    assert "(default: 256)" in capsys.readouterr().out


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


@pytest.mark.skipif(importlib.util.find_spec("fastconv.benchmark") is None,
                    reason="fastconv.benchmark missing")
def test_bench_says_why_torch_is_missing_and_labels_rates(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert cli.main(["bench", "--layers", "lenet.c5", "--batch", "2", "--repeat", "1",
                     "--no-naive"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch: not installed, so the torch column is skipped" in out
    assert "pip install torch==2.13.0" in out and 'pip install "fastconv[compare]"' in out
    assert "effective (direct-equivalent) rate" in out and "Winograd" in out
    assert re.search(r"lenet\.c5 \| fwd \| [\d.]+ \(\d+ eff\. GF/s\)", out)
    assert "issue-6" not in out and "performance targets of docs/benchmarks/method.md" in out
    assert cli.main(["bench", "--help"]) == 0
    assert "(default: 128)" in capsys.readouterr().out


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
def test_train_resnet20_recipe_options_reach_the_model(tmp_path):
    """resnet20's recipe: Nesterov, label smoothing 0.1 and BatchNormalization momentum
    0.9 by default, each in the recipe line and in the saved model; each can be turned
    off; --bn-momentum on a network without BatchNormalization is a one-line error."""
    from fastconv.layers import BatchNormalization
    from fastconv.models import load_model
    data = write_cifar(tmp_path / "cifar-10-batches-py")
    for extra, shown, momentum, smoothing in (
            ((), True, 0.9, 0.1),
            (("--no-nesterov", "--label-smoothing", "0", "--bn-momentum", "0.99"),
             False, 0.99, 0.0)):
        saved = tmp_path / f"r{len(extra)}.npz"
        rc, out, err = run("train", "resnet20", "--data", data, "--epochs", "1",
                           "--batch-size", "10", "--save", saved, *extra, timeout=300)
        assert rc == 0, err
        assert ("Nesterov, label smoothing 0.1, " in out) == shown, out
        assert f"BatchNormalization momentum {momentum:g}," in out
        model = load_model(saved)
        bns = [layer for layer in model.layers if isinstance(layer, BatchNormalization)]
        assert len(bns) == 21 and all(layer.momentum == momentum for layer in bns)
        assert model.optimizer.nesterov == shown
        assert getattr(model.loss, "label_smoothing", 0.0) == smoothing
    rc, out, err = run("train", "lenet5", "--bn-momentum", "0.9", "--epochs", "1")
    assert_one_line_error(rc, out, err, 1, "lenet5 has no BatchNormalization layers")


@needs_models
def test_train_lenet5_learns_tiny_problem(tmp_path):
    data = write_idx(tmp_path / "fm", n_train=300, n_test=100)
    rc, out, err = run("train", "lenet5", "--data", data, "--epochs", "3",
                       "--batch-size", "16", "--limit", "300")
    assert rc == 0, err
    acc = float(re.search(r"test accuracy: ([\d.]+)", out)[1])
    assert acc > 0.5  # a band per class is easy; chance is 0.1


@needs_models
def test_train_cosine_schedule_comes_from_the_library(tmp_path, capsys, monkeypatch):
    """The per-epoch cosine rates are set by fastconv.callbacks.LearningRateScheduler."""
    from fastconv.callbacks import LearningRateScheduler
    calls = []
    original = LearningRateScheduler.on_epoch_begin

    def spy(self, epoch, logs=None):
        calls.append(epoch)
        return original(self, epoch, logs)

    monkeypatch.setattr(LearningRateScheduler, "on_epoch_begin", spy)
    data = write_idx(tmp_path / "fm", n_train=40, n_test=20)
    rc = cli.main(["train", "lenet5", "--data", str(data), "--epochs", "4", "--lr", "0.002",
                   "--batch-size", "20"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert calls == [0, 1, 2, 3]
    lrs = re.findall(r"^epoch .*  lr ([\d.e-]+)  ", out, re.M)
    assert lrs == ["0.002", "0.0017", "0.001", "0.00029"]
    rc = cli.main(["train", "lenet5", "--data", str(data), "--epochs", "2", "--lr", "0.002",
                   "--schedule", "constant", "--augment", "shift"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert calls == [0, 1, 2, 3]
    assert re.findall(r"^epoch .*  lr ([\d.e-]+)  ", out, re.M) == ["0.002", "0.002"]


# ---------------------------------------------------------------------------------------
# fastconv tune
# ---------------------------------------------------------------------------------------

HAS_OPTUNA = importlib.util.find_spec("optuna") is not None


@needs_models
@pytest.mark.skipif(not HAS_OPTUNA, reason="optuna is not installed")
def test_tune_lenet5_tiny(tmp_path):
    data = write_idx(tmp_path / "fm", n_train=120, n_test=30)
    args = ["tune", "lenet5", "--data", data, "--trials", "3", "--epochs", "2",
            "--threads", "1"]
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    plot = tmp_path / "history.png"
    rc, out, err = run(*args, *(["--plot", plot] if has_mpl else []))
    assert rc == 0, err
    assert err == ""
    assert "110 training, 10 validation images; 3 trials of 2 epochs, seed 0" in out
    trials = re.findall(r"^trial (\d)/3  optimizer (\w+)  lr ([\d.e-]+)  batch_size "
                        r"(\d+)  (val_acc [\d.]+|pruned after epoch 1)  \([\d.]+ s\)(.*)$",
                        out, re.M)
    assert [t[0] for t in trials] == ["1", "2", "3"]
    assert trials[0][1:4] == ("adam", "0.002", "64")
    assert trials[0][5] == "  [default recipe]"
    best = re.search(r"^best trial: (\d)  optimizer \w+  lr [\d.e-]+  batch_size \d+  "
                     r"val_acc ([\d.]+) \(default recipe: ([\d.]+)\)$", out, re.M)
    assert float(best[2]) >= float(best[3])
    assert re.search(r"^best trial's test accuracy: [\d.]+ \(loss [\d.]+, 30 images\)$",
                     out, re.M)
    assert re.search(r"^total time: .* \(3 trials: \d complete, \d pruned, 0 failed\)$",
                     out, re.M)
    if has_mpl:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the same seed gives the same trials
    rc, out2, err2 = run(*args)
    assert rc == 0, err2
    def results(text):
        return [re.sub(r"\([\d.]+ s\)", "", line) for line in text.splitlines()
                if line.startswith(("trial ", "best "))]
    assert len(results(out)) == 5
    assert results(out2) == results(out)


def test_tune_without_optuna_names_the_extra(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "fake" / "optuna"
    os.makedirs(fake)
    (fake / "__init__.py").write_text("raise ImportError('no optuna here')\n")
    env = {"PYTHONPATH": str(tmp_path / "fake") + os.pathsep + ROOT}
    rc, out, err = run("tune", "lenet5", "--trials", "8", env=env)
    assert_one_line_error(rc, out, err, 1,
                          r'^fastconv tune: error: .*optuna.*pip install "fastconv\[tune\]"')
    assert out == ""
    monkeypatch.setitem(sys.modules, "optuna", None)
    rc = cli.main(["tune", "lenet5"])
    assert_one_line_error(rc, *capsys.readouterr(), 1, r'pip install "fastconv\[tune\]"')


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


# ---------------------------------------------------------------------------------------
# --save: checked before training, a fallback when the save fails at the end
# ---------------------------------------------------------------------------------------

def _unwritable(folder):
    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except OSError:
        return True
    os.close(fd)
    os.remove(probe)
    return False


def _save_cases(tmp_path):
    os.makedirs(tmp_path / "existing")
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    cases = [
        (tmp_path / "existing", r"existing: is a folder; give a file name"),
        (str(tmp_path / "existing") + os.sep, r"is a folder"),
        (tmp_path / "no" / "such" / "m.npz", r"folder .*such does not exist"),
        (tmp_path / "plain.txt" / "m.npz", r"plain\.txt is not a folder"),
    ]
    if os.path.isdir("/sys") and _unwritable("/sys"):  # read-only even for root
        cases.append(("/sys/fastconv-model.npz", r"cannot write in folder /sys"))
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        os.makedirs(locked)
        os.chmod(locked, 0o500)
        cases.append((locked / "m.npz", r"cannot write in folder .*locked"))
    return cases


@needs_models
def test_save_target_refused_before_training(tmp_path, capsys):
    data = write_idx(tmp_path / "fm", n_train=20, n_test=10)
    for target, match in _save_cases(tmp_path):
        rc = cli.main(["train", "lenet5", "--data", str(data), "--epochs", "1",
                       "--batch-size", "10", "--save", str(target)])
        out, err = capsys.readouterr()
        assert_one_line_error(rc, out, err, 1, "--save .*" + match)
        assert "epoch" not in out and "test accuracy" not in out  # nothing was trained


@needs_models
def test_save_keras_file_needs_h5py(tmp_path, monkeypatch, capsys):
    from fastconv import _cli_io
    monkeypatch.setattr(_cli_io, "h5py_available", lambda: False)
    data = write_idx(tmp_path / "fm", n_train=20, n_test=10)
    for name in ("m.keras", "m.h5"):
        rc = cli.main(["train", "lenet5", "--data", str(data), "--epochs", "1",
                       "--batch-size", "10", "--save", str(tmp_path / name)])
        out, err = capsys.readouterr()
        assert_one_line_error(rc, out, err, 1, r"--save .*needs h5py.*fastconv\[keras\]")
        assert "epoch" not in out


@needs_models
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_train_saves_a_keras_file(tmp_path, capsys, suffix):
    pytest.importorskip("h5py")
    from fastconv import models
    data = write_idx(tmp_path / "fm", n_train=20, n_test=10)
    target = tmp_path / ("model" + suffix)
    npz = tmp_path / "model.npz"
    for path in (target, npz):
        rc = cli.main(["train", "lenet5", "--data", str(data), "--epochs", "1",
                       "--batch-size", "10", "--seed", "4", "--threads", "1", "--save",
                       str(path)])
        capsys.readouterr()
        assert rc == 0
    x = np.random.default_rng(0).standard_normal((3, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(models.load_model(target).predict(x, verbose=0),
                                  models.load_model(npz).predict(x, verbose=0))


@needs_models
@pytest.mark.parametrize("cwd_fails", [False, True])
def test_save_failing_at_the_end_goes_to_a_fallback(tmp_path, monkeypatch, capsys,
                                                    cwd_fails):
    from fastconv import models, saving
    data = write_idx(tmp_path / "fm", n_train=20, n_test=10)
    target = tmp_path / "out" / "model.npz"
    os.makedirs(target.parent)
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    os.makedirs(cwd)
    os.makedirs(tmp)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp))
    real_save = saving.save_model
    failing = [str(target)] + ([str(cwd)] if cwd_fails else [])

    def save_model(model, filepath):
        path = os.path.abspath(os.fspath(filepath))
        if path == failing[0] or os.path.dirname(path) in failing[1:]:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(model, filepath)

    monkeypatch.setattr(saving, "save_model", save_model)
    rc = cli.main(["train", "lenet5", "--data", str(data), "--epochs", "1",
                   "--batch-size", "10", "--seed", "1", "--save", str(target)])
    out, err = capsys.readouterr()
    assert "test accuracy" in out
    where = tmp if cwd_fails else cwd
    saved = [f for f in os.listdir(where) if f.endswith(".npz")]
    assert len(saved) == 1 and re.fullmatch(r"fastconv-lenet5-\d{8}-\d{6}\.npz", saved[0])
    fallback = os.path.join(where, saved[0])
    assert_one_line_error(rc, out, err, 1,
                          rf"could not save the model to {re.escape(str(target))} "
                          rf"\(.*No space left on device\); saved it to "
                          rf"{re.escape(fallback)} instead")
    assert models.load_model(fallback).count_params() == 61706
    assert not target.exists()


# ---------------------------------------------------------------------------------------
# evaluate: the model's loss decides the labels; shapes and empty sets refused clearly
# ---------------------------------------------------------------------------------------

def _readme_model(loss="sparse_categorical_crossentropy", metrics=("accuracy",),
                  compile=True):
    """The README's Keras-style example model."""
    from fastconv import layers, models, optimizers
    fastconv.set_seed(0)
    model = models.Sequential([
        layers.Conv2D(6, 5, activation="tanh", input_shape=(32, 32, 1)),
        layers.AveragePooling2D(2),
        layers.Conv2D(16, 5, activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
    if compile:
        model.compile(optimizers.Adam(), loss, metrics=list(metrics))
    return model


@needs_models
@pytest.mark.parametrize("loss,metrics,compile", [
    ("sparse_categorical_crossentropy", ("accuracy",), True),   # the README's example
    ("categorical_crossentropy", ("accuracy",), True),
    ("sparse_categorical_crossentropy", (), True),               # no accuracy metric
    (None, (), False),                                           # saved uncompiled
])
def test_evaluate_follows_the_models_loss(tmp_path, capsys, loss, metrics, compile):
    from fastconv import datasets
    data = write_idx(tmp_path / "fm", n_train=20, n_test=30)
    model = _readme_model(loss, metrics, compile)
    if not compile:
        model.build((None, 32, 32, 1))
    path = tmp_path / "m.npz"
    model.save(path)
    rc = cli.main(["evaluate", str(path), "--data", str(data)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    (_, _), (x, y) = datasets.load_fashion_mnist(data)
    x = datasets.scale_images(datasets.pad_images(x))
    expected_acc = np.mean(model.predict(x, verbose=0).argmax(axis=1) == y)
    acc = float(re.search(r"test accuracy ([\d.]+)", out)[1])
    assert acc == pytest.approx(expected_acc, abs=1e-4)
    if compile:
        y_model = y if loss.startswith("sparse") else datasets.to_categorical(y, 10)
        expected_loss = model.evaluate(x, y_model, verbose=0, return_dict=True)["loss"]
        assert float(re.search(r"loss ([\d.]+)", out)[1]) == pytest.approx(
            expected_loss, abs=1e-4)
    else:
        assert "no loss" in out
    # the confusion matrix: rows true classes, columns predicted (no names: IDX data)
    expected = np.zeros((10, 10), int)
    np.add.at(expected, (y, model.predict(x, verbose=0).argmax(axis=1)), 1)
    assert parse_confusion(out) == ([str(i) for i in range(10)], expected.tolist())


def parse_confusion(out):
    """(row labels, counts) of the confusion matrix printed by fastconv evaluate."""
    lines = out.splitlines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted class):")
    header = lines[start + 1].split()
    assert header[:3] == ["true", "\\", "predicted"]
    assert header[3:] == [str(i) for i in range(10)]
    labels, rows = [], []
    for line in lines[start + 2:start + 12]:
        m = re.match(r"^  (\d(?: \S.*?)?) +((?: +\d+){10})$", line)
        assert m, line
        labels.append(m[1])
        rows.append([int(v) for v in m[2].split()])
    return labels, rows


@needs_models
def test_evaluate_names_the_classes_and_plots_the_confusion_matrix(tmp_path, capsys):
    model = _readme_model()
    model.save(tmp_path / "m.npz")
    args = ["evaluate", str(tmp_path / "m.npz")]
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    if has_mpl:
        args += ["--plot", str(tmp_path / "cm.png")]
    rc = cli.main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err
    labels, rows = parse_confusion(out)
    assert labels == [f"{i} {name}" for i, name in
                      enumerate(fastconv.datasets.FASHION_MNIST_CLASSES)]
    assert np.sum(rows) == 2000  # the bundled test images
    acc = float(re.search(r"test accuracy ([\d.]+)", out)[1])
    assert np.trace(rows) / 2000 == pytest.approx(acc, abs=1e-4)
    if has_mpl:
        assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote the confusion matrix to {tmp_path / 'cm.png'}" in out


def test_evaluate_plot_without_matplotlib_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    model = _readme_model()
    model.save(tmp_path / "m.npz")
    rc = cli.main(["evaluate", str(tmp_path / "m.npz"), "--plot", str(tmp_path / "c.png")])
    out, err = capsys.readouterr()
    assert_one_line_error(rc, out, err, 1, r"--plot: .*pip install 'fastconv\[plot\]'")
    assert out == ""


def test_format_confusion_matrix():
    lines = cli.format_confusion_matrix(np.array([[3, 0], [12, 1]]), ["cat", "dog"])
    assert lines[1:] == ["  true \\ predicted   0   1",
                         "  0 cat              3   0",
                         "  1 dog             12   1"]
    lines = cli.format_confusion_matrix(np.array([[1.5, 0], [0, 1000]]))
    assert lines[1:] == ["  true \\ predicted    0    1",
                         "  0                 1.5    0",
                         "  1                   0 1000"]


@needs_models
def test_evaluate_rejects_non_image_models_and_wrong_sizes(tmp_path, capsys):
    from fastconv import layers, models
    dense = models.Sequential([layers.Dense(10, activation="softmax", input_shape=(784,))])
    dense.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    dense.save(tmp_path / "dense.npz")
    rc = cli.main(["evaluate", str(tmp_path / "dense.npz")])
    assert_one_line_error(rc, *capsys.readouterr(), 1,
                          r"takes inputs of shape \(784,\); .* feeds images .*"
                          r"\(28, 28, 1\).*\(32, 32, 3\)")
    small = models.Sequential([layers.Conv2D(4, 3, input_shape=(20, 20, 1)),
                               layers.Flatten(), layers.Dense(10, activation="softmax")])
    small.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    small.save(tmp_path / "small.npz")
    rc = cli.main(["evaluate", str(tmp_path / "small.npz")])
    assert_one_line_error(rc, *capsys.readouterr(), 1,
                          r"takes images of shape \(20, 20, 1\); the data .* are "
                          r"\(28, 28, 1\)")
    five = models.Sequential([layers.Conv2D(4, 5, input_shape=(32, 32, 1)),
                              layers.Flatten(), layers.Dense(5, activation="softmax")])
    five.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    five.save(tmp_path / "five.npz")
    rc = cli.main(["evaluate", str(tmp_path / "five.npz")])
    assert_one_line_error(rc, *capsys.readouterr(), 1,
                          r"scores 5 classes; the labels .* reach class 9")


@needs_models
def test_empty_test_set_is_refused(tmp_path, capsys):
    data = write_idx(tmp_path / "fm", n_train=20, n_test=0)
    model = _readme_model()
    model.save(tmp_path / "m.npz")
    rc = cli.main(["evaluate", str(tmp_path / "m.npz"), "--data", str(data)])
    assert_one_line_error(rc, *capsys.readouterr(), 1,
                          r"the test set of IDX data in .* is empty \(0 images\)")
    rc = cli.main(["train", "lenet5", "--data", str(data), "--epochs", "1"])
    out, err = capsys.readouterr()
    assert_one_line_error(rc, out, err, 1, r"the test set of .* is empty")
    assert "epoch" not in out


def test_download_option_misuse_is_a_usage_error(capsys):
    rc = cli.main(["train", "lenet5", "--download"])
    assert_one_line_error(rc, *capsys.readouterr(), 2, "--download fetches CIFAR-10 only")
    rc = cli.main(["train", "cifar10", "--download", "--data", "some.tar.gz"])
    assert_one_line_error(rc, *capsys.readouterr(), 2, "cannot be combined with --data")


# ---------------------------------------------------------------------------------------
# every subcommand, bad files and arguments: one line, non-zero, never a traceback
# ---------------------------------------------------------------------------------------

def _bad_inputs(tmp_path):
    """(argv, expected exit status, regex of the message) per bad input."""
    t = tmp_path
    good_idx = write_idx(t / "good", n_train=20, n_test=10)
    trunc = write_idx(t / "trunc", n_train=20, n_test=10)
    p = trunc / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:60])
    huge = write_idx(t / "huge", n_train=20, n_test=10)
    os.remove(huge / "train-images-idx3-ubyte.gz")
    (huge / "train-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + (2 ** 31).to_bytes(4, "big") * 2 + (4).to_bytes(4, "big"))
    labels = write_idx(t / "labels", n_train=20, n_test=10)
    with gzip.open(labels / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 10]) + bytes([12] * 10))
    os.makedirs(t / "empty")
    cifar = write_cifar(t / "cifar" / "cifar-10-batches-py")
    import tarfile
    tgz, txz = t / "c.tar.gz", t / "c.tar.xz"
    for path, mode in ((tgz, "w:gz"), (txz, "w:xz")):
        with tarfile.open(path, mode) as tar:
            tar.add(cifar, arcname="cifar-10-batches-py")
    tgz.write_bytes(tgz.read_bytes()[:300])
    blob = bytearray(txz.read_bytes())
    at = int(len(blob) * 0.9)
    blob[at:at + 8] = bytes(b ^ 0xFF for b in blob[at:at + 8])
    txz.write_bytes(bytes(blob))
    (t / "garbage.bin").write_bytes(b"\x00garbage" * 50)
    (t / "empty.npz").write_bytes(b"")
    np.savez(t / "foreign.npz", a=np.zeros(3))
    np.savez(t / "badjson.npz", config=np.array("{not json"))
    cases = [
        (["train", "lenet5", "--data", t / "nowhere"], 1, "no such file or folder"),
        (["train", "lenet5", "--data", good_idx / "t10k-images-idx3-ubyte.gz"], 1,
         "must be a folder"),
        (["train", "lenet5", "--data", t / "empty"], 1, "missing train-images"),
        (["train", "lenet5", "--data", trunc], 1, r"train-images-idx3-ubyte\.gz"),
        (["train", "lenet5", "--data", huge], 1, r"huge.*train-images-idx3-ubyte: IDX"),
        (["train", "lenet5", "--data", labels], 1, r"labels must lie in \[0, 9\]"),
        (["train", "cifar10", "--data", tgz], 1, r"c\.tar\.gz: not a readable"),
        (["train", "cifar10", "--data", txz], 1, r"c\.tar\.xz: not a readable"),
        (["train", "cifar10", "--data", t / "garbage.bin"], 1, r"garbage\.bin"),
        (["train", "cifar10", "--data", t / "empty"], 1, "CIFAR-10 not found"),
        (["train", "lenet5", "--save", t / "empty"], 1, "is a folder"),
        (["train", "lenet5", "--plot", t / "none" / "c.png"], 1,
         "does not exist|needs matplotlib"),
        (["train", "lenet5", "--threads", "0"], 2, "--threads: must be > 0"),
        (["evaluate", t / "missing.npz"], 1, "does not exist"),
        (["evaluate", t / "empty"], 1, "is a folder, not a model file"),
        (["evaluate", t / "garbage.bin"], 1, r"garbage\.bin"),
        (["evaluate", t / "empty.npz"], 1, r"empty\.npz"),
        (["evaluate", t / "foreign.npz"], 1, r"foreign\.npz"),
        (["evaluate", t / "badjson.npz"], 1, r"badjson\.npz"),
        (["evaluate"], 2, "required: FILE"),
        (["evaluate", t / "x.npz", "--batch-size", "-1"], 2, "--batch-size"),
        (["info", "extra"], 2, "unrecognized arguments: extra"),
        (["bench", "--layers", "nope"], 2, "unknown layer"),
        (["bench", "--batch", "0"], 2, "must be positive"),
        (["bench", "--batch", "x"], 2, "invalid int value"),
        (["bench", "--json", t / "none" / "out.json"], 2, r"--json: folder .* does not"),
    ]
    if HAS_MODELS:
        from fastconv import applications
        model = applications.lenet5()
        model.save(t / "lenet.npz")
        data = t / "lenet.npz"
        whole = data.read_bytes()
        (t / "cut.npz").write_bytes(whole[: len(whole) // 2])
        cases += [
            (["evaluate", data, "--data", trunc], 1, r"train-images-idx3-ubyte\.gz"),
            (["evaluate", data, "--data", t / "nowhere"], 1, "no such file or folder"),
            (["evaluate", data, "--download"], 2, "--download fetches CIFAR-10 only"),
            (["evaluate", t / "cut.npz"], 1, r"cut\.npz"),
        ]
    return cases


def test_bad_inputs_never_show_a_traceback(tmp_path, capsys):
    for argv, status, match in _bad_inputs(tmp_path):
        argv = [str(a) for a in argv]
        rc = cli.main(argv)
        out, err = capsys.readouterr()
        assert rc == status, (argv, rc, out, err)
        assert "Traceback" not in err, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert re.search(match, lines[0]), (argv, lines[0])
        assert lines[0].startswith("fastconv"), lines[0]


def test_fastconv_debug_shows_the_traceback(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a model")
    rc, out, err = run("evaluate", tmp_path / "garbage.npz", env={"FASTCONV_DEBUG": "1"})
    assert rc != 0 and "Traceback" in err and "garbage.npz" in err
    rc, out, err = run("evaluate", tmp_path / "garbage.npz")
    assert_one_line_error(rc, out, err, 1, r"garbage\.npz")


@needs_models
@pytest.mark.parametrize("kinds", [{"flip"}, {"flip", "shift", "mixup"}])
def test_train_augments_each_epoch_through_a_sequence(kinds):
    """fastconv train's augmentation is a fastconv.utils.Sequence re-augmented at each
    epoch's start: one fit call gives the weights of the former loop (one augmented
    copy per epoch, each a fit of one epoch shuffled by fit)."""
    from fastconv import applications
    rng0 = np.random.default_rng(5)
    x = rng0.random((40, 32, 32, 1), dtype=np.float32)
    y = fastconv.datasets.to_categorical(rng0.integers(0, 10, 40), 10)

    def model_and_rng():
        fastconv.set_seed(3)
        model = applications.lenet5()
        model.compile(fastconv.optimizers.Adam(1e-3), "categorical_crossentropy")
        return model, np.random.default_rng(11)
    loop, rng = model_and_rng()
    for epoch in range(3):
        xa, ya = cli._augment(x, y, kinds, rng)
        loop.fit(xa, ya, batch_size=16, initial_epoch=epoch, epochs=epoch + 1,
                 shuffle=True, verbose=0)
    seq_model, rng = model_and_rng()
    seq = cli._epoch_augmented(seq_model, x, y, kinds, rng, 16)
    assert isinstance(seq, fastconv.utils.Sequence) and len(seq) == 3
    seq_model.fit(seq, epochs=3, shuffle=False, verbose=0)
    for a, b in zip(loop.get_weights(), seq_model.get_weights()):
        np.testing.assert_array_equal(a, b)
