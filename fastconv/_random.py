"""The random generator behind initialisation, shuffling and dropout.

fastconv draws every random number from NumPy Generators (PCG64).  One library-wide
generator seeds everything that was not given a seed of its own; ``set_seed(n)`` resets it,
so that

    fastconv.set_seed(0); model = build(); model.fit(...)

repeats exactly: weight initialisation draws from it directly, and each Dropout layer and
each model takes a private generator seeded from it when it is created (so the order in
which layers run does not change what another layer draws).
"""
import numbers

import numpy as np

__all__ = ["set_seed", "get_generator", "make_generator", "generator_state",
           "generator_from_state"]

_global = np.random.default_rng()


def set_seed(seed):
    """Seed fastconv's random numbers (initialisation, shuffling, dropout).

    ``seed`` is a non-negative int.  Objects created after the call (layers, models,
    initializers without a seed of their own) draw reproducibly from it.
    """
    global _global
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be a non-negative int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _global = np.random.default_rng(int(seed))


def get_generator():
    """The library-wide Generator (replaced by every ``set_seed`` call)."""
    return _global


def make_generator(seed=None):
    """A private Generator: from ``seed`` when given, else seeded from the global one."""
    if seed is None:
        return np.random.default_rng(int(_global.integers(0, 2**63 - 1)))
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) \
            or seed < 0:
        raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
    return np.random.default_rng(int(seed))


def generator_state(gen):
    """A JSON-serialisable snapshot of a PCG64 Generator (Python ints, exact)."""
    return gen.bit_generator.state


def generator_from_state(state, where="generator state"):
    """Rebuild a Generator from :func:`generator_state`'s output.

    Every field is checked (a PCG64 state: 128-bit ``state``, odd 128-bit ``inc``,
    ``has_uint32`` 0 or 1, 32-bit ``uinteger``); anything else raises ValueError
    naming ``where``.
    """
    def is_int(value, high):
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and 0 <= value < high)

    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64" \
            or set(state) != {"bit_generator", "state", "has_uint32", "uinteger"}:
        raise ValueError(f"{where} is not a PCG64 generator state: {str(state)[:200]}")
    inner = state["state"]
    if not isinstance(inner, dict) or set(inner) != {"state", "inc"} \
            or not is_int(inner["state"], 2**128) or not is_int(inner["inc"], 2**128) \
            or inner["inc"] % 2 != 1 or not is_int(state["has_uint32"], 2) \
            or not is_int(state["uinteger"], 2**32):
        raise ValueError(f"{where} is not a valid PCG64 state (state and odd inc below "
                         f"2**128, has_uint32 0 or 1, uinteger below 2**32): "
                         f"{str(state)[:200]}")
    bitgen = np.random.PCG64()
    bitgen.state = {"bit_generator": "PCG64",
                    "state": {"state": int(inner["state"]), "inc": int(inner["inc"])},
                    "has_uint32": int(state["has_uint32"]),
                    "uinteger": int(state["uinteger"])}
    return np.random.Generator(bitgen)
