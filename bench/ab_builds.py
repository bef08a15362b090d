"""Two builds of fastconv timed alternately in one run: the check that a change to the
engine left the speed alone (docs/benchmarks/method.md, "Comparing two builds").

    python bench/ab_builds.py --old OLD_VENV/bin/python --new NEW_VENV/bin/python \
        [--rounds 7] [--batches 32 128] [--markdown out.md]

Each interpreter must have its own fastconv installed (a wheel of each commit in its own
virtual environment).  One worker process per build stays alive for the whole run; the
driver asks them in turn for the same case, round after round (the order within a pair
alternates), so both builds see the same machine state.  The cases are the layers of
LeNet-5 and the CIFAR-10 network (forward, forward + backward, both layouts), their
pooling layers, and the two networks' training step and inference.  The report gives
each case's median per build, new / old, and whether new is within 5% of old or faster.
Workers use only the public API, so any two commits can be compared.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

TOLERANCE = 1.05


# ----------------------------------------------------------------------------- worker
def _worker_cases(batches):
    import fastconv
    from fastconv import applications, benchmark

    cases = {}
    for batch in batches:
        for name in benchmark.CONV_LAYERS:
            for layout in ("channels_first", "channels_last"):
                x, w, b, gy, padding = benchmark.conv_case(name, batch, layout)
                x, w, b, gy = map(_aligned_copy, (x, w, b, gy))

                def fwd(x=x, w=w, b=b, padding=padding, layout=layout):
                    fastconv.conv2d(x, w, b, padding=padding, data_format=layout)

                def fwd_bwd(x=x, w=w, b=b, gy=gy, padding=padding, layout=layout):
                    fastconv.conv2d(x, w, b, padding=padding, data_format=layout)
                    fastconv.conv2d_backward(gy, x, w, padding=padding, data_format=layout)
                short = "nchw" if layout == "channels_first" else "nhwc"
                cases[f"{name} b{batch} {short} fwd"] = fwd
                cases[f"{name} b{batch} {short} fwd+bwd"] = fwd_bwd
        for name, (kind, c, h, wd, k) in benchmark.POOL_LAYERS.items():
            x = np.random.default_rng(0).standard_normal((batch, h, wd, c)).astype(
                np.float32)
            pool = fastconv.max_pool2d if kind == "max" else fastconv.avg_pool2d
            back = (fastconv.max_pool2d_backward if kind == "max"
                    else fastconv.avg_pool2d_backward)
            gy = np.ones_like(pool(x, k, data_format="channels_last"))

            def pfwd(x=x, pool=pool, k=k):
                pool(x, k, data_format="channels_last")

            def pbwd(x=x, gy=gy, back=back, k=k):
                back(gy, x, k, data_format="channels_last")
            cases[f"{name} b{batch} nhwc fwd"] = pfwd
            cases[f"{name} b{batch} nhwc bwd"] = pbwd
        for net, shape in (("lenet5", (32, 32, 1)), ("cifar10_cnn", (32, 32, 3))):
            fastconv.set_seed(0)
            model = getattr(applications, net)()
            model.compile("adam", "sparse_categorical_crossentropy")
            rng = np.random.default_rng(1)
            xb = rng.random((batch,) + shape, dtype=np.float32)
            yb = rng.integers(0, 10, batch)

            def step(model=model, xb=xb, yb=yb):
                model.train_on_batch(xb, yb)

            def infer(model=model, xb=xb, batch=batch):
                model.predict(xb, batch_size=batch, verbose=0)
            cases[f"{net} b{batch} training step"] = step
            cases[f"{net} b{batch} inference"] = infer
    return cases


def _aligned_copy(a, align=64):
    """a copied to an `align`-byte boundary: the same alignment in both workers, so
    that where the allocator happens to put an array does not time the builds apart."""
    buf = np.empty(a.nbytes + align, np.uint8)
    start = -buf.ctypes.data % align
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def _time(fn, min_time=0.2, repeat=5):
    """Median seconds of one call: calls grouped so that a group lasts min_time / repeat."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-6)
    number = max(1, int(min_time / repeat / once))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def worker(batches):
    cases = _worker_cases(batches)
    print(json.dumps(sorted(cases)), flush=True)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            break
        print(json.dumps(_time(cases[name])), flush=True)


# ----------------------------------------------------------------------------- driver
class _Worker:
    def __init__(self, python, batches):
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # each interpreter imports its own installed fastconv
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker", "--batches",
             *map(str, batches)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, cwd="/", env=env)
        self.cases = json.loads(self.proc.stdout.readline())

    def time(self, name):
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _version(python):
    code = ("import fastconv, json; c = fastconv.config(); print(json.dumps("
            "[fastconv.__file__, c['conv_isa'], [b.get('architecture') for b in c['blas']]]))")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True,
                                     check=True, cwd="/", env=env).stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", help="interpreter with the old build")
    p.add_argument("--new", help="interpreter with the new build")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    p.add_argument("--only", nargs="*", default=None, help="case name prefixes")
    p.add_argument("--markdown", metavar="PATH", help="also write the table here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.batches)
        return 0
    if not (args.old and args.new):
        p.error("--old and --new are required")
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    for label, py in (("old", args.old), ("new", args.new)):
        where, isa, blas = _version(py)
        print(f"{label}: {py}: {where} (conv kernels {isa}, BLAS kernel {blas})",
              file=sys.stderr)
    old, new = _Worker(args.old, args.batches), _Worker(args.new, args.batches)
    names = [n for n in old.cases if n in set(new.cases)]
    if args.only:
        names = [n for n in names if n.startswith(tuple(args.only))]
    times = {n: ([], []) for n in names}
    try:
        for r in range(args.rounds):
            for name in names:
                pair = (old, new) if r % 2 == 0 else (new, old)
                for w in pair:
                    times[name][0 if w is old else 1].append(w.time(name))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        old.close()
        new.close()
    lines = [f"| case | old ms | new ms | new / old | within {TOLERANCE - 1:.0%} |",
             "|---|---|---|---|---|"]
    worse = 0
    for name in names:
        o, n = (statistics.median(t) * 1e3 for t in times[name])
        ok = n <= o * TOLERANCE
        worse += not ok
        lines.append(f"| {name} | {o:.3f} | {n:.3f} | {n / o:.3f} | "
                     f"{'yes' if ok else 'NO'} |")
    lines.append("")
    lines.append(f"{len(names) - worse} of {len(names)} cases within "
                 f"{TOLERANCE - 1:.0%} of the old build or faster "
                 f"(medians of {args.rounds} alternating rounds).")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0 if worse == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
