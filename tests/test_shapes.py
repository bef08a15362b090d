"""Shape arithmetic against hand-computed cases (TensorFlow's 'same' rule)."""
import pytest

from fastconv.shapes import (conv_output_shape, normalize_pair, normalize_padding,
                             resolve_padding)


@pytest.mark.parametrize("n,k,s,expected", [
    # out = ceil(n / s); total = max((out - 1) * s + k - n, 0); extra at bottom/right.
    (5, 3, 1, (1, 1)),      # out 5, total 2
    (4, 2, 1, (0, 1)),      # out 4, total 1 -> bottom gets the odd one
    (4, 2, 2, (0, 0)),      # out 2, total 0
    (5, 2, 2, (0, 1)),      # out 3, total 1
    (7, 3, 2, (1, 1)),      # out 4, total 2
    (6, 3, 2, (0, 1)),      # out 3, total 1
    (10, 4, 3, (1, 2)),     # out 4, total 3
    (2, 5, 3, (1, 2)),      # out 1, total 3
    (3, 1, 2, (0, 0)),      # out 2, total max(1 + 1 - 3, 0) = 0
])
def test_same_padding_split(n, k, s, expected):
    pads = resolve_padding("same", (n, n), (k, k), (s, s))
    assert pads == (expected, expected)
    out = conv_output_shape((n, n), (k, k), (s, s), pads)
    assert out == (-(-n // s),) * 2


def test_explicit_forms():
    assert normalize_padding(2) == ((2, 2), (2, 2))
    assert normalize_padding((1, 3)) == ((1, 1), (3, 3))
    assert normalize_padding(((0, 1), (2, 3))) == ((0, 1), (2, 3))
    assert normalize_padding("VALID") == "valid"
    assert resolve_padding("valid", (5, 5), (3, 3), (1, 1)) == ((0, 0), (0, 0))
    assert normalize_pair(3, "stride") == (3, 3)
    assert normalize_pair([2, 1], "stride") == (2, 1)


def test_output_size_with_dilation_and_stride():
    # (n + pads - ((k - 1) * d + 1)) // s + 1 = (10 + 1 - 5) // 2 + 1 = 4
    assert conv_output_shape((10, 10), (3, 3), (2, 2), ((1, 0), (1, 0)), (2, 2)) == (4, 4)


@pytest.mark.parametrize("bad,match", [
    (((1, 2), (3,)), "padding must be non-negative"),
    (((1, 2), 3), "padding must be an int"),
    ([1, 2, 3], "padding must be non-negative"),
    (True, "padding must be an int or a pair of ints, got True"),
])
def test_padding_errors(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        normalize_padding(bad)
