"""Data-parallel scaling on this machine, and the alpha-beta model of the allreduce.

    python bench/bench_distributed.py [--nets lenet5 cifar10_cnn] [--steps 20]

1. One process with 2 OpenMP threads trains at the global batch G (training steps
   on random data, the median of ``--steps`` steps after 3 warm-up steps).
2. ``mpirun -n 2`` of this file (``--worker``): 2 ranks of 1 thread each at batch
   G / 2: without averaging (each rank trains alone: the compute under the same
   contention), and with DistributedOptimizer overlapped (buckets of 64 KiB started
   during backward) and not (every gradient averaged after backward).  The
   communication share of a step is 1 - local step / distributed step; the wait
   share is the time ``apply`` waited for MPI (it includes waiting for the slower
   rank).
3. In the same launch: MPI_Allreduce of 8 B to 16 MiB on loopback: the latency
   (alpha, small messages) and the inverse bandwidth (beta, large ones).

Prints one JSON document (results) and the tables of docs/distributed.md, with the
projection of the scaling efficiency at 4, 16 and 64 nodes over 10/25/100 Gb/s links
(see ``project``).  The machine may be shared: medians, and say so when quoting.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MPIRUN_FLAGS = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,tcp",
                "--mca", "btl_tcp_if_include", "lo", "--mca", "pml", "ob1"]
GLOBAL_BATCH = {"lenet5": 128, "cifar10_cnn": 64, "resnet20": 64}
#: assumed per-message latency of TCP over Ethernet between nodes (alpha), seconds
LINK_ALPHA = 30e-6
LINKS_GBPS = (10, 25, 100)
LINK_EFFICIENCY = 0.9  # the share of the line rate an allreduce gets


def _model(net):
    import fastconv
    from fastconv import applications
    fastconv.set_seed(0)
    return getattr(applications, net)()


def _data(model, batch, seed=0):
    shape = model.input_shape[1:]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch,) + tuple(shape)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    return x, y


def time_steps(model, x, y, steps, averager=None):
    """Median step time and median MPI wait per step (seconds)."""
    times, waits = [], []
    for i in range(steps + 3):
        before = averager.stats["comm_seconds"] if averager else 0.0
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        dt = time.perf_counter() - t0
        if i >= 3:
            times.append(dt)
            waits.append((averager.stats["comm_seconds"] - before) if averager else 0.0)
    return float(np.median(times)), float(np.median(waits))


def single(nets, steps):
    import fastconv
    fastconv.set_num_threads(2)
    out = {}
    for net in nets:
        model = _model(net)
        x, y = _data(model, GLOBAL_BATCH[net])
        t, _ = time_steps(model, x, y, steps)
        out[net] = {"step_s": t, "samples_per_s": GLOBAL_BATCH[net] / t,
                    "params": int(model.count_params())}
    return out


def allreduce_fit(comm):
    """(alpha, beta, [(bytes, seconds)]): 2-rank MPI_Allreduce medians; alpha is the
    median time of the messages up to 512 B, beta the slope between 2 MiB and
    16 MiB (the bandwidth regime)."""
    from mpi4py import MPI
    rows = []
    for n in [8 << k for k in range(0, 22, 3)]:
        buf = np.ones(n // 4 or 1, np.float32)
        reps = max(7, min(300, (1 << 24) // n))
        ts = []
        for _ in range(reps):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            ts.append(time.perf_counter() - t0)
        rows.append((n, float(np.median(ts))))
    alpha = float(np.median([t for n, t in rows if n <= 512]))
    (n1, t1), (n2, t2) = rows[-2], rows[-1]
    beta = max((t2 - t1) / (n2 - n1), 1e-12)
    return alpha, float(beta), rows


def worker(nets, steps):
    from mpi4py import MPI

    import fastconv.distributed as dist
    from fastconv import optimizers
    dist.init(threads=1)
    comm = dist.comm()
    result = {"ranks": dist.size()}
    for net in nets:
        per_rank = GLOBAL_BATCH[net] // dist.size()
        row = {}
        for label, kwargs in (("local", None),
                              ("overlap", {"bucket_bytes": 64 << 10}),
                              ("no_overlap", {"overlap": False})):
            model = _model(net)
            if kwargs is not None:
                opt = model.optimizer
                model.compile(dist.DistributedOptimizer(
                    optimizers.get({"class_name": type(opt).__name__,
                                    "config": opt.get_config()}), model=model,
                    **kwargs), model.loss, metrics=None)
            x, y = _data(model, per_rank, seed=dist.rank())
            comm.Barrier()
            t, wait = time_steps(model, x, y, steps,
                                 getattr(model.optimizer, "_averager", None))
            t = float(comm.allreduce(t, op=MPI.MAX))
            row[label] = {"step_s": t, "samples_per_s": GLOBAL_BATCH[net] / t,
                          "wait_share": wait / t}
        for label in ("overlap", "no_overlap"):  # the step time beyond the local one
            r = row[label]
            r["comm_share"] = max(0.0, 1.0 - row["local"]["step_s"] / r["step_s"])
        result[net] = row
    a, b, rows = allreduce_fit(comm)
    result["allreduce"] = {"alpha_s": a, "beta_s_per_byte": b, "rows": rows}
    if dist.is_root():
        print("RESULT " + json.dumps(result), flush=True)


def project(params_bytes, sample_s, alpha, beta, nodes):
    """Ring allreduce over p nodes: T = 2 (p - 1) alpha + 2 (p - 1) / p * n * beta.
    Efficiency at per-node batch B, no overlap: B s / (B s + T); the batch for 80 %:
    B >= 4 T / s."""
    p = nodes
    t = 2 * (p - 1) * alpha + 2 * (p - 1) / p * params_bytes * beta
    return t, (lambda batch: batch * sample_s / (batch * sample_s + t)), 4 * t / sample_s


def report(one, two):
    lines = ["| network | params | 1 x 2 threads | 2 x 1 thread, no averaging | "
             "2 x 1, overlap | comm share (wait) | 2 x 1, no overlap | "
             "comm share (wait) |", "|---|---|---|---|---|---|---|---|"]
    for net, r in one.items():
        loc, o, n = (two[net][k] for k in ("local", "overlap", "no_overlap"))
        lines.append(f"| {net} | {r['params']:,} | {r['samples_per_s']:,.0f} | "
                     f"{loc['samples_per_s']:,.0f} | {o['samples_per_s']:,.0f} | "
                     f"{o['comm_share']:.0%} ({o['wait_share']:.0%}) | "
                     f"{n['samples_per_s']:,.0f} | {n['comm_share']:.0%} "
                     f"({n['wait_share']:.0%}) |")
    ar = two["allreduce"]
    lines += ["", "samples/s of the global batch "
              + ", ".join(f"{k} {v}" for k, v in GLOBAL_BATCH.items() if k in one),
              "", f"loopback 2-rank allreduce: alpha {ar['alpha_s'] * 1e6:.1f} us, "
              f"bandwidth {1 / ar['beta_s_per_byte'] / 1e9:.2f} GB/s", "",
              "| network | node | link | nodes | allreduce (ms) | "
              "efficiency at batch 64/node | batch/node for 80 % |",
              "|---|---|---|---|---|---|---|"]
    for net, r in one.items():
        for node, speedup in (("this machine", 1), ("16x faster", 16)):
            # one node = this machine's 2 cores, or a node 16 times faster
            sample_s = r["step_s"] / GLOBAL_BATCH[net] / speedup
            for gbps in LINKS_GBPS:
                beta = 8 / (gbps * 1e9 * LINK_EFFICIENCY)
                for nodes in (4, 16, 64):
                    t, eff, need = project(4 * r["params"], sample_s, LINK_ALPHA, beta,
                                           nodes)
                    lines.append(f"| {net} | {node} | {gbps} Gb/s | {nodes} | "
                                 f"{t * 1e3:.2f} | {eff(64):.0%} | "
                                 f"{int(np.ceil(need))} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["lenet5", "cifar10_cnn", "resnet20"])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.nets, args.steps)
        return
    one = single(args.nets, args.steps)
    mpirun = shutil.which("mpirun")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([mpirun, *MPIRUN_FLAGS, "-n", "2", sys.executable,
                           os.path.abspath(__file__), "--worker", "--steps",
                           str(args.steps), "--nets", *args.nets],
                          env=env, capture_output=True, text=True, timeout=3600)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")),
                None)
    if proc.returncode or line is None:
        sys.exit(f"mpirun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    two = json.loads(line[7:])
    print(json.dumps({"single_2_threads": one, "two_ranks": two}, indent=1))
    print(report(one, two))


if __name__ == "__main__":
    main()
