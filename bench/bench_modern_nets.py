"""ResNet-20 and MobileNetV2 (32x32, alpha 1, 10 classes): fastconv (NHWC and NCHW)
against PyTorch (the faster of channels_last and NCHW) for the training step and
inference, and ONNX Runtime for inference, 2 threads, float32 (issue 25, "Speed").

    PYTHONPATH=. python bench/bench_modern_nets.py [--rounds 7] [--threads 2]
        [--nets resnet20 mobilenet_v2] [--no-memory] [--profile resnet20]

Every row of one network is timed interleaved (bench/_frontier_common.interleaved), so a
burst of load hits all systems alike; the ratios come from that one run.  The PyTorch
networks are written here layer for layer as fastconv's (fastconv/_modern_nets.py):
ResNet-20 with 1x1 projection + BatchNorm shortcuts, MobileNetV2 by hand (torchvision is
not a dependency).  ONNX Runtime runs fastconv's channels_first model exported with
fastconv.onnx.export (all graph optimisations on), in two sessions: threads that wait
without spinning and ORT's default spinning ones, each call after 0.1 s of its own
calls, the faster reported.  Peak memory: 50 training steps in a
child process each (this file with --memory-child), the high-water mark of its resident
set after the steps minus the one before the first step.
"""
import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastconv  # noqa: E402
from fastconv import applications  # noqa: E402
import fastconv.onnx  # noqa: E402

from _frontier_common import interleaved  # noqa: E402

NETS = ("resnet20", "mobilenet_v2")
FORMATS = {"nhwc": "channels_last", "nchw": "channels_first"}


# ------------------------------------------------------------------------ fastconv
def fastconv_model(net, data_format):
    fastconv.set_seed(0)
    if net == "resnet20":
        shape = (32, 32, 3) if data_format == "channels_last" else (3, 32, 32)
        return applications.resnet20(shape, data_format=data_format)
    shape = (32, 32, 3) if data_format == "channels_last" else (3, 32, 32)
    model = applications.mobilenet_v2(shape, alpha=1.0, classes=10,
                                      data_format=data_format, compile=False)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    return model


def make_data(batch, data_format, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x, labels


def fastconv_fns(net, data_format, batch, infer_batches):
    model = fastconv_model(net, data_format)
    x, labels = make_data(batch, data_format)
    y = np.eye(10, dtype=np.float32)[labels]
    train = lambda: model.train_on_batch(x, y)  # noqa: E731
    infer = {b: (lambda xb=x[:b]: model.predict_on_batch(xb)) for b in infer_batches}
    return model, train, infer


# ------------------------------------------------------------------------ PyTorch
def torch_net(torch, net):
    nn = torch.nn

    def conv_bn(cin, cout, k, s, groups=1, act=None):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act())
        return nn.Sequential(*layers)

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(conv_bn(cin, cout, 3, stride, act=nn.ReLU),
                                      conv_bn(cout, cout, 3, 1))
            self.proj = (conv_bn(cin, cout, 1, stride)
                         if stride != 1 or cin != cout else nn.Identity())
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.proj(x) + self.body(x))

    class InvRes(nn.Module):
        def __init__(self, cin, cout, expansion, stride):
            super().__init__()
            mid = cin * expansion
            layers = [] if expansion == 1 else [conv_bn(cin, mid, 1, 1, act=nn.ReLU6)]
            layers += [conv_bn(mid, mid, 3, stride, groups=mid, act=nn.ReLU6),
                       conv_bn(mid, cout, 1, 1)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    torch.manual_seed(0)
    if net == "resnet20":
        layers, cin = [conv_bn(3, 16, 3, 1, act=nn.ReLU)], 16
        for stage, cout in enumerate((16, 32, 64)):
            for block in range(3):
                layers.append(Basic(cin, cout, 2 if stage and not block else 1))
                cin = cout
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(64, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        return model, opt
    layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
    for expansion, cout, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                                             (6, 64, 4, 2), (6, 96, 3, 1),
                                             (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(repeats):
            layers.append(InvRes(cin, cout, expansion, stride if i == 0 else 1))
            cin = cout
    model = nn.Sequential(*layers, conv_bn(cin, 1280, 1, 1, act=nn.ReLU6),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    return model, opt


def torch_fns(torch, net, memory_format, batch, infer_batches):
    model, opt = torch_net(torch, net)
    model = model.to(memory_format=memory_format)
    x, labels = make_data(batch, "channels_first")
    xt = torch.from_numpy(x).contiguous(memory_format=memory_format)
    yt = torch.from_numpy(labels)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xt), yt).backward()
        opt.step()

    def infer_at(b):
        xb = xt[:b].contiguous(memory_format=memory_format)

        def infer():
            model.eval()
            with torch.inference_mode():
                model(xb)
        return infer
    return train, {b: infer_at(b) for b in infer_batches}


# ------------------------------------------------------------------------ ONNX Runtime
def ort_fns(net, infer_batches, threads, spinning=True):
    """{batch: callable} of ONNX Runtime on fastconv's exported model; spinning False:
    worker threads that wait without spinning (ORT's default spins after each call,
    which takes the cores from whatever is timed next in this process)."""
    import onnxruntime as ort
    model = fastconv_model(net, "channels_first")
    path = os.path.join(tempfile.mkdtemp(), f"{net}.onnx")
    fastconv.onnx.export(model, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x, _ = make_data(max(infer_batches), "channels_first")
    ref = model.predict_on_batch(x[:2])
    got = sess.run(None, {name: x[:2]})[0]
    if not np.allclose(ref, got, atol=1e-4):
        raise RuntimeError(f"ONNX Runtime's {net} disagrees with fastconv's")
    return {b: (lambda xb=x[:b]: sess.run(None, {name: xb})) for b in infer_batches}


# ------------------------------------------------------------------------ memory
def peak_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def memory_child(system, net, fmt, batch, steps, threads):
    fastconv.set_num_threads(threads)
    if system == "fastconv":
        train = fastconv_fns(net, FORMATS[fmt], batch, ())[1]
    else:
        import torch
        torch.set_num_threads(threads)
        mf = torch.channels_last if fmt == "nhwc" else torch.contiguous_format
        train = torch_fns(torch, net, mf, batch, ())[0]
    setup = peak_kib()
    for _ in range(steps):
        train()
    print(json.dumps({"setup_kib": setup, "peak_kib": peak_kib()}))


def memory_rows(net, batch, steps, threads, torch_fmt):
    rows = {}
    for system, fmt in (("fastconv", "nhwc"), ("fastconv", "nchw"), ("torch", torch_fmt)):
        out = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--memory-child", system, net, fmt,
             str(batch), str(steps), str(threads)],
            capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows[f"{system} {fmt}"] = (r["peak_kib"] - r["setup_kib"]) / 1024
    return rows


# ------------------------------------------------------------------------ main
def profile(net, batch, steps=5):
    model, train, _ = fastconv_fns(net, "channels_last", batch, ())
    for _ in range(2):
        train()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        train()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(25)
    return s.getvalue()


def bench_net(torch, net, args):
    batch, infer_batches = 128, tuple(args.infer_batches)
    fns = {}
    for fmt, df in FORMATS.items():
        _, train, infer = fastconv_fns(net, df, batch, infer_batches)
        fns[f"fastconv {fmt}", "train"] = train
        for b in infer_batches:
            fns[f"fastconv {fmt}", f"infer b{b}"] = infer[b]
    # PyTorch: both memory formats timed, the faster reported per pass
    for fmt, mf in (("nhwc", torch.channels_last), ("nchw", torch.contiguous_format)):
        train, infer = torch_fns(torch, net, mf, batch, infer_batches)
        fns[f"torch {fmt}", "train"] = train
        for b in infer_batches:
            fns[f"torch {fmt}", f"infer b{b}"] = infer[b]
    # ONNX Runtime twice: waiting threads, and its default spinning ones (the faster is
    # reported); every call settles 0.1 s of its own calls first, which outlasts the
    # spinning (with the usual 10 ms, fastconv's ResNet-20 at batch 1 timed right after
    # the spinning session took 16.5 ms against 1.19 alone).
    for spin in (False, True):
        for b, f in ort_fns(net, infer_batches, args.threads, spin).items():
            fns["onnxruntime" + (" spinning" if spin else ""), f"infer b{b}"] = f
    passes = ["train"] + [f"infer b{b}" for b in infer_batches]
    results = {}
    for p in passes:
        group = {k: f for k, f in fns.items() if k[1] == p}
        ms = interleaved({k[0]: f for k, f in group.items()}, args.rounds,
                         min_time=args.min_time,
                         settle_seconds=0.1 if p != "train" else None)
        if "onnxruntime" in ms:
            ms["onnxruntime"] = min(ms["onnxruntime"], ms.pop("onnxruntime spinning"))
        results[p] = ms
    return passes, results


def report(net, passes, results):
    lines = [f"\n{net} (ms, median of interleaved rounds)",
             f"{'pass':<12}{'fc nhwc':>10}{'fc nchw':>10}{'torch nhwc':>12}"
             f"{'torch nchw':>12}{'ORT':>9}{'fc/torch':>10}{'fc/ORT':>9}"]
    for p in passes:
        r = results[p]
        fc = min(r["fastconv nhwc"], r["fastconv nchw"])
        th = min(r["torch nhwc"], r["torch nchw"])
        ortv = r.get("onnxruntime")
        lines.append(
            f"{p:<12}{r['fastconv nhwc']:>10.2f}{r['fastconv nchw']:>10.2f}"
            f"{r['torch nhwc']:>12.2f}{r['torch nchw']:>12.2f}"
            f"{ortv if ortv is not None else float('nan'):>9.2f}{fc / th:>10.2f}"
            f"{fc / ortv if ortv else float('nan'):>9.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--infer-batches", type=int, nargs="+", default=[1, 128])
    p.add_argument("--memory-steps", type=int, default=50)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--profile", choices=NETS)
    p.add_argument("--memory-child", nargs=6, metavar="X", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        s, net, fmt, batch, steps, threads = args.memory_child
        memory_child(s, net, fmt, int(batch), int(steps), int(threads))
        return 0
    fastconv.set_num_threads(args.threads)
    if args.profile:
        print(profile(args.profile, 128))
        return 0
    import torch
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_info
    blas = [f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')}"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"fastconv {fastconv.__version__}, torch {torch.__version__}, "
          f"{args.threads} threads; BLAS: {'; '.join(blas)}; load {os.getloadavg()}")
    for net in args.nets:
        passes, results = bench_net(torch, net, args)
        print(report(net, passes, results))
        if not args.no_memory:
            tr = results["train"]
            tfmt = "nhwc" if tr["torch nhwc"] <= tr["torch nchw"] else "nchw"
            mem = memory_rows(net, 128, args.memory_steps, args.threads, tfmt)
            print("peak memory of %d training steps (MiB above set-up): %s" % (
                args.memory_steps,
                ", ".join(f"{k} {v:.0f}" for k, v in mem.items())))
    print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
