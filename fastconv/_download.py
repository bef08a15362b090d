"""Downloads into a cache folder, verified by a checksum (``datasets.get_file``).

Nothing here runs unless a user asks for a download (``fastconv train cifar10
--download``, ``datasets.download_cifar10``); the data loaders only read files.
"""
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["get_file", "DownloadError", "default_cache_dir", "HOME_ENV_VAR"]

HOME_ENV_VAR = "FASTCONV_HOME"


class DownloadError(OSError):
    """A download failed (network, HTTP status, truncated transfer)."""


def default_cache_dir():
    """``$FASTCONV_HOME/datasets`` when ``FASTCONV_HOME`` is set, else
    ``~/.fastconv/datasets`` (read from the environment at call time)."""
    env = os.environ.get(HOME_ENV_VAR)
    if env:
        return os.path.join(os.path.expanduser(env), "datasets")
    return os.path.join(os.path.expanduser("~"), ".fastconv", "datasets")


_CHUNK = 1 << 20


def squash(exc):
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _file_digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check_hash(value, name, length):
    if not isinstance(value, str) or len(value) != length or any(
            c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(f"{name} must be a string of {length} hexadecimal digits, got "
                         f"{value!r}")
    return value.lower()


def get_file(fname, origin, md5_hash=None, sha256_hash=None, cache_dir=None,
             timeout=60.0, progress=None):
    """Download ``origin`` to ``cache_dir/fname`` once, verified by its checksum, and
    return the local path (after the manner of ``keras.utils.get_file``).

    A file already in the cache whose checksum matches is returned without a download;
    one that does not match is downloaded again. The transfer goes to a temporary file
    in ``cache_dir``, is hashed while it is written, and is renamed to ``fname`` only
    when the checksum matches; otherwise the partial file is deleted and ValueError
    names the expected and the received checksum. Network failures, HTTP errors and
    truncated transfers raise :class:`DownloadError` (an OSError) naming the URL.

    Parameters
    ----------
    fname : str
        File name inside ``cache_dir`` (a plain name, no folder).
    origin : str
        An ``http://`` or ``https://`` URL.
    md5_hash, sha256_hash : str
        The expected checksum in hexadecimal; exactly one must be given (fastconv only
        downloads what it can verify).
    cache_dir : str or path-like, optional
        Default :func:`cache_dir` (``$FASTCONV_HOME/datasets`` or
        ``~/.fastconv/datasets``); created when missing.
    timeout : float
        Seconds to wait for the connection and for each read (default 60).
    progress : callable, optional
        Called as ``progress(bytes_done, bytes_total_or_None)`` during the transfer.
    """
    if not isinstance(fname, str) or not fname or os.path.basename(fname) != fname \
            or fname in (".", ".."):
        raise ValueError(f"fname must be a plain file name without a folder, got "
                         f"{fname!r}")
    if not isinstance(origin, str) or urllib.parse.urlsplit(origin).scheme not in (
            "http", "https"):
        raise ValueError(f"origin must be an http:// or https:// URL, got {origin!r}")
    if (md5_hash is None) == (sha256_hash is None):
        raise ValueError("give exactly one of md5_hash and sha256_hash (got "
                         f"md5_hash={md5_hash!r}, sha256_hash={sha256_hash!r})")
    if md5_hash is not None:
        algorithm, expected = "md5", _check_hash(md5_hash, "md5_hash", 32)
    else:
        algorithm, expected = "sha256", _check_hash(sha256_hash, "sha256_hash", 64)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
            not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    folder = os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None \
        else default_cache_dir()
    target = os.path.join(folder, fname)
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot download to {target}: it is a folder")
    if os.path.isfile(target) and _file_digest(target, algorithm) == expected:
        return target
    os.makedirs(folder, exist_ok=True)

    fd, tmp = tempfile.mkstemp(prefix=fname + ".", suffix=".part", dir=folder)
    try:
        h = hashlib.new(algorithm)
        done = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(origin, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    while True:
                        block = response.read(_CHUNK)
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"downloading {origin} failed: HTTP {exc.code} "
                                    f"{exc.reason}") from None
            except urllib.error.URLError as exc:
                raise DownloadError(f"downloading {origin} failed: "
                                    f"{squash(exc.reason)}") from None
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # timeouts, resets, malformed or cut-short responses
                raise DownloadError(f"downloading {origin} failed after {done} bytes: "
                                    f"{type(exc).__name__}: {squash(exc)}") from None
        if total is not None and done != total:
            raise DownloadError(f"downloading {origin} failed: received {done} of "
                                f"{total} bytes")
        got = h.hexdigest()
        if got != expected:
            raise ValueError(f"downloaded {origin} has {algorithm} {got}, expected "
                             f"{expected}: the partial file was deleted (a corrupted "
                             f"transfer or a changed file on the server)")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target
