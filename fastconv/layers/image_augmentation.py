"""Random image augmentation layers (Keras 3's arguments and defaults).

They transform only when called with ``training=True`` (a training step);
``predict``, ``evaluate`` and ``layer(x)`` leave images unchanged, except
``RandomCrop``, whose output always has the target size (in inference it crops the
centre to the target's aspect ratio and resizes, as Keras):

- ``RandomFlip(mode="horizontal_and_vertical")``
- ``RandomTranslation(height_factor, width_factor, fill_mode="reflect", ...)``
- ``RandomZoom(height_factor, width_factor=None, fill_mode="reflect", ...)``
- ``RandomRotation(factor, fill_mode="reflect", ...)``
- ``RandomCrop(height, width)``

Each draws from its own generator (``layer.generator``, seeded by ``seed`` or from
fastconv's global generator, like Dropout), which model files save and restore.  The
drawn parameters of a call are ``layer.get_random_transformation(shape)``, and
``layer.transform_images(images, transformation)`` applies given parameters (as
Keras's methods of the same names), so a transform is reproducible and testable.

Geometric transforms resample the image through
:func:`fastconv.layers._resample.affine_transform` (Keras's
``keras.ops.image.affine_transform``; ``fill_mode`` and ``interpolation`` are
described there).

Backward: these layers have no parameters.  Every transform here is linear in the
image, so ``backward`` returns its adjoint applied to the gradient (flips and crops:
the inverse permutation / zero padding; resampling: each input pixel collects the
gradient of the outputs that read it, with their interpolation weights).  A model
never runs it for layers before its first trainable layer.
"""
import numpy as np

from .. import _random
from .._validation import as_array
from ._resample import (FILL_MODES, INTERPOLATIONS, _affine, _affine_backward,
                        _check_transform, _from_last, _gather, _resize_plan, _scatter,
                        _to_last)
from .base import Layer
from .common import (check_choice, check_factor, check_layer_data_format,
                     check_positive_int, check_seed, config_value, is_number)

__all__ = ["RandomFlip", "RandomTranslation", "RandomZoom", "RandomRotation",
           "RandomCrop"]


class _RandomImageLayer(Layer):
    """Base of the random image layers: a seeded generator, data_format, identity in
    inference, the transform of the last training call kept for backward."""
    _ndim = 4
    _cache_attrs = ("_x", "_transformation")

    def __init__(self, seed=None, data_format=None, **kwargs):
        seed = check_seed(seed)
        data_format = check_layer_data_format(data_format)
        super().__init__(**kwargs)
        self.seed = seed
        self.data_format = data_format
        self.generator = _random.make_generator(seed)

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self.data_format == "channels_last"
                else "(batch, channels, height, width)")

    def _hw(self, shape):
        return (shape[1], shape[2]) if self.data_format == "channels_last" \
            else (shape[2], shape[3])

    def _check_images(self, images):
        x = as_array(images, "images")
        self._check_rank(x.shape, "images")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _linear_forward(self, x, training):
        self._x = x
        if not training:
            self._transformation = None
            return x
        t = self.get_random_transformation(x.shape)
        self._transformation = t
        return self._transform(x, t)

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        if self._transformation is None:
            return grad
        return self._transform_backward(grad, self._transformation)

    def transform_images(self, images, transformation):
        """Apply the given parameters (``get_random_transformation``'s output) to a
        batch of images."""
        return self._transform(self._check_images(images), transformation)

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed, data_format=self.data_format)
        return config


class RandomFlip(_RandomImageLayer):
    """Flip each image with probability 1/2 (Keras: a uniform draw <= 0.5):
    ``"horizontal"`` left-right, ``"vertical"`` top-bottom, or
    ``"horizontal_and_vertical"`` both at once (one draw per image, as Keras 3)."""
    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None,
                 **kwargs):
        check_choice(mode, self.MODES, "mode")
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.mode = mode

    def get_random_transformation(self, shape):
        """{"flips": bool array (N,)}, drawn from the layer's generator."""
        return {"flips": self.generator.random(shape[0]) <= 0.5}

    def _axes_to_flip(self):
        h, w = (1, 2) if self.data_format == "channels_last" else (2, 3)
        return {"horizontal": (w,), "vertical": (h,),
                "horizontal_and_vertical": (h, w)}[self.mode]

    def _transform(self, x, t):
        flips = np.asarray(t["flips"], dtype=bool).reshape(-1)
        if flips.shape != (x.shape[0],):
            raise ValueError(f"flips must have one entry per image ({x.shape[0]}), got "
                             f"shape {np.shape(t['flips'])}")
        out = x.copy()
        if flips.any():
            out[flips] = np.flip(x[flips], axis=self._axes_to_flip())
        return out

    _transform_backward = _transform  # a flip is its own inverse

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


class _AffineLayer(_RandomImageLayer):
    """Random layers that resample through a projective matrix per image."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        check_choice(fill_mode, FILL_MODES, "fill_mode")
        check_choice(interpolation, INTERPOLATIONS, "interpolation")
        if not is_number(fill_value) or not np.isfinite(fill_value):
            raise ValueError(f"fill_value must be a finite number, got {fill_value!r}")
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)

    def _transform(self, x, t):
        matrix = _check_transform(self.transform_matrix(t, x.shape), x.shape[0])
        out, _ = _affine(x, matrix, self.interpolation, self.fill_mode,
                         self.fill_value, self.data_format)
        return out

    def _transform_backward(self, grad, t):
        matrix = _check_transform(self.transform_matrix(t, grad.shape), grad.shape[0])
        return _affine_backward(grad, matrix, self.interpolation, self.fill_mode,
                                self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(fill_mode=self.fill_mode, interpolation=self.interpolation,
                      fill_value=self.fill_value)
        return config


class RandomTranslation(_AffineLayer):
    """Shift each image by a random fraction of its size: vertically by
    U(height_factor range) * height (positive: down), horizontally by
    U(width_factor range) * width (positive: right).  A factor f means [-|f|, |f|];
    a pair (lower, upper) the range itself; all values in [-1, 1]."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        self.height_lower, self.height_upper = check_factor(
            height_factor, "height_factor", -1.0, 1.0)
        self.width_lower, self.width_upper = check_factor(
            width_factor, "width_factor", -1.0, 1.0)
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor

    def get_random_transformation(self, shape):
        """{"translations": (N, 2) [dx, dy] in pixels}: dy drawn first, as Keras."""
        n = shape[0]
        h, w = self._hw(shape)
        dy = self.generator.uniform(self.height_lower, self.height_upper, n) * h
        dx = self.generator.uniform(self.width_lower, self.width_upper, n) * w
        return {"translations": np.stack([dx, dy], axis=1)}

    @staticmethod
    def transform_matrix(t, shape):
        tr = np.asarray(t["translations"], dtype=np.float64).reshape(-1, 2)
        n = len(tr)
        one, zero = np.ones(n), np.zeros(n)
        return np.stack([one, zero, -tr[:, 0], zero, one, -tr[:, 1], zero, zero], 1)

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=config_value(self.height_factor),
                      width_factor=config_value(self.width_factor))
        return config


class RandomZoom(_AffineLayer):
    """Zoom each image about its centre: the output at offset d from the centre reads
    the input at d * z, z = 1 + U(factor range) (a positive factor zooms out, a
    negative one in); ``width_factor=None`` uses the height's z for both axes.
    Factors in (-1, 1]."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        self.height_lower, self.height_upper = check_factor(
            height_factor, "height_factor", -1.0, 1.0, low_open=True)
        if width_factor is not None:
            self.width_lower, self.width_upper = check_factor(
                width_factor, "width_factor", -1.0, 1.0, low_open=True)
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor

    def get_random_transformation(self, shape):
        """{"height_zoom": (N, 1), "width_zoom": (N, 1)} (height drawn first)."""
        n = shape[0]
        hz = self.generator.uniform(1 + self.height_lower, 1 + self.height_upper,
                                    (n, 1))
        if self.width_factor is None:
            wz = hz.copy()
        else:
            wz = self.generator.uniform(1 + self.width_lower, 1 + self.width_upper,
                                        (n, 1))
        return {"height_zoom": hz, "width_zoom": wz}

    def transform_matrix(self, t, shape):
        h, w = self._hw(shape)
        zx = np.asarray(t["width_zoom"], dtype=np.float64).reshape(-1)
        zy = np.asarray(t["height_zoom"], dtype=np.float64).reshape(-1)
        zero = np.zeros(len(zx))
        return np.stack([zx, zero, (w - 1) / 2 * (1 - zx), zero, zy,
                         (h - 1) / 2 * (1 - zy), zero, zero], 1)

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=config_value(self.height_factor),
                      width_factor=config_value(self.width_factor))
        return config


class RandomRotation(_AffineLayer):
    """Rotate each image about its centre by U(factor range) * 360 degrees (positive:
    counter-clockwise on screen, as Keras).  A factor f means [-|f|, |f|]; a pair
    (lower, upper) the range itself; values in [-1, 1]."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear",
                 seed=None, fill_value=0.0, data_format=None, **kwargs):
        self.lower, self.upper = check_factor(factor, "factor", -1.0, 1.0)
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.factor = factor

    def get_random_transformation(self, shape):
        """{"angle": (N,) degrees}."""
        return {"angle": self.generator.uniform(self.lower * 360.0,
                                                self.upper * 360.0, shape[0])}

    def transform_matrix(self, t, shape):
        """Keras's _compute_affine_matrix for a rotation about ((W-1)/2, (H-1)/2)."""
        h, w = self._hw(shape)
        theta = np.deg2rad(np.asarray(t["angle"], dtype=np.float64).reshape(-1))
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        cos, sin = np.cos(theta), np.sin(theta)
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = cx - cx * a0 - cy * a1
        b2 = cy - cx * b0 - cy * b1
        zero = np.zeros(len(theta))
        return np.stack([a0, a1, a2, b0, b1, b2, zero, zero], 1)

    def get_config(self):
        config = super().get_config()
        config["factor"] = config_value(self.factor)
        return config


class RandomCrop(_RandomImageLayer):
    """Crop the batch to ``height`` x ``width``, as Keras 3: in training, when the
    input is larger on both axes, one random window for the whole batch; otherwise
    (inference, or an input not larger on both axes) the centre crop with the target's
    aspect ratio, resized (bilinear, half-pixel centres) when its size differs.

    That second case follows Keras 2 (``smart_resize``), not Keras 3.15, which returns
    the input unchanged in inference (a shape its compute_output_shape does not
    give) and, in training with a small input, resizes a target-sized window clipped
    at the image's edge."""

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        height = check_positive_int(height, "height")
        width = check_positive_int(width, "width")
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height, self.width = height, width

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        self._check_rank(shape, "input shape")
        h, w = (1, 2) if self.data_format == "channels_last" else (2, 3)
        shape[h], shape[w] = self.height, self.width
        return tuple(shape)

    def _linear_forward(self, x, training):
        self._x = x
        t = self.get_random_transformation(x.shape, training)
        self._transformation = t
        return self._transform(x, t)

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        return self._transform_backward(grad, self._transformation)

    def get_random_transformation(self, shape, training=True):
        """{"h_start", "w_start", "crop_height", "crop_width"}: the window of the
        input that becomes the output (resized when not height x width)."""
        ih, iw = self._hw(shape)
        if training and ih > self.height and iw > self.width:
            hs = int(self.generator.integers(0, ih - self.height + 1))
            ws = int(self.generator.integers(0, iw - self.width + 1))
            return {"h_start": hs, "w_start": ws, "crop_height": self.height,
                    "crop_width": self.width}
        ch = max(min(ih, int(float(iw * self.height) / self.width)), 1)
        cw = max(min(iw, int(float(ih * self.width) / self.height)), 1)
        return {"h_start": int(float(ih - ch) / 2), "w_start": int(float(iw - cw) / 2),
                "crop_height": ch, "crop_width": cw}

    def _window(self, shape, t):
        ih, iw = self._hw(shape)
        hs, ws = int(t["h_start"]), int(t["w_start"])
        ch, cw = int(t["crop_height"]), int(t["crop_width"])
        if not (0 <= hs and hs + ch <= ih and 0 <= ws and ws + cw <= iw
                and ch > 0 and cw > 0):
            raise ValueError(f"crop window {t} does not fit in images of size "
                             f"{ih}x{iw}")
        return hs, ws, ch, cw

    def _transform(self, x, t):
        hs, ws, ch, cw = self._window(x.shape, t)
        xl = _to_last(x, self.data_format)
        crop = xl[:, hs:hs + ch, ws:ws + cw, :]
        if (ch, cw) == (self.height, self.width):
            out = np.ascontiguousarray(crop)
        else:
            plan = _resize_plan(x.shape[0], (ch, cw), (self.height, self.width))
            out = _gather(np.ascontiguousarray(crop), plan, 0.0,
                          (self.height, self.width))
        return _from_last(out, self.data_format)

    def _transform_backward(self, grad, t):
        x_shape = self._x.shape
        hs, ws, ch, cw = self._window(x_shape, t)
        gl = _to_last(grad, self.data_format)
        n, c = gl.shape[0], gl.shape[-1]
        if (ch, cw) != (self.height, self.width):
            plan = _resize_plan(n, (ch, cw), (self.height, self.width))
            gl = _scatter(gl, plan, (n, ch, cw, c))
        ih, iw = self._hw(x_shape)
        out = np.zeros((n, ih, iw, c), dtype=grad.dtype)
        out[:, hs:hs + ch, ws:ws + cw, :] = gl
        return _from_last(out, self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width)
        return config
