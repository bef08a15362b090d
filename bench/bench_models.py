"""Model-level benchmarks: one training step (forward, loss, backward, update) and one
inference pass of LeNet-5 and the CIFAR-10 network, fastconv against the equivalent
PyTorch nn.Sequential (NCHW, its native layout), at batch 32 and 128, float32.

Both systems train with the same optimizer (Adam for LeNet-5, RMSprop(1e-4) for the
CIFAR-10 network, as fastconv.applications compiles them) and a fused softmax
cross-entropy.  PyTorch runs with as many threads as fastconv (OpenMP).

Two ways to run it:

    # the comparison table (interleaved rounds, medians, ratio), the figures to quote
    python bench/bench_models.py [--rounds 15] [--nets lenet5 cifar10_cnn]
    # pytest-benchmark suites for regression tracking
    python -m pytest bench/bench_models.py --benchmark-only

``--profile`` adds a per-layer breakdown of fastconv's training step.
"""
import argparse
import collections
import time

import numpy as np
import pytest

import fastconv
from fastconv import applications

NETS = ("lenet5", "cifar10_cnn")
BATCHES = (32, 128)


def make_data(net, batch, seed=0):
    shape = (32, 32, 1) if net == "lenet5" else (32, 32, 3)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + shape).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    return x, labels


def fastconv_model(net):
    fastconv.set_seed(0)
    return getattr(applications, net)()


def fastconv_steps(net, batch):
    """(train_step, infer) closures for fastconv."""
    model = fastconv_model(net)
    x, labels = make_data(net, batch)
    y = np.eye(10, dtype=np.float32)[labels]

    def train():
        model.train_on_batch(x, y)

    def infer():
        model.predict_on_batch(x)
    return train, infer


def torch_model(torch, net):
    nn = torch.nn
    torch.manual_seed(0)
    if net == "lenet5":
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(),
            nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    else:
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(2304, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10))
        opt = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9, eps=1e-7)
    return model, opt


def torch_steps(torch, net, batch):
    model, opt = torch_model(torch, net)
    x, labels = make_data(net, batch)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(labels)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train():
        model.train()
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.no_grad():
            model(xt)
    return train, infer


# --------------------------------------------------------------------------- pytest
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_fastconv(benchmark, net, batch, mode):
    train, infer = fastconv_steps(net, batch)
    benchmark.group = f"{net}.{mode}.b{batch}"
    benchmark(train if mode == "train" else infer)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_torch(benchmark, torch, net, batch, mode):
    torch.set_num_threads(fastconv.get_num_threads())
    train, infer = torch_steps(torch, net, batch)
    benchmark.group = f"{net}.{mode}.b{batch}"
    benchmark(train if mode == "train" else infer)


# --------------------------------------------------------------------------- table
def interleaved(fns, rounds, warmup=3):
    """Median seconds of each callable, timed round-robin so load hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def profile_step(net, batch, steps=10):
    """Per-layer milliseconds of fastconv's training step (forward and backward)."""
    model = fastconv_model(net)
    x, labels = make_data(net, batch)
    y = np.eye(10, dtype=np.float32)[labels]
    for _ in range(3):
        model.train_on_batch(x, y)
    spent = collections.defaultdict(float)

    def timed(fn, key):
        def wrapper(*args):
            t = time.perf_counter()
            out = fn(*args)
            spent[key] += time.perf_counter() - t
            return out
        return wrapper
    for i, layer in enumerate(model.layers):
        label = f"{i}:{type(layer).__name__}"
        if getattr(layer, "activation", "linear") != "linear":
            label += f"({layer.activation})"
        for attr, kind in (("_linear_forward", "forward"), ("_linear_backward", "backward"),
                           ("_act_backward", "act.bwd")):
            fn = getattr(layer, attr)
            if fn is not None:
                setattr(layer, attr, timed(fn, (label, kind)))
    opt = model.optimizer
    opt.apply = timed(opt.apply, ("optimizer", "update"))
    t = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    total = (time.perf_counter() - t) / steps
    lines = [f"{net} training step at batch {batch}: {total * 1e3:.2f} ms"]
    for (name, kind), sec in sorted(spent.items(), key=lambda kv: -kv[1]):
        ms = sec / steps * 1e3
        lines.append(f"  {name:>24} {kind:<9} {ms:8.2f} ms {100 * ms / total / 1e3:5.1f}%")
    other = total * 1e3 - sum(spent.values()) / steps * 1e3
    lines.append(f"  {'rest (act. forward, loss)':>24} {'':<9} {other:8.2f} ms")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    threads = fastconv.get_num_threads()
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    cfg = fastconv.config()
    print(f"fastconv {cfg['fastconv']}, OpenMP {'on' if cfg['openmp'] else 'off'}, "
          f"{threads} threads; " + (f"torch {torch.__version__}, "
                                    f"{torch.get_num_threads()} threads" if torch
                                    else "torch not installed"))
    print(f"{'case':<28}{'fastconv ms':>12}{'torch ms':>10}{'fc/torch':>10}")
    for net in args.nets:
        for batch in args.batches:
            fc_train, fc_infer = fastconv_steps(net, batch)
            fns = {"fc.train": fc_train, "fc.infer": fc_infer}
            if torch is not None:
                t_train, t_infer = torch_steps(torch, net, batch)
                fns.update({"t.train": t_train, "t.infer": t_infer})
            med = interleaved(fns, args.rounds)
            for mode in ("train", "infer"):
                fc_ms = med[f"fc.{mode}"] * 1e3
                row = f"{net + '.' + mode + '.b' + str(batch):<28}{fc_ms:>12.2f}"
                if torch is not None:
                    t_ms = med[f"t.{mode}"] * 1e3
                    row += f"{t_ms:>10.2f}{fc_ms / t_ms:>10.2f}"
                print(row, flush=True)
    if args.profile:
        for net in args.nets:
            print(profile_step(net, max(args.batches)))


if __name__ == "__main__":
    main()
