#!/usr/bin/env python3
"""Make the Fashion-MNIST subset bundled in fastconv/data/, reproducibly.

Source: the four official Fashion-MNIST IDX files (Zalando Research, MIT licence), as
installed by Debian's package (``apt-get install dataset-fashion-mnist`` puts them in
/usr/share/datasets/fashion-mnist) or any folder holding them.

Selection: class-balanced, seeded. From the 60,000 training images, N_TRAIN/10 per class;
from the 10,000 test images, N_TEST/10 per class; for each split and class, the indices
are drawn without replacement by ``numpy.random.default_rng(SEED + split_offset)`` (train
offset 0, test offset 1), classes in order 0..9, then all chosen indices are sorted, so
the images keep the order of the original files (which is already class-mixed).

Output: fastconv/data/fashion-mnist-subset-{train-images-idx3-ubyte, train-labels-idx1-
ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte}.gz in the original IDX format
(magic 0x00000803 / 0x00000801, big-endian counts), gzip level 9 with an empty file name
and mtime 0, so the same inputs give byte-identical files. The SHA-256 of each file is
printed; they are recorded in fastconv/data/README-fashion-mnist-subset.txt.

Usage (the command that made the bundled files):
    python tools/make_bundled_subset.py --source /usr/share/datasets/fashion-mnist
"""
import argparse
import gzip
import hashlib
import io
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from fastconv.datasets import load_fashion_mnist  # noqa: E402

SEED = 20240607
PREFIX = "fashion-mnist-subset-"


def balanced_indices(labels, n_total, seed):
    classes = np.unique(labels)
    if n_total % len(classes):
        raise SystemExit(f"{n_total} is not a multiple of {len(classes)} classes")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=n_total // len(classes),
                         replace=False) for c in classes]
    return np.sort(np.concatenate(chosen))


def idx_bytes(arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write_gz(path, payload):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as g:
        g.write(payload)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist",
                    help="folder with the four official IDX files")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "fastconv", "data"))
    ap.add_argument("--train", type=int, default=9000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    (x_tr, y_tr), (x_te, y_te) = load_fashion_mnist(args.source)
    if (len(x_tr), len(x_te)) != (60000, 10000):
        raise SystemExit(f"expected the full 60,000/10,000 images, got "
                         f"{len(x_tr)}/{len(x_te)}")
    i_tr = balanced_indices(y_tr, args.train, args.seed)
    i_te = balanced_indices(y_te, args.test, args.seed + 1)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for stem, arr in (("train-images-idx3-ubyte", x_tr[i_tr]),
                      ("train-labels-idx1-ubyte", y_tr[i_tr]),
                      ("t10k-images-idx3-ubyte", x_te[i_te]),
                      ("t10k-labels-idx1-ubyte", y_te[i_te])):
        path = os.path.join(args.out, PREFIX + stem + ".gz")
        digest = write_gz(path, idx_bytes(arr))
        size = os.path.getsize(path)
        total += size
        print(f"{os.path.basename(path)}  {arr.shape}  {size} bytes  sha256 {digest}")
    print(f"total {total} bytes; seed {args.seed}; train {args.train}, test {args.test}")


if __name__ == "__main__":
    main()
