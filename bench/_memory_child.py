"""Child process of bench/frontier.py's memory section: N training steps of one network
on one system, in a fresh interpreter, so the parent can read this process's peak
resident set (os.wait4's ru_maxrss) and nothing else's.

    python bench/_memory_child.py fastconv|torch lenet5|cifar10_cnn BATCH STEPS THREADS

Prints one JSON line: the peak resident set after imports and model set-up (before the
first step) and at the end, in KiB.  It is read from /proc/self/status (VmHWM, the
high-water mark of this process's own address space): getrusage's ru_maxrss would also
count the parent's resident set at fork time (Linux carries it across exec), which here is
the benchmark process with torch loaded.  ru_maxrss is the fallback where /proc is missing.
"""
import json
import resource
import sys

import bench_models


def peak_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv):
    system, net, batch, steps, threads = argv[0], argv[1], int(argv[2]), int(argv[3]), \
        int(argv[4])
    import fastconv
    fastconv.set_num_threads(threads)
    if system == "fastconv":
        train, _ = bench_models.fastconv_steps(net, batch)
    elif system == "torch":
        import torch
        torch.set_num_threads(threads)
        train, _ = bench_models.torch_steps(torch, net, batch)
    else:
        raise ValueError(f"system must be 'fastconv' or 'torch', got {system!r}")
    setup = peak_kib()
    for _ in range(steps):
        train()
    peak = peak_kib()
    print(json.dumps({"setup_kib": setup, "peak_kib": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
