"""The compiled kernels, imported in one place.

A source checkout that was never built has no compiled modules; importing fastconv then
fails here, once, with instructions, instead of with a NameError somewhere later.
"""
try:
    from . import _conv2d as conv2d
    from . import _openmp_helpers as openmp
    from . import _pool2d as pool2d
    from . import _activations as activations
    from . import _optim as optim
    from . import _batchnorm as batchnorm
except ImportError as exc:  # pragma: no cover - exercised by tests/test_build.py
    raise ImportError(
        "fastconv's compiled kernels could not be imported "
        f"({exc}). Build them first: `pip install .` from the source checkout (or, for "
        "development, `pip install -e . --no-build-isolation` or `python setup.py "
        "build_ext --inplace`). If you are inside the source tree, make sure Python "
        "imports the installed package and not the unbuilt folder."
    ) from exc

__all__ = ["conv2d", "openmp", "pool2d", "activations", "optim", "batchnorm"]
