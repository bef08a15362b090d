"""fastconv.datasets: IDX and CIFAR-10 readers on files written here, hostile files,
search order, and the preparation / augmentation helpers."""
import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from fastconv import datasets as ds

IDX_NAMES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


# ---------------------------------------------------------------------------------------
# writers (independent of the code under test)
# ---------------------------------------------------------------------------------------

def idx_bytes(arr, code=0x08):
    arr = np.asarray(arr)
    out = bytes([0, 0, code, arr.ndim])
    for d in arr.shape:
        out += int(d).to_bytes(4, "big")
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    return out + big.tobytes()


def write_idx_set(folder, seed=0, n_train=12, n_test=5, gz=True, size=28):
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
              "x_test": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test, dtype=np.uint8)}
    os.makedirs(folder, exist_ok=True)
    for k, stem in IDX_NAMES.items():
        payload = idx_bytes(arrays[k])
        if gz:
            with gzip.open(os.path.join(folder, stem + ".gz"), "wb") as f:
                f.write(payload)
        else:
            with open(os.path.join(folder, stem), "wb") as f:
                f.write(payload)
    return arrays


def check_same(loaded, arrays):
    (xtr, ytr), (xte, yte) = loaded
    for got, k in ((xtr, "x_train"), (ytr, "y_train"), (xte, "x_test"), (yte, "y_test")):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[k])


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No FASTCONV_DATA, a fresh HOME/XDG and no Debian folder: nothing is found."""
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.delenv("FASTCONV_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setattr(ds, "DEBIAN_DIRS", (str(tmp_path / "debian"),))
    return tmp_path


# ---------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_from_folder(tmp_path, gz):
    arrays = write_idx_set(tmp_path / "fm", gz=gz)
    check_same(ds.load_fashion_mnist(tmp_path / "fm"), arrays)
    # a parent folder holding fashion-mnist/ works too
    os.rename(tmp_path / "fm", tmp_path / "fashion-mnist")
    check_same(ds.load_fashion_mnist(str(tmp_path)), arrays)


def test_load_mnist_and_dotted_names(tmp_path):
    arrays = write_idx_set(tmp_path / "mnist", gz=False)
    for stem in IDX_NAMES.values():  # the "train-images.idx3-ubyte" spelling of mirrors
        os.rename(tmp_path / "mnist" / stem,
                  tmp_path / "mnist" / stem.replace("-idx", ".idx"))
    check_same(ds.load_mnist(tmp_path / "mnist"), arrays)


@pytest.mark.parametrize("dtype,code", [(np.int8, 0x09), (np.int16, 0x0B),
                                        (np.int32, 0x0C), (np.float32, 0x0D),
                                        (np.float64, 0x0E)])
def test_read_idx_types_big_endian(tmp_path, dtype, code):
    a = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    p = tmp_path / "a.idx"
    p.write_bytes(idx_bytes(a, code))
    got = ds.read_idx(p)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_idx_header_hand_made(tmp_path):
    p = tmp_path / "labels"
    p.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]))
    np.testing.assert_array_equal(ds.read_idx(p), [7, 0, 9])


@pytest.mark.parametrize("mutate,match", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b"\x89PNG\r\n\x1a\n" + b[8:], "not an IDX file"),
    (lambda b: bytes([0, 0, 0x07]) + b[3:], "not an IDX file"),
    (lambda b: b[:2], "not an IDX file"),
])
def test_read_idx_rejects_bad_files(tmp_path, mutate, match):
    good = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    p = tmp_path / "bad"
    p.write_bytes(mutate(good))
    with pytest.raises(ValueError, match=match):
        ds.read_idx(p)


def test_idx_size_check_does_not_wrap(tmp_path):
    # (2**31, 2**31, 4) bytes is 2**64: an int64 product wraps to 0, so a 16-byte file
    # (the header alone) looked complete and NumPy failed later without naming the file
    p = tmp_path / "huge-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 3]) + (2 ** 31).to_bytes(4, "big") * 2
                  + (4).to_bytes(4, "big"))
    assert p.stat().st_size == 16
    with pytest.raises(ValueError, match=r"huge-idx3-ubyte: IDX file truncated.*"
                                         r"\(2147483648, 2147483648, 4\)"):
        ds.read_idx(p)


def test_truncated_and_corrupt_gzip(tmp_path):
    payload = gzip.compress(idx_bytes(np.arange(600, dtype=np.uint8).reshape(6, 10, 10)))
    p = tmp_path / "x.gz"
    p.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match=r"x\.gz.*truncated"):
        ds.read_idx(p)
    broken = bytearray(payload)
    broken[20:40] = b"\xff" * 20
    p.write_bytes(bytes(broken))
    with pytest.raises(ValueError, match=r"x\.gz"):
        ds.read_idx(p)


def test_load_set_consistency_errors(tmp_path):
    write_idx_set(tmp_path, n_train=12)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(ValueError, match="12 images.*11 labels"):
        ds.load_fashion_mnist(tmp_path)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.full(12, 10, np.uint8)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\], found 10"):
        ds.load_fashion_mnist(tmp_path)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros((12, 28, 28), np.uint8)))  # images where labels belong
    with pytest.raises(ValueError, match="expected uint8 labels"):
        ds.load_fashion_mnist(tmp_path)


def test_missing_files_and_bad_path(tmp_path):
    write_idx_set(tmp_path / "fm")
    os.remove(tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        ds.load_fashion_mnist(tmp_path / "fm")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ds.load_fashion_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="must be a folder"):
        ds.load_fashion_mnist(tmp_path / "fm" / "train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError, match="subset must be"):
        ds.load_fashion_mnist(subset="tiny")
    with pytest.raises(ValueError, match="do not pass path"):
        ds.load_fashion_mnist(tmp_path, subset="bundled")


def test_search_order_and_error_lists_every_place(clean_env, monkeypatch):
    tmp = clean_env
    with pytest.raises(FileNotFoundError) as info:
        ds.load_fashion_mnist()
    msg = str(info.value)
    assert "\n" not in msg
    for place in ds.data_search_paths("fashion-mnist"):
        assert place in msg
    assert str(tmp / "debian" / "fashion-mnist") in msg
    assert "dataset-fashion-mnist" in msg

    debian = write_idx_set(tmp / "debian" / "fashion-mnist", seed=1)
    check_same(ds.load_fashion_mnist(), debian)
    xdg = write_idx_set(tmp / "home" / ".local" / "share" / "fastconv" / "datasets"
                        / "fashion-mnist", seed=2)
    check_same(ds.load_fashion_mnist(), xdg)
    user = write_idx_set(tmp / "home" / ".fastconv" / "datasets" / "fashion-mnist", seed=3)
    check_same(ds.load_fashion_mnist(), user)
    env = write_idx_set(tmp / "env" / "fashion-mnist", seed=4)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp / "env"))
    check_same(ds.load_fashion_mnist(), env)
    # an explicit path wins over everything
    arg = write_idx_set(tmp / "arg", seed=5)
    check_same(ds.load_fashion_mnist(tmp / "arg"), arg)
    # MNIST looks in mnist/ folders, not fashion-mnist/
    with pytest.raises(FileNotFoundError, match=r"env[/\\]mnist"):
        ds.load_mnist()


def test_xdg_data_home_is_followed(clean_env, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(clean_env / "xdg"))
    arrays = write_idx_set(clean_env / "xdg" / "fastconv" / "datasets" / "mnist")
    check_same(ds.load_mnist(), arrays)


def test_bundled_subset():
    (xtr, ytr), (xte, yte) = ds.load_fashion_mnist(subset="bundled")
    assert xtr.shape == (9000, 28, 28) and xte.shape == (2000, 28, 28)
    assert xtr.dtype == ytr.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(ytr), [900] * 10)
    np.testing.assert_array_equal(np.bincount(yte), [200] * 10)
    assert 60 < xtr.mean() < 90  # real clothing images, not noise (noise would be ~127)
    folder = ds.bundled_data_dir()
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert total <= 5_000_000
    with open(os.path.join(folder, "LICENSE-fashion-mnist.txt")) as f:
        text = f.read()
    assert "MIT License" in text and "Zalando" in text


REAL_FM = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(REAL_FM), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_contains_bundled_subset():
    (xtr, ytr), (xte, yte) = ds.load_fashion_mnist(REAL_FM)
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    (btr, bytr), (bte, byte) = ds.load_fashion_mnist(subset="bundled")
    # the bundled test images are real test images, in the original order
    idx = {xte[i].tobytes(): i for i in range(len(xte))}
    pos = [idx[b.tobytes()] for b in bte]
    assert pos == sorted(pos)
    np.testing.assert_array_equal(yte[pos], byte)


# ---------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------

def cifar_batch(n, seed, as_bytes=False):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {b"batch_label": b"batch %d" % seed, b"labels": labels,
            b"data": data.tobytes() if as_bytes else data,
            b"filenames": [b"img_%d.png" % i for i in range(n)]}


def expected_images(batch):
    """Row layout: R plane, G plane, B plane, each 32 rows of 32 pixels."""
    data = np.frombuffer(batch[b"data"], np.uint8) if isinstance(batch[b"data"], bytes) \
        else batch[b"data"]
    data = data.reshape(-1, 3072)
    out = np.empty((len(data), 32, 32, 3), np.uint8)
    for i in range(len(data)):
        for ch in range(3):
            for r in range(32):
                out[i, r, :, ch] = data[i, ch * 1024 + r * 32: ch * 1024 + r * 32 + 32]
    return out


def write_cifar_folder(folder, protocol=2, as_bytes=False, sizes=(3, 2, 4, 1, 2, 3)):
    os.makedirs(folder, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    for k, (name, n) in enumerate(zip(names, sizes)):
        b = cifar_batch(n, k, as_bytes)
        batches[name] = b
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(b, f, protocol=protocol)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [b"airplane"], b"num_cases_per_batch": 3}, f,
                    protocol=protocol)
    x_train = np.concatenate([expected_images(batches[n]) for n in names[:5]])
    y_train = np.concatenate([batches[n][b"labels"] for n in names[:5]])
    return x_train, y_train, expected_images(batches["test_batch"]), \
        np.array(batches["test_batch"][b"labels"])


def check_cifar(loaded, expected):
    (xtr, ytr), (xte, yte) = loaded
    x_train, y_train, x_test, y_test = expected
    assert xtr.dtype == ytr.dtype == np.uint8
    assert ytr.shape == (len(y_train), 1) and yte.shape == (len(y_test), 1)
    np.testing.assert_array_equal(xtr, x_train)
    np.testing.assert_array_equal(ytr[:, 0], y_train)
    np.testing.assert_array_equal(xte, x_test)
    np.testing.assert_array_equal(yte[:, 0], y_test)


def make_tarball(path, members):
    """members: list of (name, bytes) or (name, TarInfo-modifier)."""
    with tarfile.open(path, "w:gz") as t:
        for name, payload in members:
            info = tarfile.TarInfo(name)
            if isinstance(payload, bytes):
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
            else:
                payload(info)
                t.addfile(info)


@pytest.mark.parametrize("protocol,as_bytes", [(2, False), (4, False), (5, False),
                                               (2, True)])
def test_cifar_folder(tmp_path, protocol, as_bytes):
    folder = tmp_path / "cifar-10-batches-py"
    expected = write_cifar_folder(folder, protocol, as_bytes)
    check_cifar(ds.load_cifar10(folder), expected)
    check_cifar(ds.load_cifar10(tmp_path), expected)  # the parent folder works too


def test_cifar_tarball_and_search(tmp_path, clean_env, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    expected = write_cifar_folder(src)
    tb = tmp_path / "env" / "cifar-10-python.tar.gz"
    os.makedirs(tb.parent)
    with tarfile.open(tb, "w:gz") as t:
        t.add(src, arcname="cifar-10-batches-py")
    check_cifar(ds.load_cifar10(tb), expected)
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found; looked in"):
        ds.load_cifar10()
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env"))
    check_cifar(ds.load_cifar10(), expected)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ds.load_cifar10(tmp_path / "nope.tar.gz")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_run(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [1]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_3.*forbidden global (posix|nt)\.system"):
        ds.load_cifar10(folder)
    assert not marker.exists()
    # the same file inside a tarball
    tb = tmp_path / "evil.tar.gz"
    with tarfile.open(tb, "w:gz") as t:
        t.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(ValueError, match="forbidden global"):
        ds.load_cifar10(tb)
    assert not marker.exists()


@pytest.mark.parametrize("payload,match", [
    (lambda: {b"data": np.zeros((1, 3072), object), b"labels": [0]}, "only uint8"),
    (lambda: {b"data": np.zeros((1, 3072), np.float64), b"labels": [0]}, "only uint8"),
    (lambda: {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"\(1, 3072\)"),
    (lambda: {b"data": b"\x00" * 3071, b"labels": [0]}, "3071 bytes"),
    (lambda: {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, r"ints in \[0, 9\]"),
    (lambda: {b"labels": [0]}, "missing key 'data'"),
    (lambda: [1, 2, 3], "expected a dict"),
    (lambda: {b"data": np.rec.fromarrays([np.zeros(3072, np.uint8)]), b"labels": [0]},
     "forbidden global|only"),
])
def test_cifar_foreign_batches(tmp_path, payload, match):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(payload(), f, protocol=2)
    with pytest.raises(ValueError, match=match):
        ds.load_cifar10(folder)


def test_cifar_truncated_and_garbage_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_folder(folder)
    blob = (folder / "data_batch_1").read_bytes()
    (folder / "data_batch_1").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="data_batch_1.*not a valid CIFAR-10 batch"):
        ds.load_cifar10(folder)
    (folder / "data_batch_1").write_bytes(b"this is not a pickle at all")
    with pytest.raises(ValueError, match="data_batch_1"):
        ds.load_cifar10(folder)
    os.remove(folder / "data_batch_1")
    with pytest.raises(ValueError, match="lacks data_batch_1"):
        ds.load_cifar10(folder)


def test_cifar_tarball_path_traversal_and_links_refused(tmp_path, monkeypatch):
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar_folder(src)
    good = [(f"cifar-10-batches-py/{n}", (src / n).read_bytes())
            for n in os.listdir(src)]
    run = tmp_path / "run"
    os.makedirs(run)
    monkeypatch.chdir(run)  # a naive extractall would write ../escaped.txt next to run/
    cases = {
        "traversal": [("cifar-10-batches-py/../../escaped.txt", b"owned")],
        "absolute": [("/tmp/fastconv-abs-escape.txt", b"owned")],
        "symlink": [("cifar-10-batches-py/link",
                     lambda i: (setattr(i, "type", tarfile.SYMTYPE),
                                setattr(i, "linkname", "/etc/passwd")))],
        "hardlink": [("cifar-10-batches-py/hard",
                      lambda i: (setattr(i, "type", tarfile.LNKTYPE),
                                 setattr(i, "linkname", "../../etc/passwd")))],
    }
    for label, bad in cases.items():
        tb = tmp_path / f"{label}.tar.gz"
        make_tarball(tb, good + bad)
        with pytest.raises(ValueError, match="unsafe member"):
            ds.load_cifar10(tb)
    assert not (tmp_path / "escaped.txt").exists()
    assert not os.path.exists("/tmp/fastconv-abs-escape.txt")


def test_cifar_broken_tarballs(tmp_path):
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar_folder(src)
    tb = tmp_path / "c.tar.gz"
    with tarfile.open(tb, "w:gz") as t:
        t.add(src, arcname="cifar-10-batches-py")
    blob = tb.read_bytes()
    tb.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="c.tar.gz"):
        ds.load_cifar10(tb)
    tb.write_bytes(b"not a tarball" * 100)
    with pytest.raises(ValueError, match="not a readable CIFAR-10 tarball"):
        ds.load_cifar10(tb)
    make_tarball(tb, [("cifar-10-batches-py/data_batch_1", (src / "data_batch_1").read_bytes())])
    with pytest.raises(ValueError, match="lacks.*test_batch"):
        ds.load_cifar10(tb)


def damage(path, where):
    """path with the 8 bytes at fraction `where` of its length inverted."""
    blob = bytearray(path.read_bytes())
    at = int(len(blob) * where)
    blob[at:at + 8] = bytes(b ^ 0xFF for b in blob[at:at + 8])
    path.write_bytes(bytes(blob))


def test_cifar_corrupted_xz_and_bz2_tarballs_name_the_file(tmp_path):
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar_folder(src)
    for mode in ("xz", "bz2"):
        tb = tmp_path / f"cifar.tar.{mode}"
        with tarfile.open(tb, f"w:{mode}") as t:
            t.add(src, arcname="cifar-10-batches-py")
        check_cifar_ok = ds.load_cifar10(tb)
        assert check_cifar_ok[1][0].shape == (3, 32, 32, 3)
        good = tb.read_bytes()
        # damage near the end (xz: the block data and index, which lzma checks)
        for where in (0.5, 0.9, 0.97):
            tb.write_bytes(good)
            damage(tb, where)
            with pytest.raises(ValueError, match=rf"cifar\.tar\.{mode}: not a readable "
                                                 "CIFAR-10 tarball"):
                ds.load_cifar10(tb)


def test_cifar_not_found_is_a_data_not_found_error(clean_env):
    with pytest.raises(ds.DataNotFoundError) as info:
        ds.load_cifar10()
    err = info.value
    assert isinstance(err, FileNotFoundError)
    assert err.dataset == "cifar-10" and len(err.looked) >= 3
    msg = str(err)
    assert "path=" in msg and "download_cifar10()" in msg and ds.CIFAR10_URL in msg
    with pytest.raises(ds.DataNotFoundError) as info:
        ds.load_fashion_mnist()
    assert info.value.dataset == "fashion-mnist"


def test_fastconv_home_is_the_cache_and_searched(clean_env, monkeypatch):
    home = clean_env / "home"
    assert ds.cache_dir() == str(home / ".fastconv" / "datasets")
    monkeypatch.setenv("FASTCONV_HOME", str(clean_env / "fchome"))
    assert ds.cache_dir() == str(clean_env / "fchome" / "datasets")
    paths = ds.data_search_paths("mnist")
    assert paths[0] == str(clean_env / "fchome" / "datasets" / "mnist")
    assert str(home / ".fastconv" / "datasets" / "mnist") in paths
    arrays = write_idx_set(clean_env / "fchome" / "datasets" / "mnist")
    check_same(ds.load_mnist(), arrays)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def test_to_categorical():
    np.testing.assert_array_equal(ds.to_categorical([2, 0, 1]),
                                  [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    out = ds.to_categorical(np.array([[3], [1]], np.uint8), num_classes=5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    assert ds.to_categorical([1], 3, dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match="label 5, outside"):
        ds.to_categorical([5], num_classes=3)
    with pytest.raises(ValueError, match="labels >= 0, got -1"):
        ds.to_categorical([-1, 2])
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        ds.to_categorical([1], num_classes=0)
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(N, 1\)"):
        ds.to_categorical(np.zeros((2, 3), int))
    with pytest.raises(TypeError, match="integer labels"):
        ds.to_categorical([0.5])


def test_pad_images():
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    p = ds.pad_images(x)
    assert p.shape == (2, 32, 32, 1) and p.dtype == np.uint8
    np.testing.assert_array_equal(p[:, 2:30, 2:30, 0], x)
    assert p[:, :2].sum() == 0 and p[:, 30:].sum() == 0 and p[:, :, :2].sum() == 0
    q = ds.pad_images(np.ones((1, 3, 2, 3)), size=4, value=-1)
    assert q.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(q[0, :, :, 0], [[-1, 1, 1, -1], [-1, 1, 1, -1],
                                                  [-1, 1, 1, -1], [-1, -1, -1, -1]])
    with pytest.raises(ValueError, match="size must be >= the image size 28x28, got 20"):
        ds.pad_images(x, size=20)
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, C\)"):
        ds.pad_images(np.zeros((28, 28)))


def test_scale_images():
    s = ds.scale_images(np.array([0, 51, 255], np.uint8))
    assert s.dtype == np.float32
    np.testing.assert_allclose(s, [0.0, 0.2, 1.0], rtol=1e-7)
    assert ds.scale_images(np.zeros(2, np.uint8), dtype="float64").dtype == np.float64
    with pytest.raises(TypeError, match="uint8 pixel values, got dtype float64"):
        ds.scale_images(np.zeros(3))


def test_train_validation_split():
    x = np.arange(100)
    y = np.repeat(np.arange(4), 25)
    (xt, yt), (xv, yv) = ds.train_validation_split(x, y, 0.2, seed=3)
    assert len(xv) == 20 and len(xt) == 80
    assert sorted(np.concatenate([xt, xv]).tolist()) == list(range(100))
    np.testing.assert_array_equal(np.bincount(yv), [5, 5, 5, 5])  # stratified
    np.testing.assert_array_equal(y[xv], yv)                      # pairs stay together
    assert np.all(np.diff(xt) > 0) and np.all(np.diff(xv) > 0)    # order kept
    (_, _), (xv2, _) = ds.train_validation_split(x, y, 0.2, seed=3)
    np.testing.assert_array_equal(xv, xv2)
    (_, _), (xv3, _) = ds.train_validation_split(x, y, 0.2, seed=4)
    assert not np.array_equal(xv, xv3)
    (_, _), (_, yv1h) = ds.train_validation_split(x, ds.to_categorical(y), 0.2, seed=1)
    np.testing.assert_array_equal(yv1h.sum(axis=0), [5, 5, 5, 5])
    with pytest.raises(ValueError, match="same length, got 100 and 99"):
        ds.train_validation_split(x, y[:-1])
    with pytest.raises(ValueError, match=r"number in \(0, 1\), got 1.5"):
        ds.train_validation_split(x, y, 1.5)
    with pytest.raises(ValueError, match="leaves an empty part"):
        ds.train_validation_split(x[:3], y[:3], 0.1)


def test_random_flip():
    x = np.random.default_rng(0).random((50, 4, 5, 2))
    np.testing.assert_array_equal(ds.random_flip(x, rng=0, p=1.0), x[:, :, ::-1, :])
    np.testing.assert_array_equal(ds.random_flip(x, rng=0, p=0.0), x)
    np.testing.assert_array_equal(ds.random_flip(x.transpose(0, 3, 1, 2), rng=0, p=1.0,
                                                 data_format="channels_first"),
                                  x.transpose(0, 3, 1, 2)[..., ::-1])
    out = ds.random_flip(x, rng=1)
    flipped = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 40
    with pytest.raises(ValueError, match="data_format"):
        ds.random_flip(x, data_format="NHWC")


def test_random_shift_is_a_crop_of_the_padded_image():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 255, (20, 6, 7, 3), dtype=np.uint8)
    out = ds.random_shift(x, max_shift=2, rng=5)
    assert out.shape == x.shape and out.dtype == x.dtype
    shifts = set()
    for o, xi in zip(out, x):
        pad = np.pad(xi, ((2, 2), (2, 2), (0, 0)))
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if np.array_equal(pad[dy:dy + 6, dx:dx + 7], o)]
        assert found
        shifts.add(found[0])
    assert len(shifts) > 5
    np.testing.assert_array_equal(ds.random_shift(x, 0), x)
    with pytest.raises(ValueError, match="max_shift must be an int >= 0, got -1"):
        ds.random_shift(x, -1)


def test_mixup_blends_inputs_and_labels_with_the_same_weight():
    labels = np.arange(10) % 5
    y = ds.to_categorical(labels, 5)
    x = np.broadcast_to(labels[:, None, None, None].astype(np.float32), (10, 2, 2, 1))
    xm, ym = ds.mixup(x, y, alpha=0.4, rng=0)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)
    # x holds the class index, so the mixed x equals the label-weighted class index
    np.testing.assert_allclose(xm[:, 0, 0, 0], ym @ np.arange(5), rtol=1e-5, atol=1e-5)
    assert np.any((ym > 0.01) & (ym < 0.99))
    with pytest.raises(ValueError, match="one-hot labels"):
        ds.mixup(x, labels)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        ds.mixup(x, y, alpha=0)


def test_cifar_xz_damage_checked_after_the_last_member_is_corruption(tmp_path):
    """xz checks a block when its end is decoded, which can come after the tar's last
    member: the reader drains the stream so that the damage is reported as a damaged
    archive, not as garbage handed to the pickle parser.  (These mtimes put the
    damage there with the tarfile and lzma of this project's CI: found by a search
    over mtimes, 5 in 1800 before the fix.)"""
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_cifar_folder(src)
    for t, where in ((168, 0.97), (204, 0.9)):
        os.utime(src, (1_600_000_000 + t * 101,) * 2)
        for f in src.iterdir():
            os.utime(f, (1_700_000_000 + t * 37,) * 2)
        tb = tmp_path / "cifar.tar.xz"
        with tarfile.open(tb, "w:xz") as t_:
            t_.add(src, arcname="cifar-10-batches-py")
        damage(tb, where)
        with pytest.raises(ValueError, match=r"cifar\.tar\.xz: not a readable CIFAR-10 "
                                             "tarball"):
            ds.load_cifar10(tb)
