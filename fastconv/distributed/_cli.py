"""``fastconv train MODEL --distributed`` under mpirun: what fastconv/cli.py's train
command does differently on N ranks.

- run(): init() (the rank's threads: --threads, else OMP_NUM_THREADS, else the cores
  the rank owns), only rank 0 prints, saves (--save) and plots (--plot); any failure
  of a rank prints a line naming it and aborts the job (never a hang).
- scale_recipe(): --batch-size is the per-rank batch; the learning rate is multiplied
  by the number of ranks with ``--lr-scaling linear`` (Goyal et al. 2017), kept with
  ``none``; both batches and the rate are printed.
- training_data(): the rank's ShardedSequence (augmentation drawn per batch from a
  generator of the seed and the rank) and the callbacks of a data-parallel fit;
  ``--sync-bn`` synchronizes the BatchNormalization statistics (sync_batch_norm).
"""
import contextlib
import os
import sys

import numpy as np

from . import _comm
from ._callbacks import BroadcastCallback, MetricAverageCallback, ShardedSequence
from ._optimizer import DistributedOptimizer
from ._sync_bn import sync_batch_norm

__all__ = ["run", "scale_recipe", "wrap_optimizer", "training_data"]


def run(command, args):
    """Run ``command(args)`` on this rank (see the module docstring)."""
    _comm.init(threads=args.threads)
    if not _comm.is_root():
        args.save = None
        args.plot = None
        quiet = open(os.devnull, "w")
    else:
        quiet = contextlib.nullcontext(sys.stdout)
    with quiet as out, contextlib.redirect_stdout(out):
        try:
            return command(args)
        except SystemExit as exc:
            if exc.code not in (0, None):
                _comm.abort(f"exit status {exc.code}")
            raise
        except BaseException as exc:  # noqa: B902 (any failure must stop every rank)
            _comm.abort(f"fastconv {args.command}: {type(exc).__name__}: {exc}",
                        exc=exc)


def scale_recipe(cfg, args, emit):
    """Scale cfg's learning rate for the job's size and print the batches."""
    n = _comm.size()
    base = cfg["lr"]
    if args.lr_scaling == "linear":
        cfg["lr"] = base * n
    emit(f"distributed: {n} ranks x {_comm._state.threads} threads, batch "
         f"{cfg['batch_size']} per rank, global batch {cfg['batch_size'] * n}, "
         f"lr {cfg['lr']:g} ({args.lr_scaling} scaling of {base:g})")


def wrap_optimizer(optimizer):
    return DistributedOptimizer(optimizer)


def training_data(model, x, y, batch_size, args, augment=None, emit=print):
    """(the rank's Sequence, the callbacks to put first in fit's list); with
    ``--sync-bn`` the model's BatchNormalization layers synchronized."""
    if args.sync_bn:
        emit(f"distributed: {sync_batch_norm(model)} BatchNormalization layers "
             f"synchronized")
    per_batch = None if augment is None else _PerBatch(
        augment, np.random.default_rng([args.seed, _comm.rank()]))
    seq = ShardedSequence(x, y, batch_size, seed=args.seed, augment=per_batch)
    return seq, [BroadcastCallback(), seq.callback, MetricAverageCallback()]


class _PerBatch:
    """augment(xb, yb, rng) with this rank's generator."""

    def __init__(self, augment, rng):
        self.augment, self.rng = augment, rng

    def __call__(self, xb, yb):
        return self.augment(xb, yb, self.rng)
