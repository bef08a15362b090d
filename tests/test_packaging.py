"""The project's own install files agree with one another."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _requirement_lines(text):
    return sorted(line.split("#")[0].strip() for line in text.splitlines()
                  if line.split("#")[0].strip())


def test_requirements_test_lists_the_test_extra():
    """The README's test command installs requirements-test.txt instead of
    ".[test]" (which would compile the extensions a second time): the two lists must
    stay the same."""
    tomllib = pytest.importorskip("tomllib")
    req = ROOT / "requirements-test.txt"
    if not req.exists():
        pytest.skip("not run from a source checkout")
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    assert _requirement_lines(req.read_text()) == sorted(extra)


def test_the_readme_test_command_does_not_reinstall_the_package():
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("not run from a source checkout")
    commands = re.findall(r"^    (python -m pip install .*)$", readme.read_text(), re.M)
    assert commands[0] == "python -m pip install . && fastconv train lenet5"
    assert commands[1] == "python -m pip install -r requirements-test.txt && pytest"
