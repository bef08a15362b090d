"""Peer runner of bench/frontier.py: TensorFlow/Keras and ONNX Runtime in their own
interpreter (they need not be importable next to torch in the main venv).

    PYTHONPATH=<repo> <peer-python> bench/_peers.py --systems tensorflow onnxruntime \
        --out peers.json [--batches 128 32] [...]

Every measured group also times fastconv (the same build, imported in this process)
interleaved with the peers, so bench/frontier.py compares fastconv with a peer through
the ratio measured inside this one process, not across processes.

TensorFlow: tf.nn ops in NHWC (its CPU layout) inside tf.function, gradients with
GradientTape and the same upstream gradient; networks as keras.Sequential with the
weights of the fastconv model, train_on_batch / predict_on_batch.
ONNX Runtime (inference only): graphs built with onnx.helper, NCHW, fixed shapes, all
graph optimisations on; the networks carry the fastconv model's weights.  Each graph
gets two sessions: one whose worker threads wait without spinning, timed interleaved
with the others, and one with ONNX Runtime's default spinning threads, timed
interleaved with fastconv again right after, with a settle of 0.1 s of each system's
own calls before each timed call; ONNX Runtime's time is the faster of its two, and
fastconv's, for the ratio to ONNX Runtime, the faster of its two timings (a burst of
load in either pairing slows both systems).  The spinning threads keep the cores busy
after a call returns and slowed whatever ran next in this process (the usual 10 ms
settle of `interleaved` did not cover it).  Measured, LeNet-5 inference at batch 128:
fastconv 4.3-4.4 ms interleaved with the spinning session against 2.7 ms with the
other, while ONNX Runtime itself took 2.83-2.88 ms spinning and 2.80-2.83 ms not.
(Runs 13-19, docs/benchmarks/history.md, timed the spinning session alone and
fastconv only in the first pairing.)
Both network implementations are checked against fastconv's predictions.
"""
import argparse
import json
import os
import sys

import numpy as np

import fastconv
from fastconv import applications
from fastconv.benchmark import CONV_LAYERS, POOL_LAYERS, _fastconv_conv, conv_case

from _frontier_common import SECOND, fastconv_pool, interleaved, pool_case

PASSES = ("fwd", "fwd+bwd")
LAYOUTS = {"fastconv nchw": "channels_first", "fastconv nhwc": "channels_last"}


# ------------------------------------------------------------------------ TensorFlow
def tf_conv(tf, name, batch):
    x, w, b, gy, padding = conv_case(name, batch, "channels_last")
    x, w, b, gy = (tf.constant(a) for a in (x, w, b, gy))
    pad = padding.upper()

    @tf.function
    def fwd():
        return tf.nn.bias_add(tf.nn.conv2d(x, w, 1, pad), b)

    # y is returned with the gradients: none of the gradients needs y, and a
    # tf.function returning only them lets Grappler prune the forward convolution
    # away (measured, cifar.c4 at batch 128: 10.3 ms without y, 15.4 with it, 5.2 the
    # forward alone), which timed TensorFlow's backward against fastconv's forward +
    # backward in every run up to 23 (docs/benchmarks/history.md).
    @tf.function
    def fwd_bwd():
        with tf.GradientTape() as tape:
            tape.watch([x, w, b])
            y = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, pad), b)
        return [y] + tape.gradient(y, [x, w, b], output_gradients=gy)
    return fwd, fwd_bwd


def tf_pool(tf, name, batch):
    kind, pool, x, gy = pool_case(name, batch)
    x = tf.constant(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    gy = tf.constant(np.ascontiguousarray(gy.transpose(0, 2, 3, 1)))
    op = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d

    @tf.function
    def fwd():
        return op(x, pool, pool, "VALID")

    @tf.function
    def fwd_bwd():  # y returned: average pooling's gradient does not need it (above)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = op(x, pool, pool, "VALID")
        return y, tape.gradient(y, x, output_gradients=gy)
    return fwd, fwd_bwd


def keras_net(keras, net, fc_model):
    L = keras.layers
    if net == "lenet5":
        layers = [L.Input((32, 32, 1)),
                  L.Conv2D(6, 5, activation="tanh"), L.AveragePooling2D(2),
                  L.Conv2D(16, 5, activation="tanh"), L.AveragePooling2D(2),
                  L.Conv2D(120, 5, activation="tanh"), L.Flatten(),
                  L.Dense(84, activation="tanh"), L.Dense(10, activation="softmax")]
        opt = keras.optimizers.Adam()
    else:
        layers = [L.Input((32, 32, 3)),
                  L.Conv2D(32, 3, padding="same", activation="relu"),
                  L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2), L.Dropout(0.25),
                  L.Conv2D(64, 3, padding="same", activation="relu"),
                  L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2), L.Dropout(0.25),
                  L.Flatten(), L.Dense(512, activation="relu"), L.Dropout(0.5),
                  L.Dense(10, activation="softmax")]
        opt = keras.optimizers.RMSprop(learning_rate=1e-4)
    model = keras.Sequential(layers)
    model.set_weights(fc_model.get_weights())
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    return model


# ---------------------------------------------------------------------- ONNX Runtime
def _ort_session(ort, graph, threads, spinning=False):
    import onnx
    from onnx import helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fastconv-frontier")
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning",
                                "1" if spinning else "0")
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def _ort_runs(ort, graph, threads, feed):
    """(run without spinning threads, run with them): one session of graph each."""
    sessions = [_ort_session(ort, graph, threads, spinning) for spinning in (False, True)]
    return tuple(lambda sess=sess: sess.run(None, feed) for sess in sessions)


def _io(name, shape):
    from onnx import TensorProto, helper
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def ort_conv(ort, name, batch, threads):
    from onnx import helper, numpy_helper
    x, w, b, gy, padding = conv_case(name, batch)
    k = w.shape[2]
    p = k // 2 if padding == "same" else 0
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], kernel_shape=[k, k],
                            pads=[p, p, p, p], strides=[1, 1])
    graph = helper.make_graph([node], name, [_io("X", x.shape)], [_io("Y", gy.shape)],
                              initializer=[numpy_helper.from_array(w, "W"),
                                           numpy_helper.from_array(b, "B")])
    return _ort_runs(ort, graph, threads, {"X": x})


def ort_pool(ort, name, batch, threads):
    from onnx import helper
    kind, pool, x, gy = pool_case(name, batch)
    op = "MaxPool" if kind == "max" else "AveragePool"
    node = helper.make_node(op, ["X"], ["Y"], kernel_shape=[pool, pool],
                            strides=[pool, pool])
    graph = helper.make_graph([node], name, [_io("X", x.shape)], [_io("Y", gy.shape)])
    return _ort_runs(ort, graph, threads, {"X": x})


def ort_net(ort, net, fc_model, batch, threads, spinning=False):
    """The inference graph of a fastconv network (NCHW, its weights, dropout omitted)."""
    from onnx import helper, numpy_helper
    nodes, inits = [], []
    cur, shape = "X", (batch,) + ((1, 32, 32) if net == "lenet5" else (3, 32, 32))
    in_shape = shape
    flat = None
    count = [0]

    def name(prefix):
        count[0] += 1
        return f"{prefix}{count[0]}"

    def add(op, inputs, **attrs):
        out = name(op.lower())
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out
    for layer in fc_model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kernel, bias = layer.get_weights()
            k = kernel.shape[0]
            wname, bname = name("W"), name("B")
            inits += [numpy_helper.from_array(
                np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), wname),
                numpy_helper.from_array(bias, bname)]
            p = k // 2 if layer.padding == "same" else 0
            cur = add("Conv", [cur, wname, bname], kernel_shape=[k, k], pads=[p] * 4)
            shape = (batch, kernel.shape[3], shape[2] + 2 * p - k + 1,
                     shape[3] + 2 * p - k + 1)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            op = "MaxPool" if kind == "MaxPooling2D" else "AveragePool"
            cur = add(op, [cur], kernel_shape=[2, 2], strides=[2, 2])
            shape = (batch, shape[1], shape[2] // 2, shape[3] // 2)
        elif kind == "Flatten":
            cur = add("Flatten", [cur], axis=1)
            flat = shape
            shape = (batch, int(np.prod(shape[1:])))
        elif kind == "Dense":
            kernel, bias = layer.get_weights()
            if flat is not None:
                # fastconv flattens (H, W, C); the NCHW graph flattens (C, H, W)
                _, c, h, w = flat
                kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(
                    c * h * w, -1)
                flat = None
            wname, bname = name("W"), name("B")
            inits += [numpy_helper.from_array(np.ascontiguousarray(kernel), wname),
                      numpy_helper.from_array(bias, bname)]
            cur = add("Gemm", [cur, wname, bname])
            shape = (batch, kernel.shape[1])
        elif kind == "Dropout":
            continue
        else:
            raise ValueError(f"layer type {kind!r} has no ONNX translation here")
        act = getattr(layer, "activation", None)
        if act in ("tanh", "relu", "softmax"):
            op = {"tanh": "Tanh", "relu": "Relu", "softmax": "Softmax"}[act]
            cur = add(op, [cur])
    nodes[-1].output[0] = "Y"
    graph = helper.make_graph(nodes, net, [_io("X", in_shape)], [_io("Y", shape)],
                              initializer=inits)
    return _ort_session(ort, graph, threads, spinning)


# ----------------------------------------------------------------------------- main
# The settle before each timed call when fastconv is interleaved with ONNX Runtime's
# spinning session: its threads keep spinning after a call returns, for longer than the
# usual 10 ms (see the module docstring).
SPIN_SETTLE_SECONDS = 0.1


def _ort_fastest(t, fc_fns, run_spinning, repeat, min_time, warmup=1):
    """t["onnxruntime"] (its session without spinning threads, timed interleaved with
    fastconv) becomes the faster of that and its default spinning session, timed
    interleaved with fastconv (fc_fns) again; fastconv's second times are kept under
    their names + SECOND, and its ratio to ONNX Runtime takes the faster of its two
    (frontier.fc_best): each system's best of two pairings, so that a burst of load in
    one pairing slows both systems, not one.  (Before, the spinning session was timed
    alone and fastconv was compared loaded against an unloaded ONNX Runtime.)"""
    again = interleaved({**fc_fns, "onnxruntime": run_spinning}, repeat, min_time,
                        warmup=warmup, settle_seconds=SPIN_SETTLE_SECONDS)
    t["onnxruntime (no spinning)"] = t["onnxruntime"]
    t["onnxruntime (spinning)"] = again["onnxruntime"]
    t["onnxruntime"] = min(t["onnxruntime"], again["onnxruntime"])
    for k in fc_fns:
        t[k + SECOND] = again[k]
    return t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", required=True,
                   choices=["tensorflow", "onnxruntime"])
    p.add_argument("--layers", nargs="*", default=list(CONV_LAYERS))
    p.add_argument("--pools", nargs="*", default=list(POOL_LAYERS))
    p.add_argument("--nets", nargs="*", default=["lenet5", "cifar10_cnn"])
    p.add_argument("--batches", nargs="+", type=int, default=[128, 32])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=fastconv.get_num_threads())
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    fastconv.set_num_threads(args.threads)
    versions = {"python": sys.version.split()[0], "fastconv": fastconv.__version__}
    tf = keras = ort = None
    if "tensorflow" in args.systems:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        import keras
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        versions.update(tensorflow=tf.__version__, keras=keras.__version__)
    if "onnxruntime" in args.systems:
        import onnx
        import onnxruntime as ort
        versions.update(onnxruntime=ort.__version__, onnx=onnx.__version__)
    out = {"versions": versions, "threads": args.threads, "layers": [], "nets": [],
           "checks": []}

    def group(section, item, batch, fc_fns, tf_fns, ort_fwd):
        for i, pass_name in enumerate(PASSES):
            fns = {k: v[i] for k, v in fc_fns.items()}
            fc_fns_i = dict(fns)
            if tf_fns is not None:
                fns["tensorflow"] = tf_fns[i]
            if ort_fwd is not None and i == 0:
                fns["onnxruntime"] = ort_fwd[0]
            if len(fns) == len(fc_fns):
                continue
            t = interleaved(fns, args.repeat, args.min_time)
            if "onnxruntime" in fns:
                t = _ort_fastest(t, fc_fns_i, ort_fwd[1], args.repeat, args.min_time)
            out["layers"].append({"section": section, "item": item, "pass": pass_name,
                                  "batch": batch, "times": t})
            print(f"peer {section} {item} {pass_name} b{batch}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in t.items()), file=sys.stderr,
                  flush=True)

    for batch in args.batches:
        for name in args.layers:
            fc = {k: _fastconv_conv(name, batch, f) for k, f in LAYOUTS.items()}
            group("conv", name, batch, fc, tf_conv(tf, name, batch) if tf else None,
                  ort_conv(ort, name, batch, args.threads) if ort else None)
        for name in args.pools:
            fc = {k: fastconv_pool(name, batch, f) for k, f in LAYOUTS.items()}
            group("pool", name, batch, fc, tf_pool(tf, name, batch) if tf else None,
                  ort_pool(ort, name, batch, args.threads) if ort else None)

    import bench_models
    for net in args.nets:
        for batch in args.batches:
            fc_train, fc_infer = bench_models.fastconv_steps(net, batch)
            fns = {"train": {"fastconv": fc_train}, "infer": {"fastconv": fc_infer}}
            fc_model = bench_models.fastconv_model(net)
            x, labels = bench_models.make_data(net, batch)
            y = np.eye(10, dtype=np.float32)[labels]
            ref_pred = fc_model.predict_on_batch(x)
            if tf is not None:
                km = keras_net(keras, net, fc_model)
                diff = float(np.max(np.abs(np.asarray(km.predict_on_batch(x)) - ref_pred)))
                out["checks"].append({"system": "tensorflow", "net": net, "batch": batch,
                                      "max_abs_diff_vs_fastconv": diff})
                fns["train"]["tensorflow"] = lambda km=km: km.train_on_batch(x, y)
                fns["infer"]["tensorflow"] = lambda km=km: km.predict_on_batch(x)
            if ort is not None:
                sess = ort_net(ort, net, fc_model, batch, args.threads)
                spinning = ort_net(ort, net, fc_model, batch, args.threads, True)
                feed = {"X": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
                diff = float(max(np.max(np.abs(s.run(None, feed)[0] - ref_pred))
                                 for s in (sess, spinning)))
                out["checks"].append({"system": "onnxruntime", "net": net, "batch": batch,
                                      "max_abs_diff_vs_fastconv": diff})
                fns["infer"]["onnxruntime"] = lambda s=sess, f=feed: s.run(None, f)
                ort_spinning = lambda s=spinning, f=feed: s.run(None, f)  # noqa: E731
            for mode in ("train", "infer"):
                if len(fns[mode]) == 1:
                    continue
                t = interleaved(fns[mode], args.rounds, warmup=3)
                if "onnxruntime" in fns[mode]:
                    t = _ort_fastest(t, {"fastconv": fns[mode]["fastconv"]},
                                     ort_spinning, args.rounds, 0.0, warmup=3)
                out["nets"].append({"item": net, "mode": mode, "batch": batch,
                                    "times": t})
                print(f"peer {net} {mode} b{batch}: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in t.items()), file=sys.stderr,
                      flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
