"""Test-wide setup.

Every test runs in its own temporary working directory.  Tests that start a Python
subprocess (the command line, import-time behaviour, environment variables) would
otherwise, when pytest runs from the checkout, import the unbuilt source folder
``fastconv/`` from the current directory instead of the installed package.

``isa`` runs a test once per micro-kernel build this CPU can run.
"""
import pytest

from fastconv import _ext

_ISA_ORDER = ["portable", "avx2", "avx512"]
AVAILABLE_ISAS = _ISA_ORDER[:_ISA_ORDER.index(_ext.conv2d.best_isa()) + 1]


@pytest.fixture(autouse=True)
def _run_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request):
    before = _ext.conv2d.isa()
    _ext.conv2d.set_isa(request.param)
    yield request.param
    _ext.conv2d.set_isa(before)
