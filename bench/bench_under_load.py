"""Training steps under load: how much fastconv and PyTorch slow down when two other
processes keep both cores busy (issue 24: each network's loaded / quiet ratio no
larger than PyTorch's).

    PYTHONPATH=. python bench/bench_under_load.py [--nets lenet5 cifar10_cnn resnet20
        mobilenet_v2] [--batch 32] [--rounds 7]

Each network's fastconv (channels_last) and PyTorch (its faster memory format for the
network: channels_last for ResNet-20 and MobileNetV2, NCHW for the two small ones)
training steps are timed interleaved, medians, first on the quiet machine, then with
two busy processes (each a Python loop, one per core) started beside them; the ratio
loaded / quiet is computed for each system from the same kind of run.  The busy
processes run at the same priority as the benchmark.  Run it on an otherwise quiet
machine: the quiet half is the reference.
"""
import argparse
import multiprocessing as mp
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastconv  # noqa: E402
from fastconv import _contention  # noqa: E402

import bench_models  # noqa: E402
import bench_modern_nets  # noqa: E402
from _frontier_common import interleaved  # noqa: E402

NETS = ("lenet5", "cifar10_cnn", "resnet20", "mobilenet_v2")


def _spin(stop):
    """A busy process: a pure Python loop until stop is set."""
    n = 0
    while not stop.is_set():
        for _ in range(10000):
            n += 1


def step_fns(torch, net, batch):
    """{system: training step} for net at batch."""
    if net in ("lenet5", "cifar10_cnn"):
        fc_train, _ = bench_models.fastconv_steps(net, batch)
        torch_train, _ = bench_models.torch_steps(torch, net, batch)
    else:
        _, fc_train, _ = bench_modern_nets.fastconv_fns(net, "channels_last", batch, ())
        torch_train, _ = bench_modern_nets.torch_fns(torch, net, torch.channels_last,
                                                     batch, ())
    return {"fastconv": fc_train, "torch": torch_train}


def measure(torch, nets, batch, rounds, busy):
    """{net: {system: (quiet ms, loaded ms)}}, busy: the number of busy processes."""
    fns = {net: step_fns(torch, net, batch) for net in nets}
    quiet = {net: interleaved(f, rounds) for net, f in fns.items()}
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True)
                for _ in range(busy)]
    for p in spinners:
        p.start()
    time.sleep(1.0)
    try:
        loaded = {net: interleaved(f, rounds) for net, f in fns.items()}
    finally:
        stop.set()
        for p in spinners:
            p.join(5)
    return {net: {s: (quiet[net][s], loaded[net][s]) for s in fns[net]} for net in nets}


def report(results, batch, busy):
    lines = [f"| network (batch {batch}) | fastconv quiet | fastconv loaded | "
             "fastconv slowdown | torch quiet | torch loaded | torch slowdown | "
             "target: fastconv's slowdown <= torch's |",
             "|---|---|---|---|---|---|---|---|"]
    for net, r in results.items():
        fq, fl = r["fastconv"]
        tq, tl = r["torch"]
        ok = "met" if fl / fq <= tl / tq else "**not met**"
        lines.append(f"| {net} | {fq:.2f} | {fl:.2f} | {fl / fq:.2f}x | {tq:.2f} | "
                     f"{tl:.2f} | {tl / tq:.2f}x | {ok} |")
    lines.append("\n(ms per training step, medians of interleaved rounds; loaded: "
                 f"{busy} busy processes beside the benchmark)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--busy", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-adapt", action="store_true",
                   help="keep all threads under load (fastconv/_contention.py off)")
    args = p.parse_args(argv)
    _contention.ENABLED = not args.no_adapt   # (_frontier_common turned it off)
    import torch
    fastconv.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"fastconv {fastconv.__version__}, torch {torch.__version__}, {args.threads} "
          f"threads, one thread under load: {'on' if _contention.ENABLED else 'off'}, "
          f"load before {os.getloadavg()[0]:.2f}")
    results = measure(torch, args.nets, args.batch, args.rounds, args.busy)
    print(report(results, args.batch, args.busy))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
