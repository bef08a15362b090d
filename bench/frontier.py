"""The frontier table: fastconv against PyTorch, TensorFlow and ONNX Runtime.

One command prints the whole comparison as text (Markdown tables) and optionally JSON:

    python bench/frontier.py [--quick] [--json out.json] \
        [--tf-python /path/to/python] [--ort-python /path/to/python]

Sections (float32, median milliseconds, every group timed interleaved round-robin):
  1. layer suite: the seven conv layers (fastconv.benchmark.CONV_LAYERS, effective
     GFLOP/s beside the times: the direct convolution's FLOPs over the time, which a
     Winograd layer can push above the machine's peak) and the four pooling layers (POOL_LAYERS), forward and forward + all
     gradients, fastconv in both layouts and PyTorch (NCHW) in this process; TensorFlow
     and ONNX Runtime in a subprocess with their own interpreter (bench/_peers.py),
     which also times fastconv so that each peer ratio comes from one process;
  2. network suite: one training step and one inference pass of LeNet-5 and the
     CIFAR-10 network against the PyTorch nn.Sequential of bench/bench_models.py (and
     Keras / ONNX Runtime from the peer process, checked to predict what fastconv does);
  3. peak resident memory of N training steps, each system and network in a fresh
     process (bench/_memory_child.py reports its own VmHWM: ru_maxrss of a child would
     include this process's resident set at fork time);
  4. naive baselines: fastconv.reference (NumPy loops over output pixels) on a small
     batch and plain Python loops on one image and one output channel, both scaled
     linearly to the benchmark batch;
  5. thread scaling of cifar.c2-c4 with 1 and 2 threads;
  6. the performance targets of docs/benchmarks/method.md, each MET / NOT MET computed
     from the numbers above.

Peers that are not given or cannot be imported are skipped and reported as such.
"""
import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
try:
    import fastconv
except ImportError:            # not installed: use the checkout (built in place)
    sys.path.insert(0, ROOT)
    import fastconv
from fastconv.benchmark import (CONV_LAYERS, POOL_LAYERS, _fastconv_conv,  # noqa: E402
                                _naive_conv, _torch_conv, conv_flops)

import bench_models  # noqa: E402
from _frontier_common import (SECOND, fastconv_pool, interleaved,  # noqa: E402
                              naive_pool, python_conv_seconds, torch_pool)

PASSES = ("fwd", "fwd+bwd")
LAYOUTS = {"fastconv nchw": "channels_first", "fastconv nhwc": "channels_last"}
NETS = ("lenet5", "cifar10_cnn")
PEERS = ("tensorflow", "onnxruntime")
PEER_MODULES = {"tensorflow": "tensorflow, keras", "onnxruntime": "onnxruntime, onnx"}
SCALING_LAYERS = ("cifar.c2", "cifar.c3", "cifar.c4")
NAIVE_CONV_BATCH = 2
NAIVE_POOL_BATCH = 8
SECTIONS = ("layers", "peers", "nets", "memory", "naive", "threads")

def log(msg):
    print(msg, file=sys.stderr, flush=True)

# ---------------------------------------------------------------------- environment
def environment(torch, threads, no_torch=False):
    cfg = fastconv.config()
    env = {"fastconv": cfg, "python": sys.version.split()[0],
           "platform": platform.platform(), "threads": threads,
           "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "load_start": list(os.getloadavg()),
           "torch": (f"{torch.__version__} ({torch.get_num_threads()} threads)"
                     if torch is not None else
                     "left out (--no-torch)" if no_torch else
                     "not installed: skipped (pip install torch==2.13.0, or pip "
                     "install \"fastconv[compare]\")")}
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next((line.split(":", 1)[1].strip() for line in f
                               if line.startswith("model name")), None)
    except OSError:
        env["cpu"] = None
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True,
                               text=True).stdout.strip()
        env["git"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        env["git"] = None
    return env

def format_environment(env, peer_runs):
    c = env["fastconv"]
    lines = [f"fastconv {c['fastconv']} (numpy {c['numpy']}), OpenMP "
             f"{'on' if c['openmp'] else 'off'}, {env['threads']} threads, conv ISA path: "
             f"{c.get('conv_isa')}"]
    for b in c["blas"]:
        lines.append(f"BLAS: {b.get('internal_api')} {b.get('version')}, kernel "
                     f"{b.get('architecture')}, {b.get('num_threads')} threads")
    lines.append(f"PyTorch: {env['torch']}")
    for run in peer_runs:
        if run.get("error"):
            lines.append(f"{' + '.join(run['systems'])}: skipped ({run['error']})")
        else:
            v = run["versions"]
            names = ", ".join(f"{k} {v[k]}" for k in ("tensorflow", "keras", "onnxruntime")
                              if k in v)
            lines.append(f"{names}: ran in another process ({run['python']}), "
                         f"{run['threads']} threads; ratios use fastconv timed in that "
                         "process")
    lines.append(f"CPU: {env.get('cpu')}; python {env['python']}; {env['platform']}")
    lines.append(f"git {env.get('git')}; {env['date']}; load average (1, 5, 15 min) "
                 f"at start {fmt_load(env['load_start'])}"
                 + (f", at end {fmt_load(env['load_end'])}" if env.get("load_end") else ""))
    if env.get("section_loads"):
        lines.append("1-min load as each section started (this run adds about "
                     f"{env['threads']}): " + ", ".join(
                         f"{k} {v:.2f}" for k, v in env["section_loads"].items()))
    return "\n".join(lines)

def fmt_load(load):
    return "/".join(f"{x:.2f}" for x in load)

# ------------------------------------------------------------------------ the suites
def layer_suite(args, torch):
    rows = []
    for batch in args.batches:
        for section, names in (("conv", args.layers), ("pool", args.pools)):
            for name in names:
                if section == "conv":
                    fns = {k: _fastconv_conv(name, batch, f) for k, f in LAYOUTS.items()}
                    if torch is not None:
                        fns["torch"] = _torch_conv(torch, name, batch)
                else:
                    fns = {k: fastconv_pool(name, batch, f) for k, f in LAYOUTS.items()}
                    if torch is not None:
                        fns["torch"] = torch_pool(torch, name, batch)
                for i, pass_name in enumerate(PASSES):
                    t = interleaved({k: v[i] for k, v in fns.items()}, args.repeat,
                                    args.min_time)
                    row = {"section": section, "item": name, "pass": pass_name,
                           "batch": batch, "times": t, "peers": {}}
                    if section == "conv":
                        row["gflop"] = conv_flops(name, batch) * (1 + 2 * i) / 1e9
                    rows.append(row)
                    log(f"{section} {name} {pass_name} b{batch}: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    return rows

def net_suite(args, torch):
    rows = []
    for net in args.nets:
        for batch in args.batches:
            fc_train, fc_infer = bench_models.fastconv_steps(net, batch)
            fns = {"train": {"fastconv": fc_train}, "infer": {"fastconv": fc_infer}}
            if torch is not None:
                t_train, t_infer = bench_models.torch_steps(torch, net, batch)
                fns["train"]["torch"] = t_train
                fns["infer"]["torch"] = t_infer
            for mode in ("train", "infer"):
                t = interleaved(fns[mode], args.rounds, warmup=3)
                rows.append({"item": net, "mode": mode, "batch": batch, "times": t,
                             "peers": {}})
                log(f"net {net} {mode} b{batch}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    return rows

def _child_env():
    """Children import the same fastconv as this process, and the bench helpers."""
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_parent, HERE] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env

def memory_suite(args, torch):
    """Peak RSS of ``args.memory_steps`` training steps, one fresh process each."""
    rows = []
    systems = ["fastconv"] + (["torch"] if torch is not None else [])
    for net in args.nets:
        for batch in args.batches:
            for system in systems:
                proc = subprocess.run(
                    [sys.executable, os.path.join(HERE, "_memory_child.py"), system, net,
                     str(batch), str(args.memory_steps), str(args.threads)],
                    stdout=subprocess.PIPE, text=True, env=_child_env())
                if proc.returncode != 0:
                    raise RuntimeError(f"memory child {system} {net} b{batch} failed "
                                       f"with exit code {proc.returncode}")
                text = proc.stdout
                child = json.loads(text.strip().splitlines()[-1])
                rows.append({"item": net, "batch": batch, "system": system,
                             "steps": args.memory_steps,
                             "peak_mib": child["peak_kib"] / 1024,
                             "setup_mib": child["setup_kib"] / 1024})
                log(f"memory {net} b{batch} {system}: {child['peak_kib'] / 1024:.0f} MiB")
    return rows


def naive_suite(args, layer_rows):
    """Naive baselines timed on a small batch and scaled to each benchmark batch."""
    rows = []
    reps = 1 if args.quick else 3
    for name in args.layers:
        fwd, fwd_bwd = _naive_conv(name, NAIVE_CONV_BATCH)
        t_np = interleaved({"fwd": fwd, "fwd+bwd": fwd_bwd}, reps, warmup=0, settle=False)
        py_f, py_fb = python_conv_seconds(name, repeat=reps)
        c_out = CONV_LAYERS[name][3]
        for pass_name, py in (("fwd", py_f), ("fwd+bwd", py_fb)):
            rows.append({"section": "conv", "item": name, "pass": pass_name,
                         "numpy_ms_per_image": t_np[pass_name] / NAIVE_CONV_BATCH,
                         "python_ms_per_image": py * 1e3 * c_out})
        log(f"naive {name}: numpy {t_np}, python one image x one channel "
            f"{py_f * 1e3:.1f}/{py_fb * 1e3:.1f} ms")
    for name in args.pools:
        fwd, fwd_bwd = naive_pool(name, NAIVE_POOL_BATCH)
        t_np = interleaved({"fwd": fwd, "fwd+bwd": fwd_bwd}, reps, warmup=0, settle=False)
        for pass_name in PASSES:
            rows.append({"section": "pool", "item": name, "pass": pass_name,
                         "numpy_ms_per_image": t_np[pass_name] / NAIVE_POOL_BATCH,
                         "python_ms_per_image": None})
    # scale to every batch of the layer suite, beside fastconv's best time there
    out = []
    for r in rows:
        for lr in layer_rows:
            if (lr["section"], lr["item"], lr["pass"]) == (r["section"], r["item"],
                                                            r["pass"]):
                b, fc = lr["batch"], fc_best(lr["times"])
                numpy_ms = r["numpy_ms_per_image"] * b
                python_ms = (r["python_ms_per_image"] * b
                             if r["python_ms_per_image"] is not None else None)
                out.append({**r, "batch": b, "fastconv_ms": fc, "numpy_ms": numpy_ms,
                            "python_ms": python_ms, "numpy_speedup": numpy_ms / fc,
                            "python_speedup": python_ms / fc if python_ms else None})
    return out

def thread_suite(args, torch):
    from threadpoolctl import ThreadpoolController
    controller = ThreadpoolController()
    blas_before = [i["num_threads"] for i in controller.info() if i["user_api"] == "blas"]
    batch = target_batch(args.batches)
    rows = []

    def fc_threads(n):
        def setup():
            fastconv.set_num_threads(n)
            controller.limit(limits=n, user_api="blas")
        return setup

    def torch_threads(n):
        def setup():
            fastconv.set_num_threads(args.threads)
            torch.set_num_threads(n)
        return setup
    counts = sorted({1, args.threads})
    try:
        for name in args.scaling_layers:
            fns, setup = {}, {}
            for n in counts:
                for k, f in LAYOUTS.items():
                    fns[f"{k} {n}t"] = _fastconv_conv(name, batch, f)
                    setup[f"{k} {n}t"] = fc_threads(n)
                if torch is not None:
                    fns[f"torch {n}t"] = _torch_conv(torch, name, batch)
                    setup[f"torch {n}t"] = torch_threads(n)
            for i, pass_name in enumerate(PASSES):
                t = interleaved({k: v[i] for k, v in fns.items()}, args.repeat,
                                args.min_time, setup=setup)
                rows.append({"item": name, "pass": pass_name, "batch": batch,
                             "threads": counts, "times": t})
                log(f"threads {name} {pass_name} b{batch}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    finally:
        fastconv.set_num_threads(args.threads)
        if blas_before:
            controller.limit(limits=max(blas_before), user_api="blas")
        if torch is not None:
            torch.set_num_threads(args.threads)
    return rows

# ------------------------------------------------------------------------------ peers
def probe(python, systems):
    """None when ``python`` imports the modules of ``systems``, else the reason."""
    mods = ", ".join(PEER_MODULES[s] for s in systems)
    try:
        r = subprocess.run([python, "-c", f"import {mods}"], capture_output=True,
                           text=True, env=_child_env(), timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{python}: {e}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["exit code %d" % r.returncode])[-1]
        return f"{python} cannot import {mods}: {last}"
    return None

def run_peers(args):
    """Run bench/_peers.py once per peer system, each in a process of its own (even
    when they share an interpreter): a peer's idle threads then never share the cores
    with fastconv's measurements against the other.  Measured with both in one
    process: fastconv's LeNet-5 inference at batch 32 took 2.8 ms interleaved with
    TensorFlow and ONNX Runtime, 1.15 ms in the main process.  Returns the run records."""
    by_python = []
    for system, python in (("tensorflow", args.tf_python),
                           ("onnxruntime", args.ort_python)):
        if python:
            by_python.append((python, [system]))
    runs = []
    for system in PEERS:
        if not any(system in s for _, s in by_python):
            opt = "--tf-python" if system == "tensorflow" else "--ort-python"
            runs.append({"systems": [system], "python": None,
                         "error": f"no interpreter given ({opt} PATH)"})
    for python, systems in by_python:
        run = {"systems": systems, "python": python}
        runs.append(run)
        err = probe(python, systems)
        if err:
            run["error"] = err
            log(f"peers {systems}: skipped, {err}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "peers.json")
            cmd = [python, os.path.join(HERE, "_peers.py"), "--systems", *systems,
                   "--layers", *args.layers, "--pools", *args.pools, "--nets", *args.nets,
                   "--batches", *map(str, args.batches), "--repeat", str(args.repeat),
                   "--min-time", str(args.min_time), "--rounds", str(args.rounds),
                   "--threads", str(args.threads), "--out", path]
            log(f"peers {systems}: running {python} bench/_peers.py")
            r = subprocess.run(cmd, env=_child_env())
            if r.returncode != 0:
                run["error"] = f"peer process exited with code {r.returncode}"
                continue
            with open(path) as f:
                run.update(json.load(f))
    return runs

def merge_peers(runs, layer_rows, net_rows):
    """Attach each peer's median (and fastconv's, from the same process) to the rows."""
    layers = {(r["section"], r["item"], r["pass"], r["batch"]): r for r in layer_rows}
    nets = {(r["item"], r["mode"], r["batch"]): r for r in net_rows}
    for run in runs:
        if run.get("error"):
            continue
        for pr in run.get("layers", []):
            row = layers.get((pr["section"], pr["item"], pr["pass"], pr["batch"]))
            if row is not None:
                _attach(row, pr["times"], run["python"])
        for pr in run.get("nets", []):
            row = nets.get((pr["item"], pr["mode"], pr["batch"]))
            if row is not None:
                _attach(row, pr["times"], run["python"])

def _attach(row, times, python):
    for system in PEERS:
        if system in times:
            fc = fc_best(times, second=system == "onnxruntime")
            row["peers"][system] = {"ms": times[system], "fastconv_ms": fc,
                                    "ratio": fc / times[system], "python": python}

# ---------------------------------------------------------------------------- targets
def fc_best(times, second=False):
    """fastconv's time: the faster of its layouts (both are measured and shown); with
    second, also of its second timings next to ONNX Runtime's spinning session (as
    ONNX Runtime's time is the faster of its two sessions: bench/_peers.py)."""
    return min(v for k, v in times.items()
               if k.startswith("fastconv") and (second or not k.endswith(SECOND)))

def ratio(row, system):
    """fastconv / system from ONE process: this one for torch, the peer's otherwise."""
    if system == "torch":
        t = row["times"].get("torch")
        return fc_best(row["times"]) / t if t else None
    p = row.get("peers", {}).get(system)
    return p["ratio"] if p else None

def target_batch(batches):
    return 128 if 128 in batches else max(batches)

def _verdict(values, goal, higher_is_better=False):
    """MET / NOT MET from the values present; INCOMPLETE when a value is missing but
    none present fails; NOT MEASURED when none is present."""
    present = [v for v in values.values() if v is not None]
    missing = [k for k, v in values.items() if v is None]
    if not present:
        return "NOT MEASURED"
    ok = all((v >= goal) if higher_is_better else (v <= goal) for v in present)
    if not ok:
        return "NOT MET"
    return "MET" if not missing else f"INCOMPLETE ({', '.join(missing)} not run)"

def _ratio_row(target, row, systems, goal, what):
    if row is None:
        return {"target": target, "measured": None, "goal": what,
                "status": "NOT MEASURED", "detail": ""}
    vals = {s: ratio(row, s) for s in systems}
    present = [v for v in vals.values() if v is not None]
    detail = "; ".join(f"fastconv/{s} {v:.2f}" if v is not None else f"{s} not run"
                       for s, v in vals.items())
    return {"target": target, "measured": max(present) if present else None,
            "goal": what, "status": _verdict(vals, goal), "detail": detail,
            "fastconv_ms": fc_best(row["times"])}

def evaluate_targets(results):
    """Every performance-target row (docs/benchmarks/method.md), judged from the
    measurements in ``results``."""
    out = []
    layers = {(r["section"], r["item"], r["pass"], r["batch"]): r
              for r in results.get("layers", [])}
    nets = {(r["item"], r["mode"], r["batch"]): r for r in results.get("nets", [])}
    batches = sorted({r["batch"] for key in ("layers", "nets", "threads", "memory")
                      for r in results.get(key, [])})
    if not batches:
        return out
    b = target_batch(batches)
    conv_names = [n for n in CONV_LAYERS if ("conv", n, "fwd", b) in layers]
    for n in conv_names:
        out.append(_ratio_row(f"conv fwd+bwd {n} b{b}",
                              layers.get(("conv", n, "fwd+bwd", b)),
                              ("torch", "tensorflow"), 1.0,
                              "<= 1 x the faster of PyTorch, TensorFlow"))
    for n in ("cifar.c2", "cifar.c3", "cifar.c4"):
        if n in conv_names:
            out.append(_ratio_row(f"conv fwd {n} b{b}", layers.get(("conv", n, "fwd", b)),
                                  ("onnxruntime",), 1.0, "<= 1 x ONNX Runtime"))
    for n in POOL_LAYERS:
        row = layers.get(("pool", n, "fwd+bwd", b))
        if row is not None:
            out.append(_ratio_row(f"pool fwd+bwd {n} b{b}", row, ("torch",), 0.3,
                                  "<= 0.3 x PyTorch"))
    for n in ("cifar.p1", "cifar.p2"):
        row = layers.get(("pool", n, "fwd", b))
        if row is not None:
            out.append(_ratio_row(f"pool fwd {n} b{b}", row,
                                  ("torch", "tensorflow", "onnxruntime"), 1.0,
                                  "<= 1 x the fastest of PyTorch, TensorFlow, ORT"))
    for net, mode, systems, goal, what in (
            ("lenet5", "train", ("torch",), 0.5, "<= 0.5 x PyTorch"),
            ("cifar10_cnn", "train", ("torch",), 0.9, "<= 0.9 x PyTorch"),
            ("lenet5", "infer", ("onnxruntime",), 1.0, "<= 1 x ONNX Runtime"),
            ("cifar10_cnn", "infer", ("onnxruntime",), 1.0, "<= 1 x ONNX Runtime")):
        for nb in sorted(batches, reverse=True):
            row = nets.get((net, mode, nb))
            if row is not None:
                label = "train step" if mode == "train" else "inference"
                out.append(_ratio_row(f"{net} {label} b{nb}", row, systems, goal, what))
    # geometric mean over the conv layers of fastconv/PyTorch fwd+bwd
    rs = [ratio(layers[("conv", n, "fwd+bwd", b)], "torch") for n in conv_names]
    if rs:
        have = [r for r in rs if r is not None]
        gm = math.exp(sum(math.log(r) for r in have) / len(have)) if have else None
        status = ("NOT MEASURED" if gm is None else
                  "NOT MET" if gm > 0.8 else
                  "MET" if len(conv_names) == len(CONV_LAYERS) and len(have) == len(rs)
                  else f"INCOMPLETE (over {len(have)} of {len(CONV_LAYERS)} layers)")
        out.append({"target": f"geomean conv fwd+bwd fastconv/PyTorch b{b}",
                    "measured": gm, "goal": "<= 0.8", "status": status,
                    "detail": f"over {len(have)} layers"})
    for r in results.get("naive", []):
        if r["section"] == "conv" and r["pass"] == "fwd+bwd" and r["batch"] == b:
            out.append({"target": f"naive NumPy / fastconv {r['item']} fwd+bwd b{b}",
                        "measured": r["numpy_speedup"], "goal": ">= 100",
                        "status": "MET" if r["numpy_speedup"] >= 100 else "NOT MET",
                        "detail": f"NumPy loops {r['numpy_ms'] / 1e3:.3g} s (scaled)"})
            out.append({"target": f"plain Python / fastconv {r['item']} fwd+bwd b{b}",
                        "measured": r["python_speedup"], "goal": ">= 5000",
                        "status": "MET" if r["python_speedup"] >= 5000 else "NOT MET",
                        "detail": f"Python loops {r['python_ms'] / 1e3:.3g} s (scaled)"})
    for r in results.get("threads", []):
        if r["pass"] != "fwd+bwd" or len(r["threads"]) < 2:
            continue
        lo, hi = r["threads"][0], r["threads"][-1]
        sp = {k: r["times"][f"{k} {lo}t"] / r["times"][f"{k} {hi}t"] for k in LAYOUTS}
        worst = min(sp.values())
        detail = "; ".join(f"{k} {v:.2f}x" for k, v in sp.items())
        if f"torch {lo}t" in r["times"]:
            # the control: when PyTorch does not scale either, no second core was free
            t_sp = r["times"][f"torch {lo}t"] / r["times"][f"torch {hi}t"]
            detail += f"; control PyTorch {t_sp:.2f}x"
        out.append({"target": f"{r['item']} fwd+bwd b{r['batch']} speed-up {hi} vs {lo} "
                              "threads", "measured": worst, "goal": ">= 1.7",
                    "status": "MET" if worst >= 1.7 else "NOT MET", "detail": detail})
    mem = {}
    for r in results.get("memory", []):
        mem.setdefault((r["item"], r["batch"]), {})[r["system"]] = r["peak_mib"]
    for (net, nb), m in sorted(mem.items()):
        t = m.get("torch")
        steps = results["memory"][0]["steps"]
        out.append({"target": f"peak memory {net} b{nb}, {steps} training steps",
                    "measured": m["fastconv"] / t if t else None,
                    "goal": "<= 1 x PyTorch",
                    "status": ("NOT MEASURED" if t is None else
                               "MET" if m["fastconv"] <= t else "NOT MET"),
                    "detail": f"fastconv {m['fastconv']:.0f} MiB" + (
                        f", PyTorch {t:.0f} MiB" if t else "")})
    return out

# ------------------------------------------------------------------------- formatting
def _md(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

def _ms(v, gflop=None):
    if v is None:
        return "-"
    s = f"{v:.3g}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    return s + (f" ({gflop / v * 1e3:.0f})" if gflop else "")

def _r(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)

def format_layers(rows, section):
    sel = [r for r in rows if r["section"] == section]
    if not sel:
        return ""
    systems = [s for s in list(LAYOUTS) + ["torch"] if any(s in r["times"] for r in sel)]
    peers = [s for s in PEERS if any(s in r["peers"] for r in sel)]
    header = ["layer", "pass", "batch"] + [f"{s} ms" for s in systems] + [
        f"{s}† ms" for s in peers]
    header += ["fc/torch"] * ("torch" in systems) + [f"fc/{s}†" for s in peers]
    body = []
    for r in sel:
        g = r.get("gflop")
        cells = [r["item"], r["pass"], str(r["batch"])]
        cells += [_ms(r["times"].get(s), g) for s in systems]
        cells += [_ms(r["peers"][s]["ms"], g) if s in r["peers"] else "-" for s in peers]
        if "torch" in systems:
            cells.append(_r(ratio(r, "torch")))
        cells += [_r(ratio(r, s)) for s in peers]
        body.append(cells)
    return _md(header, body)

def format_nets(rows):
    if not rows:
        return ""
    peers = [s for s in PEERS if any(s in r["peers"] for r in rows)]
    has_torch = any("torch" in r["times"] for r in rows)
    header = (["network", "pass", "batch", "fastconv ms"] + ["torch ms"] * has_torch
              + [f"{s}† ms" for s in peers] + ["fc/torch"] * has_torch
              + [f"fc/{s}†" for s in peers])
    body = []
    for r in rows:
        cells = [r["item"], "train step" if r["mode"] == "train" else "inference",
                 str(r["batch"]), _ms(r["times"]["fastconv"])]
        if has_torch:
            cells.append(_ms(r["times"].get("torch")))
        cells += [_ms(r["peers"][s]["ms"]) if s in r["peers"] else "-" for s in peers]
        if has_torch:
            cells.append(_r(ratio(r, "torch")))
        cells += [_r(ratio(r, s)) for s in peers]
        body.append(cells)
    return _md(header, body)

def format_report(results):
    parts = ["# fastconv frontier table: fastconv against PyTorch, TensorFlow and ONNX "
             "Runtime", "",
             format_environment(results["environment"], results.get("peer_runs", [])),
             "", "Median ms, float32, interleaved in one process; conv: (effective "
             "GFLOP/s) beside the time, the direct convolution's FLOPs over the time "
             "(direct-equivalent: a Winograd layer can exceed the machine's peak); "
             "fc = fastconv, the faster of its two layouts; † = measured in "
             "the peer process, its ratio against fastconv timed in that same process."]
    if results.get("layers"):
        parts += ["", "## Convolution layers", "", format_layers(results["layers"], "conv"),
                  "", "## Pooling layers", "", format_layers(results["layers"], "pool")]
    if results.get("nets"):
        parts += ["", "## Networks (one training step / one inference pass)", "",
                  format_nets(results["nets"])]
        checks = [c for run in results.get("peer_runs", []) for c in run.get("checks", [])]
        if checks:
            worst = max(c["max_abs_diff_vs_fastconv"] for c in checks)
            parts += ["", f"Peer networks carry fastconv's weights; largest |prediction "
                          f"difference| from fastconv over {len(checks)} checks: "
                          f"{worst:.1e}."]
    if results.get("memory"):
        m = results["memory"]
        parts += ["", f"## Peak resident memory, {m[0]['steps']} training steps, fresh "
                      "process each (VmHWM of the child)", "",
                  _md(["network", "batch", "system", "peak MiB", "after set-up MiB",
                       "growth in training MiB"],
                      [[r["item"], str(r["batch"]), r["system"], f"{r['peak_mib']:.0f}",
                        f"{r['setup_mib']:.0f}", f"{r['peak_mib'] - r['setup_mib']:.0f}"]
                       for r in m])]
    if results.get("naive"):
        parts += ["", "## Naive baselines (NOT fastconv: scaled estimates)", "",
                  f"NumPy loops over output pixels (fastconv.reference) timed on batch "
                  f"{NAIVE_CONV_BATCH} (conv) / {NAIVE_POOL_BATCH} (pool); plain Python "
                  "loops timed on one image and one output channel; both scaled "
                  "linearly to the batch shown.", "",
                  _md(["layer", "pass", "batch", "fastconv ms", "NumPy loops ms (scaled)",
                       "speed-up", "Python loops ms (scaled)", "speed-up"],
                      [[r["item"], r["pass"], str(r["batch"]), _ms(r["fastconv_ms"]),
                        _ms(r["numpy_ms"]), f"{r['numpy_speedup']:.0f}x",
                        _ms(r["python_ms"]), _r(r["python_speedup"], "{:.0f}x")]
                       for r in results["naive"]])]
    if results.get("threads"):
        rows = results["threads"]
        keys = list(rows[0]["times"])
        parts += ["", "## Thread scaling (fastconv threads and BLAS limited alike)", "",
                  _md(["layer", "pass", "batch"] + [f"{k} ms" for k in keys],
                      [[r["item"], r["pass"], str(r["batch"])]
                       + [_ms(r["times"][k]) for k in keys] for r in rows])]
    if results.get("targets"):
        parts += ["", "## Performance targets (docs/benchmarks/method.md), computed "
                      "from the measurements above", "",
                  _md(["target", "measured", "goal", "status", "detail"],
                      [[t["target"], _r(t["measured"], "{:.3g}"), t["goal"],
                        f"**{t['status']}**", t["detail"]] for t in results["targets"]])]
        met = sum(t["status"] == "MET" for t in results["targets"])
        parts += ["", f"{met} of {len(results['targets'])} target rows MET."]
    return "\n".join(parts) + "\n"

# ------------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(prog="python bench/frontier.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="batch 32 only, few repeats, 5 memory steps (for development)")
    p.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    p.add_argument("--tf-python", metavar="PATH",
                   help="interpreter with tensorflow and keras (skipped when not given "
                        "or not importable)")
    p.add_argument("--ort-python", metavar="PATH",
                   help="interpreter with onnxruntime and onnx (skipped likewise)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--batches", nargs="+", type=int)
    p.add_argument("--layers", nargs="*", default=list(CONV_LAYERS))
    p.add_argument("--pools", nargs="*", default=list(POOL_LAYERS))
    p.add_argument("--nets", nargs="*", default=list(NETS))
    p.add_argument("--scaling-layers", nargs="*", default=list(SCALING_LAYERS))
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    p.add_argument("--threads", type=int, default=fastconv.get_num_threads())
    p.add_argument("--memory-steps", type=int)
    p.add_argument("--rerender", metavar="JSON",
                   help="measure nothing: re-judge the targets of a saved --json file and "
                        "print its report")
    args = p.parse_args(argv)
    for opt, names, known in (("--layers", args.layers, CONV_LAYERS),
                              ("--scaling-layers", args.scaling_layers, CONV_LAYERS),
                              ("--pools", args.pools, POOL_LAYERS),
                              ("--nets", args.nets, NETS)):
        bad = [n for n in names if n not in known]
        if bad:
            p.error(f"{opt}: unknown name(s) {bad}; choose from {list(known)}")
    args.batches = args.batches or ([32] if args.quick else [128, 32])
    if min(args.batches) < 1 or args.threads < 1:
        p.error(f"--batches and --threads must be positive, got {args.batches} and "
                f"{args.threads}")
    args.memory_steps = args.memory_steps or (5 if args.quick else 50)
    args.repeat, args.min_time, args.rounds = (3, 0.05, 3) if args.quick else (7, 0.5, 15)
    return args

def rerender(path):
    """Re-judge the targets and re-print the report of a saved --json file."""
    with open(path) as f:
        results = json.load(f)
    results["targets"] = evaluate_targets(results)
    print(format_report(results), end="")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.rerender:
        return rerender(args.rerender)
    fastconv.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            torch = None
    results = {"environment": environment(torch, args.threads, args.no_torch),
               "options": {k: v for k, v in vars(args).items()}}
    loads = results["environment"]["section_loads"] = {}

    def section(name, fn, *a):
        loads[name] = os.getloadavg()[0]          # 1-minute load as the section starts
        return fn(*a) if name not in args.skip else []
    results["layers"] = section("layers", layer_suite, args, torch)
    results["nets"] = section("nets", net_suite, args, torch)
    results["peer_runs"] = section("peers", run_peers, args)
    merge_peers(results["peer_runs"], results["layers"], results["nets"])
    results["memory"] = section("memory", memory_suite, args, torch)
    results["naive"] = section("naive", lambda: naive_suite(args, results["layers"]))
    results["threads"] = section("threads", thread_suite, args, torch)
    results["environment"]["load_end"] = list(os.getloadavg())
    results["targets"] = evaluate_targets(results)
    print(format_report(results), end="")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0

if __name__ == "__main__":
    sys.exit(main())
