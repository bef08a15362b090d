"""Test-wide setup.

Every test runs in its own temporary working directory.  Tests that start a Python
subprocess (the command line, import-time behaviour, environment variables) would
otherwise, when pytest runs from the checkout, import the unbuilt source folder
``fastconv/`` from the current directory instead of the installed package.
"""
import pytest


@pytest.fixture(autouse=True)
def _run_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
