"""One thread while other processes hold the cores (a shared machine).

A parallel region ends when its last thread does.  When other processes keep the cores
busy, one of the kernels' threads is often waiting for a time slice (milliseconds on
Linux) while the other has finished its half, and every region of a pass waits so:
on 2 cores with two busy processes beside it, a training step slowed several times
more than the fair share of the cores would explain (docs/benchmarks/modern_nets.md,
"Under load").  One thread does not wait for another.

The signal is this thread's run-queue delay: the second field of Linux's
/proc/thread-self/schedstat, the nanoseconds it spent runnable but not running, read at
most every INTERVAL seconds from the model's batch loops (train_step, infer).  It grows
only when the cores this thread may run on are taken -- by other processes, or by more
threads of this one than there are cores -- so a busy host seen through a container's
cpuset does not trip it, and idle spinning threads do not either.  While it grows by
more than BUSY of the wall time (a quarter: one busy process beside two threads on two
cores makes a third; short commands and daemons, a few milliseconds in half a second,
do not), the batches run on one thread; after FIRST_RETRY
seconds (doubling up to MAX_RETRY while the cores stay taken) one interval runs on all
threads again to see whether they came free.  Results do not change: the kernels give
the same bits on any number of threads (docs/design/threads.md).

FASTCONV_LOAD_ADAPT=0 in the environment turns this off (the benchmark harnesses do:
a spinning peer in the same process would otherwise send fastconv to one thread).  No
effect where /proc/thread-self/schedstat cannot be read (not Linux, no schedstats).
"""
import os
import threading
import time

from . import _ext

__all__ = ["BatchThreads", "threads_for"]

INTERVAL = 0.5       # seconds between readings
BUSY = 0.25          # run-queue delay per second of wall time that means "taken"
FIRST_RETRY = 1.0    # seconds on one thread before the first try on all threads
MAX_RETRY = 32.0

_PATH = "/proc/thread-self/schedstat"
_now = time.monotonic
ENABLED = os.environ.get("FASTCONV_LOAD_ADAPT", "1").strip() != "0"
_local = threading.local()


def _run_delay():
    """This thread's run-queue delay in seconds, or None where it cannot be read."""
    try:
        with open(_PATH, "rb") as f:
            return int(f.read().split()[1]) * 1e-9
    except (OSError, ValueError, IndexError):
        return None


class Monitor:
    """The state of one thread's batches: on all threads, on one, or trying all."""

    __slots__ = ("wall", "delay", "single", "trial", "retry", "retry_at")

    def __init__(self, wall, delay):
        self.wall, self.delay = wall, delay
        self.single = self.trial = False
        self.retry, self.retry_at = FIRST_RETRY, 0.0

    def reading(self, wall, delay):
        """Take a reading (wall clock and run-queue delay, seconds) at least INTERVAL
        after the last one and move between the states."""
        busy = (delay - self.delay) > BUSY * (wall - self.wall)
        self.wall, self.delay = wall, delay
        if self.trial:              # the interval just read ran on all threads
            self.trial = False
            if busy:
                self.retry = min(2 * self.retry, MAX_RETRY)
                self.retry_at = wall + self.retry
            else:
                self.single, self.retry = False, FIRST_RETRY
        elif not self.single:
            if busy:
                self.single, self.retry_at = True, wall + self.retry
        elif wall >= self.retry_at:
            self.trial = True

    def threads(self, wanted):
        return 1 if self.single and not self.trial else wanted


def threads_for(wanted):
    """The threads a batch of the calling thread runs on: wanted, or 1 while the
    cores are taken (see the module docstring)."""
    global ENABLED
    if wanted <= 1 or not ENABLED:
        return wanted
    now = _now()
    m = getattr(_local, "monitor", None)
    if m is None:
        delay = _run_delay()
        if delay is None:
            ENABLED = False
            return wanted
        _local.monitor = Monitor(now, delay)
        return wanted
    if now - m.wall >= INTERVAL:
        delay = _run_delay()
        if delay is not None:
            m.reading(now, delay)
    return m.threads(wanted)


class BatchThreads:
    """``with BatchThreads():`` runs the block on threads_for(the current count)
    threads, the count restored after it."""

    __slots__ = ("_wanted",)

    def __enter__(self):
        wanted = _ext.openmp.get_max_threads()
        n = threads_for(wanted)
        if n != wanted:
            _ext.openmp.set_num_threads(n)
            self._wanted = wanted
        else:
            self._wanted = None
        return self

    def __exit__(self, *exc):
        if self._wanted is not None:
            _ext.openmp.set_num_threads(self._wanted)
        return False
