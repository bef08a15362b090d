"""``fastconv convert`` and ``fastconv predict``, and the model loading every command
shares (``load_any``): fastconv's ``.npz``, Keras's ``.keras`` / ``.h5``, ONNX, and
weights-only files (``.weights.h5``, ``.safetensors``) on a named architecture.

    fastconv convert IN OUT [--model ARCH] [--data-format F]
    fastconv predict MODEL IMAGE... [--labels NAMES] [--resize] [--top K]

Formats are chosen by suffix.  A weights-only input needs ``--model``: lenet5, cifar10
or a model file whose architecture the weights fill.  ONNX inputs become channels_last
models unless ``--data-format channels_first`` (fastconv/onnx).  predict reads PNG and
JPEG files through Pillow, converted to the model's channels (grayscale or RGB) and
scaled to [0, 1] as ``fastconv train`` scales its data; an image of another size is
refused unless ``--resize`` (bilinear) is given, except a 28x28 image for a 32x32
model, which is padded as fastconv's LeNet-5 recipe pads Fashion-MNIST.
"""
import os
import warnings

import numpy as np

from ._cli_io import CommandError, check_output_target

__all__ = ["load_any", "add_parsers", "cmd_convert", "cmd_predict", "COMMANDS"]

MODEL_SUFFIXES = (".npz", ".keras", ".h5", ".hdf5", ".onnx")
WEIGHTS_SUFFIXES = (".weights.h5", ".safetensors")
ARCHITECTURES = ("lenet5", "cifar10")


def _kind(path):
    name = path.lower()
    if name.endswith(WEIGHTS_SUFFIXES):
        return "weights"
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith(MODEL_SUFFIXES):
        return "model"
    return None


def _architecture(spec, data_format):
    from . import applications
    if spec == "lenet5":
        return applications.lenet5()
    if spec == "cifar10":
        return applications.cifar10_cnn()
    if _kind(spec) in ("model", "onnx"):
        return load_any(spec, data_format=data_format)
    raise CommandError(f"--model {spec}: give lenet5, cifar10 or a model file "
                       f"({', '.join(MODEL_SUFFIXES)}) whose architecture the weights "
                       f"fill")


def load_any(path, data_format=None, model=None):
    """The model in ``path`` (any format fastconv reads); a weights-only file is
    loaded into the architecture ``model`` names (``--model``)."""
    if os.path.isdir(path):
        raise CommandError(f"{path} is a folder, not a model file")
    if not os.path.exists(path):
        raise CommandError(f"model file {path!r} does not exist")
    kind = _kind(path)
    if kind is None:
        raise CommandError(f"{path}: unknown model format; fastconv reads "
                           f"{', '.join(MODEL_SUFFIXES + WEIGHTS_SUFFIXES)}")
    if kind == "weights" or (model is not None and path.lower().endswith(".h5")):
        if model is None:
            raise CommandError(f"{path} holds weights only: give the architecture with "
                               f"--model ({', '.join(ARCHITECTURES)} or a model file)")
        arch = _architecture(model, data_format)
        arch.load_weights(path)
        return arch
    if kind == "onnx":
        from . import onnx
        return onnx.load(path, data_format=data_format or "channels_last")
    from . import models
    return models.load_model(path)


def _write(model, path):
    kind = _kind(path)
    if kind == "weights":
        model.save_weights(path)
    elif kind == "onnx":
        from . import onnx
        onnx.export(model, path)
    elif kind == "model":
        model.save(path)
    else:
        raise CommandError(f"{path}: unknown output format; fastconv writes "
                           f"{', '.join(MODEL_SUFFIXES + WEIGHTS_SUFFIXES)}")


def cmd_convert(args):
    src, dst = args.input, args.output
    if os.path.abspath(src) == os.path.abspath(dst):
        raise CommandError(f"the output {dst} is the input file")
    if _kind(dst) is None:
        raise CommandError(f"{dst}: unknown output format; fastconv writes "
                           f"{', '.join(MODEL_SUFFIXES + WEIGHTS_SUFFIXES)}")
    check_output_target("output", dst)
    model = load_any(src, data_format=args.data_format, model=args.model)
    _write(model, dst)
    print(f"wrote {dst} ({len(model.layers)} layers, {model.count_params():,} "
          f"parameters) from {src}")
    return 0


# --------------------------------------------------------------------------- predict
def _image_layout(model, path):
    """((height, width, channels), channels_first?) of the model's image input."""
    shape = getattr(model, "input_shape", None)
    if shape is None or len(shape) != 4:
        raise CommandError(f"model {path} takes inputs of shape {shape}; fastconv "
                           f"predict feeds images (batch, height, width, channels)")
    first = next((getattr(la, "data_format", None) for la in model.layers
                  if getattr(la, "data_format", None)), "channels_last")
    if first == "channels_first":
        c, h, w = shape[1:]
        return (h, w, c), True
    return tuple(shape[1:]), False


def _read_image(path, size, resize):
    try:
        from PIL import Image
    except ImportError:
        raise CommandError("fastconv predict reads images with Pillow: pip install "
                           "'fastconv[images]'") from None
    h, w, c = size
    if c not in (1, 3):
        raise CommandError(f"the model takes {c}-channel images; fastconv predict "
                           f"feeds grayscale (1) or RGB (3)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format not in ("PNG", "JPEG"):
                    raise CommandError(f"{path}: a {img.format} image; fastconv predict "
                                       f"reads PNG and JPEG files")
                img = img.convert("L" if c == 1 else "RGB")
                if img.size != (w, h) and resize:
                    img = img.resize((w, h), Image.BILINEAR)
                pixels = np.asarray(img, dtype=np.uint8)
    except CommandError:
        raise
    except FileNotFoundError:
        raise CommandError(f"image {path!r} does not exist") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise CommandError(f"{path}: not a readable PNG/JPEG image "
                           f"({type(exc).__name__}: {exc})") from None
    pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], c)
    if pixels.shape[:2] == (28, 28) and (h, w) == (32, 32):
        pixels = np.pad(pixels, ((2, 2), (2, 2), (0, 0)))
    if pixels.shape[:2] != (h, w):
        raise CommandError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels, the "
                           f"model takes {w}x{h} (give --resize to resize it)")
    return pixels


def _probabilities(model, scores):
    last = model.layers[-1] if model.layers else None
    if getattr(last, "activation", None) in ("softmax", "sigmoid"):
        return scores
    z = scores - scores.max(axis=-1, keepdims=True)  # logits: softmax here
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cmd_predict(args):
    from . import datasets
    model = load_any(args.model_file, data_format=args.data_format)
    size, channels_first = _image_layout(model, args.model_file)
    out_shape = getattr(model, "output_shape", None)
    if out_shape is None or len(out_shape) != 2:
        raise CommandError(f"model {args.model_file} outputs shape {out_shape}; fastconv "
                           f"predict needs one score per class, (None, K)")
    k = int(out_shape[-1])
    names = None
    if args.labels:
        names = [n.strip() for n in args.labels.split(",")]
        if len(names) != k:
            raise CommandError(f"--labels names {len(names)} classes, the model scores "
                               f"{k}")
    pixels = np.stack([_read_image(p, size, args.resize) for p in args.images])
    x = datasets.scale_images(pixels, dtype=np.dtype(model.dtype))
    if channels_first:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    probs = _probabilities(model, np.asarray(model.predict(x, verbose=0),
                                             dtype=np.float64))
    top = min(args.top, k)
    for path, p in zip(args.images, probs):
        order = np.argsort(-p, kind="stable")[:top]
        parts = [f"class {i}{f' {names[i]!r}' if names else ''} (p={p[i]:.4f})"
                 for i in order]
        print(f"{path}: {', '.join(parts)}")
    return 0


# --------------------------------------------------------------------------- parsers
def add_parsers(sub, positive_int):
    """Register ``convert`` and ``predict`` on the subparsers ``sub``."""
    formats = ", ".join(MODEL_SUFFIXES + WEIGHTS_SUFFIXES)
    c = sub.add_parser("convert", help="convert a model between file formats",
                       description=f"Convert a model file by suffix ({formats}). "
                       f"Weights-only files need --model. Keras files need h5py "
                       f"('fastconv[keras]'), ONNX files onnx ('fastconv[onnx]'), "
                       f"safetensors files safetensors ('fastconv[safetensors]').")
    c.add_argument("input", metavar="IN")
    c.add_argument("output", metavar="OUT")
    c.add_argument("--model", metavar="ARCH",
                   help="for a weights-only IN: lenet5, cifar10 or a model file giving "
                   "the architecture (default: none)")
    c.add_argument("--data-format", choices=("channels_last", "channels_first"),
                   help="the layout of a model made from an ONNX file (default: "
                   "channels_last)")
    p = sub.add_parser("predict", help="classify PNG/JPEG images with a saved model",
                       description="Print the most likely classes of each image and "
                       "their probabilities (a softmax of the outputs when the model "
                       "does not end in softmax or sigmoid). Needs Pillow "
                       "('fastconv[images]').")
    p.add_argument("model_file", metavar="MODEL")
    p.add_argument("images", metavar="IMAGE", nargs="+")
    p.add_argument("--labels", metavar="NAMES",
                   help="comma-separated class names (default: class numbers)")
    p.add_argument("--resize", action="store_true",
                   help="resize images to the model's input size (bilinear; default: "
                   "refuse other sizes, but pad 28x28 to 32x32)")
    p.add_argument("--top", type=positive_int, default=1, metavar="K",
                   help="print the K most likely classes (default: 1)")
    p.add_argument("--data-format", choices=("channels_last", "channels_first"),
                   help="the layout of a model made from an ONNX file (default: "
                   "channels_last)")


COMMANDS = {"convert": cmd_convert, "predict": cmd_predict}
