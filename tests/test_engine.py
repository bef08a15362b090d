"""The conv engine's choice of algorithm: explain_conv names it and says why not the
others, force_conv_algorithm picks one (or refuses with the reason), FASTCONV_VERBOSE
prints what ran, tuning.override changes thresholds, and plans are cached, bounded."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv
from fastconv import _ext
from fastconv import reference as ref
from fastconv.ops.conv import plan as _plan
from fastconv import tuning

F32, F64 = np.float32, np.float64
LAST = "channels_last"

# (x shape, weight shape, keywords, dtype, pass, the algorithm it gets)
EXAMPLES = [
    ((32, 5, 5, 16), (5, 5, 16, 120), {}, F32, "forward", "dense"),
    ((256, 4, 4, 256), (4, 4, 256, 256), {}, F32, "forward", "dense_1x1"),
    ((128, 2, 2, 192), (1, 1, 192, 64), {}, F32, "forward", "pointwise"),
    ((128, 2, 2, 192), (1, 1, 192, 64), {}, F32, "grad_weight", "pointwise"),
    ((8, 32, 32, 32), (3, 3, 32, 32), {"padding": 1}, F32, "forward", "winograd_f4"),
    ((8, 15, 15, 32), (3, 3, 32, 64), {"padding": 1}, F32, "forward", "winograd_f5"),
    ((8, 15, 15, 32), (3, 3, 32, 64), {"padding": 1}, F32, "grad_weight", "winograd_f5"),
    ((8, 15, 15, 32), (3, 3, 32, 64), {"padding": 1}, F32, "grad_input", "winograd_f5"),
    ((2, 9, 10, 64), (3, 3, 64, 3), {"padding": "same"}, F32, "forward", "narrow"),
    ((2, 9, 10, 3), (3, 3, 3, 64), {"padding": "same"}, F32, "grad_input", "narrow"),
    ((32, 28, 28, 1), (5, 5, 1, 6), {}, F32, "forward", "wide"),
    ((32, 28, 28, 1), (5, 5, 1, 6), {}, F32, "grad_weight", "wide"),
    ((2, 9, 10, 5), (3, 3, 5, 64), {"stride": 2, "padding": "same"}, F64, "forward",
     "pixel"),
    ((2, 9, 10, 5), (3, 3, 5, 64), {"stride": 2, "padding": "same"}, F64, "grad_weight",
     "pixel"),
    ((3, 5, 11, 13), (9, 5, 3, 3), {"data_format": "channels_first"}, F64, "forward",
     "shifted"),
    ((3, 3, 11, 10), (7, 3, 3, 3), {"stride": 2, "data_format": "channels_first"}, F64,
     "forward", "im2col"),
    ((3, 3, 11, 10), (7, 3, 3, 3), {"stride": 2, "data_format": "channels_first"}, F64,
     "grad_input", "scatter"),
]


def _explain(x_shape, w_shape, kw, dtype, pass_):
    kw = dict(kw)
    kw.setdefault("data_format", LAST)
    return fastconv.explain_conv(x_shape, w_shape, dtype=dtype, pass_=pass_, **kw)


@pytest.mark.parametrize("x_shape, w_shape, kw, dtype, pass_, name", EXAMPLES,
                         ids=[f"{e[-1]}-{e[-2]}" for e in EXAMPLES])
def test_explain_names_the_algorithm_of_each_example(x_shape, w_shape, kw, dtype, pass_,
                                                     name):
    e = _explain(x_shape, w_shape, kw, dtype, pass_)
    assert e.algorithm == name
    assert e.pass_ == pass_ and e.plan.name == name
    text = str(e)
    assert text.startswith(f"{pass_}: {name} ({_ext.conv2d.isa()})")
    # every other algorithm of the pass is named with its reason
    others = set(fastconv.conv_algorithms(pass_)) - {name}
    assert set(e.refused) == others
    assert all(reason for reason in e.refused.values())
    for other in others:
        assert f": {other} (" in text


def test_winograd_f2_where_the_tuning_asks_for_it():
    shapes = ((8, 32, 32, 32), (3, 3, 32, 32), {"padding": 1}, F32)
    assert _explain(*shapes, "forward").refused["winograd_f2"].startswith("the 4x4 tile")
    with tuning.override(winograd_tile=2, winograd_grad_tile=2):
        for pass_ in ("forward", "grad_input", "grad_weight"):
            assert _explain(*shapes, pass_).algorithm == "winograd_f2"
    assert _explain(*shapes, "forward").algorithm == "winograd_f4"


def test_refusal_reasons_are_specific():
    e = _explain((2, 3, 8, 8), (4, 3, 3, 3), {"data_format": "channels_first",
                                               "stride": 2}, F64, "forward")
    assert e.algorithm == "im2col"
    assert "channels_first" in e.refused["pixel"]
    assert "float64" in e.refused["winograd_f4"]
    assert "stride 2x2" in e.refused["shifted"]
    gi = _explain((2, 3, 8, 8), (4, 3, 3, 3), {"data_format": "channels_first",
                                                "stride": 2}, F64, "grad_input")
    assert gi.algorithm == "scatter" and "stride 2x2" in gi.refused["im2col"]


def test_forcing_an_unsupported_algorithm_raises_with_the_reason():
    x = np.ones((2, 3, 8, 8))
    w = np.ones((4, 3, 3, 3))
    with fastconv.force_conv_algorithm("winograd_f4"):
        with pytest.raises(ValueError, match=r"winograd_f4 cannot run this forward "
                                             r"\(N2 C3 8x8 .*float64\): float64"):
            fastconv.conv2d(x, w)
    with fastconv.force_conv_algorithm(grad_input="scatter", forward="shifted"):
        with pytest.raises(ValueError, match="shifted cannot run.*stride 2x2"):
            fastconv.conv2d(x, w, stride=2)
        fastconv.conv2d_grad_input(np.ones((2, 4, 3, 3)), w, x.shape, stride=2)
    with pytest.raises(ValueError, match="name must be one of the conv algorithms.*"
                                         "'winograd'"):
        with fastconv.force_conv_algorithm("winograd"):
            pass
    with pytest.raises(ValueError, match="grad_weight must name one of.*'narrow'"):
        with fastconv.force_conv_algorithm(grad_weight="narrow"):
            pass
    with pytest.raises(TypeError, match="needs an algorithm name"):
        with fastconv.force_conv_algorithm():
            pass


def test_explain_checks_its_arguments():
    with pytest.raises(ValueError, match="pass_ must be one of.*got 'backward'"):
        fastconv.explain_conv((1, 1, 5, 5), (1, 1, 3, 3), pass_="backward")
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got 'int32'"):
        fastconv.explain_conv((1, 1, 5, 5), (1, 1, 3, 3), dtype="int32")
    with pytest.raises(ValueError, match="groups"):
        fastconv.explain_conv((1, 3, 5, 5), (1, 1, 3, 3), groups=2)


def test_forced_algorithms_give_the_reference():
    """Every algorithm that can run a case, forced on all the passes it has, gives the
    reference's forward and gradients (the path tests go through every blocking)."""
    rng = np.random.default_rng(3)
    cases = [((2, 9, 10, 32), (3, 3, 32, 3), 1, "same"),
             ((3, 12, 21, 2), (3, 3, 2, 6), 1, "same"),
             ((2, 8, 9, 16), (3, 3, 16, 24), 1, 1),
             ((2, 9, 10, 5), (3, 3, 5, 40), 2, "same"),
             ((24, 4, 4, 8), (4, 4, 8, 20), 1, "valid"),
             ((24, 2, 3, 8), (1, 1, 8, 36), 1, "valid")]
    forced = 0
    for xs, ws, stride, padding in cases:
        x = rng.standard_normal(xs)
        w = rng.standard_normal(ws)
        b = rng.standard_normal(ws[-1])
        xf, wf = ref.to_channels_first(x), w.transpose(3, 2, 0, 1)
        args = dict(stride=stride, padding=padding, data_format=LAST)
        y0 = fastconv.conv2d(x, w, b, **args)
        gy = rng.standard_normal(y0.shape)
        pads = fastconv.ops.conv.geometry(xs, ws, stride, padding, 1, 1, LAST)
        pads = ((pads.pad_top, pads.pad_bottom), (pads.pad_left, pads.pad_right))
        gyf = ref.to_channels_first(gy)
        want = (ref.conv2d_forward(xf, wf, b, (stride,) * 2, pads),
                ref.conv2d_grad_input(gyf, wf, xf.shape, (stride,) * 2, pads),
                ref.conv2d_grad_weight(gyf, xf, wf.shape, (stride,) * 2, pads))
        for dtype in (F32, F64):
            tol = 2e-4 if dtype == F32 else 1e-10
            for name in fastconv.conv_algorithms():
                force = {p: name for p in ("forward", "grad_input", "grad_weight")
                         if name in fastconv.conv_algorithms(p) and name in
                         fastconv.explain_conv(xs, ws, dtype=dtype, pass_=p,
                                               **args).runnable}
                if not force:
                    continue
                forced += 1
                xi, wi, bi = x.astype(dtype), w.astype(dtype), b.astype(dtype)
                with fastconv.force_conv_algorithm(**force):
                    y = fastconv.conv2d(xi, wi, bi, **args)
                    gx, gw, _ = fastconv.conv2d_backward(gy.astype(dtype), xi, wi, **args)
                got = (ref.to_channels_first(y), ref.to_channels_first(gx),
                       gw.transpose(3, 2, 0, 1))
                for g_, w_ in zip(got, want):
                    scale = max(1.0, np.abs(w_).max())
                    np.testing.assert_allclose(g_, w_, rtol=tol, atol=tol * scale,
                                               err_msg=f"{name} {np.dtype(dtype)} {xs}")
    assert forced >= 25


def test_verbose_prints_one_line_per_pass(tmp_path):
    code = ("import numpy as np, fastconv\n"
            "x = np.ones((4, 28, 28, 1), np.float32); w = np.ones((5, 5, 1, 6), np.float32)\n"
            "y = fastconv.conv2d(x, w, data_format='channels_last')\n"
            "fastconv.conv2d_backward(y, x, w, data_format='channels_last')\n"
            "fastconv.conv2d(np.ones((2, 3, 9, 9)), np.ones((4, 3, 3, 3)), stride=2)\n")
    env = dict(os.environ, FASTCONV_VERBOSE="1")
    here = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("fastconv: conv2d")]
    assert len(lines) == 4, out.stderr
    assert lines[0].startswith("fastconv: conv2d forward N4 C1 28x28 -> K6 5x5 s1x1 p0 "
                               "d1x1 g1 -> 24x24 nhwc float32: wide (")
    assert lines[1].split(":")[1].strip().startswith("conv2d grad_input")
    assert lines[2].split(":")[1].strip().startswith("conv2d grad_weight")
    assert " wide (" in lines[2] and lines[2].endswith(" ms")
    assert "nchw float64: im2col (" in lines[3]
    env.pop("FASTCONV_VERBOSE")
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True)
    assert "fastconv: conv2d" not in quiet.stderr


def test_force_is_per_thread():
    """force_conv_algorithm holds in its own thread (a ContextVar) only."""
    seen = {}

    def other():
        seen["other"] = fastconv.explain_conv((3, 5, 11, 13), (9, 5, 3, 3),
                                              dtype="float64").algorithm
    with fastconv.force_conv_algorithm("im2col"):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        seen["here"] = fastconv.explain_conv((3, 5, 11, 13), (9, 5, 3, 3),
                                             dtype="float64").algorithm
    assert seen == {"other": "shifted", "here": "im2col"}


def test_tuning_override_checks_fields_and_is_undone():
    before = tuning.current()
    with tuning.override(chunk_bytes=1) as t:
        assert t.chunk_bytes == 1 and tuning.current() is t
    assert tuning.current() is before
    with pytest.raises(TypeError, match=r"unknown tuning fields \['chunk'\]"):
        with tuning.override(chunk=1):
            pass
    with pytest.raises(ValueError, match="winograd_tile must be None, 2, 4 or 5, got 3"):
        with tuning.override(winograd_tile=3):
            pass
    with pytest.raises(ValueError, match="wide_partials must be a positive int, got 0"):
        with tuning.override(wide_partials=0):
            pass


def test_plans_are_cached_and_the_cache_is_bounded():
    g = fastconv.ops.conv.geometry((2, 8, 8, 3), (3, 3, 3, 4), 1, 1, 1, 1, LAST)
    p = _plan.select(g, np.dtype(F32), "forward")
    assert _plan.select(g, np.dtype(F32), "forward") is p
    with tuning.override(chunk_bytes=7):  # another tuning: another plan
        assert _plan.select(g, np.dtype(F32), "forward") is not p
    for n in range(1, _plan._CACHE_SIZE + 10):
        gi = fastconv.ops.conv.geometry((n, 8, 8, 3), (3, 3, 3, 4), 1, 1, 1, 1, LAST)
        _plan.select(gi, np.dtype(F32), "forward")
        assert len(_plan._CACHE) <= _plan._CACHE_SIZE
