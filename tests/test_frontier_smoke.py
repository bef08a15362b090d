"""Smoke test of the issue-6 frontier harness (bench/frontier.py) on a tiny configuration
with fastconv alone, plus checks of its pieces against independent oracles: the plain
Python loop baseline against fastconv.reference, and the target verdicts against
hand-made measurements on both sides of each threshold."""
import json
import os
import sys

import numpy as np
import pytest

from fastconv import reference as ref

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
sys.path.insert(0, BENCH)
import _frontier_common as common  # noqa: E402
import frontier  # noqa: E402


def test_plain_python_loops_match_the_reference():
    rng = np.random.default_rng(3)
    c, h, w, k, p = 2, 6, 5, 3, 1                     # rectangular image, 'same' padding
    x = rng.standard_normal((1, c, h, w))
    wt = rng.standard_normal((1, c, k, k))
    gy = rng.standard_normal((1, 1, h, w))
    pads = ((p, p), (p, p))
    xp = np.pad(x[0], ((0, 0), (p, p), (p, p)))
    y = common.python_conv_forward(xp.tolist(), wt[0].tolist(), h, w, 0.25)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, wt, np.array([0.25]),
                                                     pads=pads)[0, 0], rtol=1e-12)
    gx = np.array(common.python_conv_grad_input(gy[0, 0].tolist(), wt[0].tolist(),
                                                h + 2 * p, w + 2 * p))[:, p:-p, p:-p]
    np.testing.assert_allclose(gx, ref.conv2d_grad_input(gy, wt, x.shape, pads=pads)[0],
                               rtol=1e-12, atol=1e-12)
    gw = common.python_conv_grad_weight(gy[0, 0].tolist(), xp.tolist(), k)
    np.testing.assert_allclose(gw, ref.conv2d_grad_weight(gy, x, wt.shape, pads=pads)[0],
                               rtol=1e-12, atol=1e-12)


def _layer(section, item, pass_name, batch, fc, torch=None, peers=None):
    times = {"fastconv nchw": fc, "fastconv nhwc": fc * 2}
    if torch is not None:
        times["torch"] = torch
    return {"section": section, "item": item, "pass": pass_name, "batch": batch,
            "times": times, "peers": peers or {}}


def _by_target(targets):
    return {t["target"]: t for t in targets}


def test_target_verdicts_follow_the_measurements():
    tf_fast = {"tensorflow": {"ms": 1.0, "fastconv_ms": 2.0, "ratio": 2.0}}
    results = {
        "layers": [
            _layer("conv", "lenet.c1", "fwd", 128, 1.0, 2.0),
            _layer("conv", "lenet.c1", "fwd+bwd", 128, 3.0, 4.0, tf_fast),   # TF faster
            _layer("conv", "lenet.c3", "fwd", 128, 1.0, 2.0),
            _layer("conv", "lenet.c3", "fwd+bwd", 128, 3.0, 4.0),            # TF not run
            _layer("pool", "lenet.s2", "fwd+bwd", 128, 0.29, 1.0),
            _layer("pool", "lenet.s4", "fwd+bwd", 128, 0.31, 1.0),
        ],
        "nets": [{"item": "lenet5", "mode": "train", "batch": 32,
                  "times": {"fastconv": 4.0, "torch": 10.0}, "peers": {}},
                 {"item": "lenet5", "mode": "infer", "batch": 32,
                  "times": {"fastconv": 1.0}, "peers": {}}],
        "threads": [{"item": "cifar.c2", "pass": "fwd+bwd", "batch": 128,
                     "threads": [1, 2],
                     "times": {"fastconv nchw 1t": 10.0, "fastconv nhwc 1t": 10.0,
                               "fastconv nchw 2t": 5.5, "fastconv nhwc 2t": 6.5}}],
        "memory": [{"item": "lenet5", "batch": 32, "system": "fastconv", "steps": 50,
                    "peak_mib": 60.0, "setup_mib": 50.0},
                   {"item": "lenet5", "batch": 32, "system": "torch", "steps": 50,
                    "peak_mib": 300.0, "setup_mib": 290.0}],
    }
    t = _by_target(frontier.evaluate_targets(results))
    assert t["conv fwd+bwd lenet.c1 b128"]["status"] == "NOT MET"
    assert t["conv fwd+bwd lenet.c1 b128"]["measured"] == pytest.approx(2.0)
    assert t["conv fwd+bwd lenet.c3 b128"]["status"].startswith("INCOMPLETE")
    assert t["conv fwd+bwd lenet.c3 b128"]["measured"] == pytest.approx(0.75)
    assert t["pool fwd+bwd lenet.s2 b128"]["status"] == "MET"
    assert t["pool fwd+bwd lenet.s4 b128"]["status"] == "NOT MET"
    assert t["lenet5 train step b32"]["status"] == "MET"              # 0.4 <= 0.5
    assert t["lenet5 inference b32"]["status"] == "NOT MEASURED"      # no ORT
    gm = t["geomean conv fwd+bwd fastconv/PyTorch b128"]
    assert gm["measured"] == pytest.approx(0.75)
    assert gm["status"].startswith("INCOMPLETE")                      # 2 of 7 layers
    speed = t["cifar.c2 fwd+bwd b128 speed-up 2 vs 1 threads"]
    assert speed["measured"] == pytest.approx(10 / 6.5)               # the worse layout
    assert speed["status"] == "NOT MET"
    assert t["peak memory lenet5 b32, 50 training steps"]["status"] == "MET"


def test_quick_run_with_fastconv_only(tmp_path, capsys):
    out = tmp_path / "frontier.json"
    rc = frontier.main(["--quick", "--no-torch", "--batches", "2", "--layers", "lenet.c5",
                        "--pools", "lenet.s4", "--nets", "lenet5",
                        "--scaling-layers", "lenet.c5", "--memory-steps", "2",
                        "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert "BLAS" in text and "conv ISA path" in text
    assert "tensorflow: skipped (no interpreter given" in text
    assert {(r["section"], r["item"], r["pass"]) for r in data["layers"]} == {
        ("conv", "lenet.c5", "fwd"), ("conv", "lenet.c5", "fwd+bwd"),
        ("pool", "lenet.s4", "fwd"), ("pool", "lenet.s4", "fwd+bwd")}
    conv = [r for r in data["layers"] if r["section"] == "conv"]
    assert conv[1]["gflop"] == pytest.approx(3 * conv[0]["gflop"])
    assert all(v > 0 for r in data["layers"] for v in r["times"].values())
    assert {r["mode"] for r in data["nets"]} == {"train", "infer"}
    mem = data["memory"][0]
    assert mem["system"] == "fastconv" and mem["peak_mib"] >= mem["setup_mib"] > 0
    naive = {(r["item"], r["pass"]): r for r in data["naive"]}
    assert naive[("lenet.c5", "fwd+bwd")]["python_ms"] > 0
    assert naive[("lenet.s4", "fwd")]["python_ms"] is None
    assert set(data["threads"][0]["times"]) == {
        "fastconv nchw 1t", "fastconv nhwc 1t", "fastconv nchw 2t", "fastconv nhwc 2t"} \
        or data["threads"][0]["threads"] == [1]
    statuses = {t["target"]: t["status"] for t in data["targets"]}
    assert statuses["conv fwd+bwd lenet.c5 b2"] == "NOT MEASURED"     # no peer at all
    assert "Performance targets (docs/benchmarks/method.md)" in text
