"""The keyed digest that tells the inference pass a weight changed (src/digest.h).

The oracle is a NumPy transcription of the layout the header describes (stripes,
blocks, two keyed products per word, the scramble, the chunks' fold), written from
that description: the C versions (portable and this CPU's vector build, one or two
threads) must give its value for every length around the stripe, block and chunk
edges.  The rest are properties that could fail: that changes a program makes to
weights (one bit anywhere, sign flips, permutations, appended zeros) change the
digest, and that Prepared sees them."""
import numpy as np
import pytest

from fastconv import _ext

LANES, STRIPES, CHUNK = 8, 16, 64 * 1024
ACC = 2 * LANES
K_SCRAMBLE = STRIPES + ACC - 1
K_INIT = K_SCRAMBLE + ACC
K_LENGTH = K_INIT + ACC
M64 = (1 << 64) - 1


def _fmix(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def _stripes(acc, words, key, first):
    """Adds stripes (rows of 8 words; stripe j of them at block position first + j)."""
    with np.errstate(over="ignore"):
        for j, w in enumerate(words):
            s = first + j
            v, u = w ^ key[s:s + LANES], w ^ key[s + LANES:s + ACC]
            swap = (w << np.uint64(32)) | (w >> np.uint64(32))
            acc[:LANES] += (v & np.uint64(M64 >> 32)) * (v >> np.uint64(32)) + swap
            acc[LANES:] += (u & np.uint64(M64 >> 32)) * (u >> np.uint64(32)) + w


def _plain(buf, key):
    n = len(buf)
    acc = key[K_INIT:K_INIT + ACC].copy()
    full = n // 64
    words = np.frombuffer(buf[:full * 64], "<u8").reshape(full, LANES)
    with np.errstate(over="ignore"):
        for b in range(0, full - full % STRIPES, STRIPES):
            _stripes(acc, words[b:b + STRIPES], key, 0)
            a = acc ^ (acc >> np.uint64(47)) ^ key[K_SCRAMBLE:K_SCRAMBLE + ACC]
            acc = a * np.uint64(0x9e3779b1)
    rest = words[full - full % STRIPES:]
    _stripes(acc, rest, key, 0)
    if n % 64:
        last = np.zeros(64, np.uint8)
        last[:n % 64] = np.frombuffer(buf[full * 64:], np.uint8)
        _stripes(acc, last.view("<u8").reshape(1, LANES), key, len(rest))
    h = _fmix(n ^ int(key[K_LENGTH]))
    for a in acc.tolist():
        h = (_fmix(h ^ a) + a) & M64
    return h


def reference(buf, key_bytes):
    """The digest of bytes buf under key_bytes, from the header's description."""
    key = np.frombuffer(key_bytes, "<u8")
    n = len(buf)
    if n <= CHUNK:
        return _plain(buf, key)
    h = _fmix(n ^ int(key[K_LENGTH]))
    for at in range(0, n, CHUNK):
        c = _plain(buf[at:at + CHUNK], key)
        h = (_fmix(h ^ c) + c) & M64
    return h


def _key(seed):
    return np.random.default_rng(seed).bytes(_ext.conv2d.DIGEST_KEY_BYTES)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 63, 64, 65, 1023, 1024, 1025, 1024 * 3 + 200,
                               CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 4100,
                               3 * CHUNK])
def test_digest_matches_the_reference(n):
    key = _key(n)
    buf = np.random.default_rng(n + 1).bytes(n)
    want = reference(buf, key)
    a = np.frombuffer(buf, np.uint8)
    for portable in (True, False):
        for threads in (1, 2):
            assert _ext.conv2d.digest(a, key, portable, threads) == want, \
                (portable, threads)


def test_digest_rejects_bad_keys_and_thread_counts():
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="key must have"):
        _ext.conv2d.digest(a, b"short")
    with pytest.raises(ValueError, match="threads must be"):
        _ext.conv2d.digest(a, _key(0), threads=0)


def _changes(w):
    """Arrays a program may write in place of w (float32, 2-D), each differing from it."""
    rows = w.copy()
    rows[[0, 16]] = rows[[16, 0]]                 # two rows swapped (16 apart)
    cols = w.copy()
    cols[:, [1, 9]] = cols[:, [9, 1]]             # two columns swapped (8 apart)
    two = w.copy()
    two.flat[[3, 3 + 128]] *= -1                  # two sign flips, same lane and block
    out = [-w, w * 2, rows, cols, two, np.roll(w, 1, axis=0), w[::-1].copy()]
    for i in (0, 1, 255, 256, w.size // 2, w.size - 1):
        for bit in (0, 22, 31):                   # mantissa, sign
            c = w.copy()
            c.view(np.uint32).flat[i] ^= np.uint32(1 << bit)
            out.append(c)
    return out


def test_changes_to_a_weight_change_its_signature():
    """Signatures (the process's key) of changed arrays differ from the original's;
    equal bytes give equal signatures."""
    sig = _ext.conv2d.signature
    rng = np.random.default_rng(3)
    for shape in ((64, 288), (17, 20), (300, 700)):
        w = rng.standard_normal(shape).astype(np.float32)
        base = sig(w)
        assert sig(w.copy()) == base
        for c in _changes(w):
            assert not np.array_equal(c.view(np.uint32), w.view(np.uint32))
            assert sig(c) != base
        z = np.zeros(w.size + 1, np.float32)
        z[:-1] = w.ravel()
        assert sig(z)[2] != base[2]             # a zero appended: another digest
        assert sig(w.reshape(-1))[1:] != base[1:] and sig(w.reshape(-1))[2] == base[2]


def test_many_keys_each_see_the_changes():
    """The same changes under 20 random keys (the portable and vector blocks)."""
    w = np.random.default_rng(4).standard_normal((40, 100)).astype(np.float32)
    changes = _changes(w)
    for seed in range(20):
        key = _key(100 + seed)
        base = _ext.conv2d.digest(w, key, seed % 2 == 0)
        assert all(_ext.conv2d.digest(c, key, seed % 2 == 0) != base for c in changes)


def test_the_digest_is_keyed():
    w = np.arange(1000, dtype=np.float32)
    assert _ext.conv2d.digest(w, _key(1)) != _ext.conv2d.digest(w, _key(2))


def test_buffers_of_many_chunks_digest_alike_everywhere():
    """Over 64 chunks (the chunks' digests then go to the heap): the same digest on one
    and two threads, portable and vector blocks, and a one-bit change seen."""
    key = _key(9)
    a = np.random.default_rng(9).standard_normal(70 * CHUNK // 4 + 3).astype(np.float32)
    want = _ext.conv2d.digest(a, key, True, 1)
    assert all(_ext.conv2d.digest(a, key, p, t) == want
               for p in (True, False) for t in (1, 2))
    a.view(np.uint32)[-70] ^= np.uint32(1)
    assert _ext.conv2d.digest(a, key, False, 2) != want
