"""Shared pieces of the benchmark suites (kept out of the default test run by
``--benchmark-skip``; run them with ``pytest bench/ --benchmark-only``).

The header printed at the top of a run says which BLAS kernel and how many OpenMP/BLAS
threads ran, so that figures from different machines can be compared honestly.
"""
import numpy as np
import pytest

import fastconv


def pytest_report_header(config):
    lines = []
    c = fastconv.config()
    lines.append(f"fastconv {c['fastconv']}: OpenMP {'on' if c['openmp'] else 'off'}, "
                 f"{c['threads']} threads")
    for b in c["blas"]:
        lines.append(f"BLAS: {b.get('internal_api')} {b.get('version')} kernel="
                     f"{b.get('architecture')} threads={b.get('num_threads')}")
    try:
        import torch
        lines.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    except ImportError:
        lines.append("torch not installed: PyTorch comparisons skipped")
    return lines


@pytest.fixture(scope="session")
def torch():
    """The torch module (CPU), or skip the benchmark when it is not installed."""
    torch = pytest.importorskip("torch")
    return torch


@pytest.fixture
def rng():
    return np.random.default_rng(0)
