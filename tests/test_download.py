"""fastconv.datasets.get_file / download_cifar10 against a local HTTP server.

The server is http.server on 127.0.0.1 in a thread; it serves small archives written
here in the CIFAR-10 format.  No test reaches beyond the loopback address.
"""
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading

import numpy as np
import pytest

from fastconv import datasets as ds


def cifar_tarball(n=2, seed=0):
    """A small archive in the layout of cifar-10-python.tar.gz; returns (bytes,
    test images in (N, 32, 32, 3), training labels)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    test_x, train_y = None, []
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, n)]
            payload = pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
            if name == "test_batch":
                test_x = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
            else:
                train_y += labels
    return buf.getvalue(), test_x, np.array(train_y)


class _Handler(http.server.BaseHTTPRequestHandler):
    files = {}      # path -> bytes
    hits = []       # paths requested
    lie_length = {}  # path -> Content-Length to announce instead of the real one

    def do_GET(self):
        self.hits.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.lie_length.get(self.path, len(body))))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.hits, _Handler.lie_length = {}, [], {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield base, _Handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def archive():
    blob, test_x, train_y = cifar_tarball()
    return blob, (test_x, train_y)


def md5(b):
    return hashlib.md5(b).hexdigest()


def test_get_file_downloads_verifies_and_caches(server, archive, tmp_path):
    base, handler = server
    blob, _ = archive
    handler.files["/c.tgz"] = blob
    cache = tmp_path / "cache"
    seen = []
    path = ds.get_file("c.tgz", base + "/c.tgz", md5_hash=md5(blob), cache_dir=cache,
                       timeout=10, progress=lambda done, total: seen.append((done, total)))
    assert path == str(cache / "c.tgz")
    assert open(path, "rb").read() == blob
    assert seen[-1] == (len(blob), len(blob))
    assert os.listdir(cache) == ["c.tgz"]  # no temporary file left behind
    # a second call finds the verified copy and does not download again
    assert ds.get_file("c.tgz", base + "/c.tgz", md5_hash=md5(blob).upper(),
                       cache_dir=cache) == path
    assert handler.hits == ["/c.tgz"]
    # sha256 works too; a cached file whose checksum does not match is fetched again
    (cache / "c.tgz").write_bytes(b"stale")
    ds.get_file("c.tgz", base + "/c.tgz", sha256_hash=hashlib.sha256(blob).hexdigest(),
                cache_dir=cache)
    assert (cache / "c.tgz").read_bytes() == blob and len(handler.hits) == 2


def test_checksum_mismatch_deletes_the_file(server, archive, tmp_path):
    base, handler = server
    blob, _ = archive
    handler.files["/c.tgz"] = blob
    cache = tmp_path / "cache"
    wrong = "0" * 32
    with pytest.raises(ValueError) as info:
        ds.get_file("c.tgz", base + "/c.tgz", md5_hash=wrong, cache_dir=cache)
    msg = str(info.value)
    assert md5(blob) in msg and wrong in msg and "/c.tgz" in msg
    assert os.listdir(cache) == []


def test_http_errors_and_truncated_transfers(server, tmp_path):
    base, handler = server
    cache = tmp_path / "cache"
    with pytest.raises(ds.DownloadError, match=r"/missing\.tgz failed: HTTP 404"):
        ds.get_file("m.tgz", base + "/missing.tgz", md5_hash="0" * 32, cache_dir=cache)
    handler.files["/short"] = b"x" * 1000
    handler.lie_length["/short"] = 5000  # the server closes after 1000 of 5000 bytes
    with pytest.raises(ds.DownloadError, match="short"):
        ds.get_file("s", base + "/short", md5_hash=md5(b"x" * 1000), cache_dir=cache,
                    timeout=5)
    assert os.listdir(cache) == []
    # nothing listens on this port (bound, then closed)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ds.DownloadError, match=rf"127\.0\.0\.1:{port}.*failed"):
        ds.get_file("n", f"http://127.0.0.1:{port}/n", md5_hash="0" * 32,
                    cache_dir=cache, timeout=5)
    assert isinstance(ds.DownloadError("x"), OSError)


@pytest.mark.parametrize("kwargs,match", [
    (dict(fname="../x", origin="http://127.0.0.1/x", md5_hash="0" * 32), "plain file name"),
    (dict(fname="x", origin="file:///etc/passwd", md5_hash="0" * 32), "http:// or https://"),
    (dict(fname="x", origin="http://127.0.0.1/x"), "exactly one of md5_hash"),
    (dict(fname="x", origin="http://127.0.0.1/x", md5_hash="0" * 32,
          sha256_hash="0" * 64), "exactly one of"),
    (dict(fname="x", origin="http://127.0.0.1/x", md5_hash="xyz"), "32 hexadecimal"),
    (dict(fname="x", origin="http://127.0.0.1/x", sha256_hash="0" * 32), "64 hexadecimal"),
    (dict(fname="x", origin="http://127.0.0.1/x", md5_hash="0" * 32, timeout=0),
     "timeout must be"),
])
def test_get_file_checks_its_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ds.get_file(cache_dir=tmp_path, **kwargs)
    assert os.listdir(tmp_path) == []


def test_download_cifar10_into_the_default_cache_is_then_found(server, archive, tmp_path,
                                                                monkeypatch):
    base, handler = server
    blob, expected = archive
    handler.files["/cifar-10-python.tar.gz"] = blob
    monkeypatch.setattr(ds, "CIFAR10_URL", base + "/cifar-10-python.tar.gz")
    monkeypatch.setattr(ds, "CIFAR10_MD5", md5(blob))
    monkeypatch.setenv("FASTCONV_HOME", str(tmp_path / "fchome"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(ds, "DEBIAN_DIRS", ())
    with pytest.raises(ds.DataNotFoundError):
        ds.load_cifar10()
    path = ds.download_cifar10()
    assert path == str(tmp_path / "fchome" / "datasets" / "cifar-10-python.tar.gz")
    (x_train, y_train), (x_test, y_test) = ds.load_cifar10()
    np.testing.assert_array_equal(x_test, expected[0])
    np.testing.assert_array_equal(y_train[:, 0], expected[1])


def test_official_constants():
    assert ds.CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert ds.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"


def test_fastconv_train_cifar10_download(server, archive, tmp_path, monkeypatch, capsys):
    from fastconv import cli
    base, handler = server
    blob, _ = archive
    handler.files["/cifar-10-python.tar.gz"] = blob
    monkeypatch.setattr(ds, "CIFAR10_URL", base + "/cifar-10-python.tar.gz")
    monkeypatch.setenv("FASTCONV_HOME", str(tmp_path / "fchome"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(ds, "DEBIAN_DIRS", ())
    argv = ["train", "cifar10", "--epochs", "1", "--batch-size", "5", "--limit", "5"]
    # without --download nothing is fetched, and the error says how to get the data
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "--download" in err and "--data PATH" in err and handler.hits == []
    # a wrong checksum: one line naming both, no file left in the cache
    monkeypatch.setattr(ds, "CIFAR10_MD5", "f" * 32)
    assert cli.main(argv + ["--download"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "f" * 32 in err and md5(blob) in err
    assert not os.path.exists(tmp_path / "fchome" / "datasets" / "cifar-10-python.tar.gz")
    # the right checksum: downloaded, verified, trained on
    monkeypatch.setattr(ds, "CIFAR10_MD5", md5(blob))
    assert cli.main(argv + ["--download"]) == 0
    out = capsys.readouterr().out
    cached = tmp_path / "fchome" / "datasets" / "cifar-10-python.tar.gz"
    assert f"md5 {md5(blob)} verified: {cached}" in out
    assert "test accuracy" in out and cached.read_bytes() == blob
    assert len(handler.hits) == 2
    # next time the cached archive is found without --download and without a request
    assert cli.main(argv + ["--quiet"]) == 0
    assert len(handler.hits) == 2
