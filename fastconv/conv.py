"""2-D cross-correlation ("conv2d" of deep learning) and its gradients on ndarrays.

The compiled kernels (src/_conv2d.pyx over src/conv_kernels*.h) compute the convolution
as an implicit matrix product: im2col writes each strip of output pixels straight into
the packed panel a register-blocked micro-kernel reads (AVX-512, AVX2+FMA or portable C,
chosen at run time), and the bias is added as the tile is written.  Only OpenMP threads
run (no BLAS), over work items that do not depend on the thread count, so results are
identical for any number of threads.

channels_last with one group (the layers' default) mostly runs the "pixel-row" kernels
instead: tiles of output pixels x output channels that read every window in place (the
(kj, c) part of a window row is contiguous in that layout), and a "narrow" kernel
vectorised along the input channels when there are too few output channels to fill a
tile.  See _pixel_rows_ok / _narrow_ok for when, docs/performance.md for the figures.

- forward: parallel over strips of output pixels (flattened over the batch);
- grad input: stride 1 runs the forward kernel on grad_y with the kernel flipped and
  channels swapped (a gather); other strides scatter W^T grad_y back, one image per item;
- grad weight and bias: one partial sum per fixed group of images, added in order.

Layouts: ``channels_first`` takes x (N, C, H, W) and weight (C_out, C_in/groups, kh, kw)
as PyTorch does; ``channels_last`` takes x (N, H, W, C) and weight
(kh, kw, C_in/groups, C_out) as Keras does.  Results come back in the layout and dtype
the arguments came in (see fastconv/_validation.py for the dtype policy).
"""
from dataclasses import dataclass

import numpy as np

from . import _arena, _blas, _ext
from . import activations as _activations
from ._validation import (_FLOATS, as_array, check_data_format, check_int, check_ndim,
                          common_float_dtype)
from .shapes import (conv_output_shape, memoised, normalize_pair, normalize_padding,
                     resolve_padding)

__all__ = ["conv2d", "conv2d_backward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "conv2d_output_shape"]

# Upper bound on the bytes of grad_y one partial weight gradient covers: the batch is
# split into groups of whole images (at most _MAX_WEIGHT_PARTIALS of them), each group
# gives one partial sum computed by one thread, and the partials are added in a fixed
# order, so the result does not depend on the thread count.
_CHUNK_BYTES = 4 << 20
_MAX_WEIGHT_PARTIALS = 16
_MIN_PARTIAL_PIXELS = 64
# Output pixels per packed block in the weight gradient (the reduction dimension):
# the grad_y and im2col panels of one block stay in the L2 cache.
_WEIGHT_BLOCK_PIXELS = 256


@dataclass(frozen=True)
class _Geometry:
    """Everything the kernels need to know about one convolution, checked once."""
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    groups: int
    kh: int
    kw: int
    sy: int
    sx: int
    dy: int
    dx: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    oh: int
    ow: int
    channels_last: bool

    @property
    def x_shape(self):
        if self.channels_last:
            return (self.n, self.h, self.w, self.c_in)
        return (self.n, self.c_in, self.h, self.w)

    @property
    def y_shape(self):
        if self.channels_last:
            return (self.n, self.oh, self.ow, self.c_out)
        return (self.n, self.c_out, self.oh, self.ow)

    @property
    def weight_shape(self):
        cg = self.c_in // self.groups
        if self.channels_last:
            return (self.kh, self.kw, cg, self.c_out)
        return (self.c_out, cg, self.kh, self.kw)

    @property
    def k_group(self):
        return (self.c_in // self.groups) * self.kh * self.kw


def _check_geometry(x_shape, weight_shape, stride, padding, dilation, groups,
                    data_format):
    check_data_format(data_format)
    last = data_format == "channels_last"
    groups = check_int(groups, "groups")
    stride = normalize_pair(stride, "stride")
    dilation = normalize_pair(dilation, "dilation")
    padding = normalize_padding(padding)
    if last:
        n, h, w, c_in = x_shape
        kh, kw, cg, c_out = weight_shape
        wdesc = "(kh, kw, C_in/groups, C_out) for channels_last"
    else:
        n, c_in, h, w = x_shape
        c_out, cg, kh, kw = weight_shape
        wdesc = "(C_out, C_in/groups, kh, kw) for channels_first"
    if c_in % groups:
        raise ValueError(f"x has {c_in} input channels, which groups={groups} does not "
                         f"divide (x shape {tuple(x_shape)}, {data_format})")
    if cg != c_in // groups:
        raise ValueError(f"weight must have C_in/groups = {c_in}/{groups} = "
                         f"{c_in // groups} input channels in the layout {wdesc}, got "
                         f"weight shape {tuple(weight_shape)}")
    if c_out % groups:
        raise ValueError(f"weight has C_out = {c_out} output channels, which groups="
                         f"{groups} does not divide (weight shape {tuple(weight_shape)})")
    if kh < 1 or kw < 1:
        raise ValueError(f"weight must have a kernel of at least 1x1, got weight shape "
                         f"{tuple(weight_shape)} ({wdesc})")
    k_eff = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    (pt, pb), (pl, pr) = resolve_padding(padding, (h, w), k_eff, stride)
    oh, ow = conv_output_shape((h, w), (kh, kw), stride, ((pt, pb), (pl, pr)), dilation,
                               what="weight kernel")
    return _Geometry(n, c_in, h, w, c_out, groups, kh, kw, stride[0], stride[1],
                     dilation[0], dilation[1], pt, pb, pl, pr, oh, ow, last)


# Checked geometries by their arguments (a layer calls conv2d with the same ones every
# step; checking them again took ~40 us a call, as long as a small layer's kernels).
_geometry = memoised(_check_geometry)


def conv2d_output_shape(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                        data_format="channels_first"):
    """Shape of conv2d's output for these argument shapes (no arrays needed)."""
    return _geometry(tuple(x_shape), tuple(weight_shape), stride, padding, dilation,
                     groups, data_format).y_shape


def _inputs(arrays, ndims):
    """Validate ranks and dtypes of ``arrays`` (name -> value); return them prepared."""
    dtype = _ready_dtype(arrays, ndims)
    if dtype is not None:  # nothing to convert (a layer's every call)
        return dtype, arrays
    raw = {name: (None if v is None else as_array(v, name)) for name, v in arrays.items()}
    for name, arr in raw.items():
        if arr is not None and name in ndims:
            check_ndim(arr, name, ndims[name][0], ndims[name][1])
    dtype = common_float_dtype(raw)
    return dtype, {name: (None if arr is None else
                          np.ascontiguousarray(arr, dtype=dtype))
                   for name, arr in raw.items()}


def _ready_dtype(arrays, ndims):
    """The common dtype when every array is already a C-contiguous ndarray of one of
    float32/float64 and of its rank: what _inputs would return unchanged.  Else None."""
    dtype = None
    for name, arr in arrays.items():
        if arr is None:
            continue
        if type(arr) is not np.ndarray or not arr.flags.c_contiguous or (
                name in ndims and arr.ndim != ndims[name][0]):
            return None
        if dtype is None:
            dtype = arr.dtype
        elif arr.dtype != dtype:
            return None
    return dtype if dtype in _FLOATS else None


_X_DESC = {"channels_first": "a 4-D array (N, C, H, W) for channels_first",
           "channels_last": "a 4-D array (N, H, W, C) for channels_last"}


def _geom(g):
    """The geometry tuple the compiled kernels take (see src/_conv2d.pyx).  With 1x1
    images in and out both layouts are the same memory: the kernels then use the
    channels_last addressing, whose loops run over pixels instead of row segments."""
    one_pixel = g.h == g.w == g.oh == g.ow == 1
    return (g.n, g.c_in, g.h, g.w, g.c_out, g.oh, g.ow, g.groups, g.kh, g.kw, g.sy, g.sx,
            g.dy, g.dx, g.pad_top, g.pad_left, int(g.channels_last or one_pixel))


def _weight_oihw(g, weight):
    """The weight as (C_out, C_in/groups, kh, kw) whatever the layout."""
    return weight.transpose(3, 2, 0, 1) if g.channels_last else weight


def _pack_rows(mat, mr):
    """(G, rows, kc) -> the micro-kernel's A panels (G, ceil(rows/mr), kc, mr), zero-padded
    (flat).  mat may be any strided view (a transpose, a flipped kernel)."""
    groups, rows, kc = mat.shape
    out = np.empty(groups * -(-rows // mr) * kc * mr, mat.dtype)
    _ext.conv2d.pack_rows(mat, out, mr)
    return out


def _mr(dtype):
    return _ext.conv2d.micro_tile(dtype == np.float64)


def _shifted(g, nr):
    """Whether the stride-1 "shifted" kernels suit g: they compute Wp = ow + (kw-1)*dx
    columns per output row and keep ow, and work image by image in strips of nr
    columns, so they pay off unless rows or images are very small."""
    wp = g.ow + (g.kw - 1) * g.dx
    return g.sy == 1 and g.sx == 1 and wp <= 2 * g.ow and g.oh * wp >= nr


def _dense(g, dtype):
    """A window that covers the whole unpadded input (one output pixel, e.g. LeNet's
    C5) is a dense layer, (N, K) @ (K, C_out) with K = C*kh*kw: a 1x1 convolution, so
    the kernels work across the batch instead of per pixel.  In channels_last the batch
    becomes a few images of one row of N / chunks pixels (see _dense_chunks), which the
    pixel-row kernels take (measured, LeNet-5's C5 at batch 128: forward 0.40 -> 0.35
    ms, gradients 0.97 -> 0.87 ms); otherwise N images of one pixel.
    Returns that geometry, or None.  The reshapes are free in both layouts: x[n] and
    weight[co] flatten in the same (c, ki, kj) or (ki, kj, c) order."""
    if not _is_dense(g):
        return None
    k = g.c_in * g.kh * g.kw
    chunks = _dense_chunks(g.n, _pixel_tile(dtype)[0]) if g.channels_last else None
    if chunks is not None:
        rows = g.n // chunks
        d = _Geometry(chunks, k, 1, rows, g.c_out, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1,
                      rows, True)
        if _pixel_rows_ok(d, dtype):
            return d
    return _Geometry(g.n, k, 1, 1, g.c_out, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1,
                     g.channels_last)


def _dense_chunks(n, mr):
    """Images (at least 2, for the threads) of one row each that a batch of n dense
    rows is cut into for the pixel-row kernels: the count dividing n whose rows waste
    least when rounded up to mr-row tiles (ties: more images).  None when no count
    gives rows of at least mr pixels (odd or small batches)."""
    best, best_waste = None, None
    for chunks in range(2, min(n, 16) + 1):
        rows = n // chunks
        if n % chunks or rows < mr:
            continue
        waste = -(-rows // mr) * mr / rows
        if best is None or waste <= best_waste + 1e-12:
            best, best_waste = chunks, waste
    return best


def _is_dense(g):
    """One output pixel from a window covering the whole unpadded input (see _dense)."""
    return ((g.oh, g.ow, g.groups) == (1, 1, 1) and (g.kh, g.kw) == (g.h, g.w) and not any(
        (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)) and g.h * g.w != 1)


def _dense_blas(g):
    """Whether a dense convolution (see _dense) is small enough for the Dense layer's
    products (_blas._product, below _blas._SERIAL_BLAS_MACS: every dense layer of
    LeNet-5 and the CIFAR-10 network).  Measured, LeNet-5's C5 (batch 32 / 128): forward
    0.29 / 0.33 ms on the convolution kernels, 0.07 / 0.17 on one BLAS thread; all
    gradients 0.59 / 0.91 against 0.14 / 0.32 (see _blas._KERNEL_MIN_MACS for what
    _product gains over that).  Both keep the result the same for any thread count;
    larger products stay on the convolution kernels (parallel, and just as invariant)."""
    return _is_dense(g) and g.n * g.k_group * g.c_out < _blas._SERIAL_BLAS_MACS


def _dense_weight(g, weight):
    """The weight as the (K, C_out) matrix of the dense product, x.reshape(N, K) @ it."""
    if g.channels_last:
        return weight.reshape(g.k_group, g.c_out)
    return weight.reshape(g.c_out, g.k_group).T


# Winograd (src/conv_driver.h, "Winograd"): channels_last, 3x3, stride 1, dilation 1,
# one group, float32 (float64 stays on the direct kernels, exact to 1e-10), with enough
# channels on both sides for its products (see _winograd_ok).  F(4x4, 3x3): 4x fewer
# multiply-adds than the direct kernels (F(2x2, 3x3), now only where forced: 2.25x;
# relative errors about 3e-6 and 2e-7 against the float64 reference).  Measured, batch
# 128, ms, forward / input gradient / weight gradient, F(2x2) -> F(4x4): CIFAR-10's c2
# 5.7 / 7.0 / 6.0 -> 3.9 / 4.0 / 4.2, c3 2.7 / 2.8 / 3.2 -> 2.3 / 2.2 / 3.0, c4 3.8 /
# 5.1 / 4.8 -> 3.6 / 3.7 / 4.6 (its 13x13 output fills 4x4 tiles worst); more in
# docs/performance.md.
# F(5x5, 3x3) where its tiles fit the output better (1.96 products per pixel; errors
# about 3e-5 of the output's scale against F(4x4)'s 1e-5).
_WINOGRAD = True
# Output tile sides of the forward and of the input and weight gradients: None picks
# F(4x4, 3x3) or F(5x5, 3x3) per output size (_winograd_tile_for); 2, 4 or 5 forces
# F(2x2), F(4x4) or F(5x5).  The fused 2x2 max pool needs an even tile (whole windows
# in each): a Conv2D that its model may fuse with the MaxPooling2D after it runs its
# forward on _winograd_pool_tile() either way, so that predict's fused pass and the
# layer's forward give the same bits (layers/conv.py).
_WINOGRAD_TILE = None
_WINOGRAD_GRAD_TILE = None
# Measured (batch 64, 32x32, 'same', ms, forward / input gradient / weight gradient,
# direct -> Winograd): 16 -> 16 channels 2.03 / 2.05 / 1.87 -> 1.32 / 1.32 / 1.78,
# 12 -> 32 1.85 / 3.19 / 1.94 -> 1.71 / 2.46 / 1.42; 8 -> 32 and 32 -> 8 about even,
# 8 -> 8 0.70 / 0.64 / 0.77 -> 1.27 / 1.30 / 1.23.
_WINOGRAD_MIN_CHANNELS = 16
# Tiles per work item of the forward (rounded up to a multiple of the tile rows MR) and
# per block of the weight gradient: their transformed input ((tile + 2)^2 values per
# tile and channel) stays in the L2 cache (measured for F(4x4): 36 against 24 and 48).
_WINOGRAD_BLOCK = 36
_WINOGRAD_GRAD_BLOCK = 36
# The weight gradient's partial sums: fixed groups of at least _WINOGRAD_PARTIAL_IMAGES
# images, at most _WINOGRAD_PARTIALS of them (a function of the shapes only, so the
# same bits on any thread count).  Each partial is (tile + 2)^2 / 9 times the weight's
# size, zeroed and summed once per call: measured (ms, at most 8 / 4 / 2 partials),
# cifar.c4 at batch 32 1.83 / 1.50 / 1.42, at batch 128 4.60 / 4.24 / 4.14, cifar.c3 at
# batch 32 0.98 / 0.78 / 0.71.
_WINOGRAD_PARTIALS = 4
_WINOGRAD_PARTIAL_IMAGES = 16


# The pixel-row kernels (src/conv_driver.h, "channels_last, one group"): tiles of MR
# output pixels x NR output channels, every window read in place.  Measured here (2-core
# Skylake-SP, CIFAR layers): 190-200 GFLOP/s on cifar.c2-c4 against 120-135 for the
# shifted kernels, which compute (and drop) the padding columns.  They need enough
# output channels to fill NR columns and enough pixels per image to fill MR rows.
# (A col2im input gradient on them -- grad_y W^T per tile of pixels, then a scatter into
# grad_x -- was measured 1.5-5x slower than the stride-1 gather of _grad_input; dropped.)
_PIXEL_ROWS = True


def _pixel_tile(dtype, half=False):
    return _ext.conv2d.pixel_tile(dtype == np.float64, half)


# The pixel-row kernels' half-width tile (one vector of output channels) where C_out
# fits in it and the full tile would leave half its columns empty.  Measured (LeNet-5's
# C3, 6 -> 16 channels, batch 128, ms, half / full / wide kernels): weight gradient
# 0.75 / 1.13 / 1.02, so it runs before the wide kernels there; forward 0.78 / 1.00 /
# 0.71, where the wide kernels stay first (see _pixel_cols).
_PIXEL_HALF = True


def _pixel_half(g, dtype):
    """Whether g's pixel-row kernels take the half-width tile."""
    return (_PIXEL_HALF and
            g.c_out <= _pixel_tile(dtype, True)[1] < _pixel_tile(dtype)[1])


def _pixel_rows_ok(g, dtype):
    if not (_PIXEL_ROWS and g.channels_last and g.groups == 1):
        return False
    mr, nr = _pixel_tile(dtype)
    return 2 * g.c_out >= nr and g.oh * g.ow >= mr


# The wide kernels (src/conv_driver.h, "few channels: wide kernels"): channels_last,
# one group, stride 1, vectorised along the output rows of a channel-major copy of each
# image.  They take the layers whose channel counts leave the pixel-row tiles mostly
# empty.  Measured here (batch 128, ms, wide / before): LeNet-5's C1 (1 -> 6 channels)
# forward 0.72 / 0.89, input gradient 0.87 / 2.68, weight gradient 0.81 / 1.92; C3
# (6 -> 16) input gradient 1.07 / 2.01.  The narrow kernel stays ahead where it applies
# (cifar.c1's input gradient, 32 -> 3 channels: 4.1 against 4.7 ms).
_WIDE = True
# The wide weight gradient's partial sums: as few as _WIDE_PARTIALS (each kernel call
# ends with horizontal sums, so longer runs pay), each over images whose planar copies
# fit in _WIDE_SCRATCH bytes.  Measured: LeNet-5's C3 at batch 32 0.39 -> 0.35 ms (5
# partials instead of 16); 4 partials of C1 at batch 128 (1 MB of copies each) were
# 1.0 -> 1.2 ms, and 256 KB of copies already cost C3 at batch 128 5%.
_WIDE_PARTIALS = 4
_WIDE_SCRATCH = 128 << 10


def _wide_ok(g, dtype, pixel_cols):
    """Whether the wide kernels suit g: their share of useful vector lanes (ow over ow
    rounded up to the vector length) and rows (oh over oh rounded up to their row
    blocks) beats the share of useful columns the pixel-row kernel would have
    (pixel_cols: C_out over C_out rounded up to its tile, 0 when it does not apply),
    and rows are at least half a vector long."""
    if not (_WIDE and g.channels_last and g.groups == 1 and g.sy == g.sx == 1):
        return False
    vl, _ = _ext.conv2d.wide_tile(dtype == np.float64)
    row = -(-g.ow // vl) * vl
    lanes = g.ow / row
    rows = g.oh / (-(-g.oh // 5) * 5)  # blocks of about 5 rows (fc_wide_block)
    return 2 * g.ow >= vl and lanes * rows > pixel_cols


def _wide_images_per_partial(g, dtype, n_per):
    """Images per partial weight gradient of the wide kernels (shapes only): at least
    n_per, up to a _WIDE_PARTIALS-th of the batch while the planar copies of x and
    grad_y fit in _WIDE_SCRATCH bytes."""
    vl, gco = _ext.conv2d.wide_tile(dtype == np.float64)
    row = -(-g.ow // vl) * vl
    per_image = (g.c_in * (g.oh + (g.kh - 1) * g.dy) * (row + (g.kw - 1) * g.dx) +
                 -(-g.c_out // gco) * gco * g.oh * row) * np.dtype(dtype).itemsize
    fits = max(1, _WIDE_SCRATCH // per_image)
    return int(max(n_per, min(-(-g.n // _WIDE_PARTIALS), fits)))


def _pixel_cols(g, dtype):
    """The pixel-row kernel's share of useful output-channel columns (0: not used), on
    the tile it would take (the half-width one where _pixel_half says so)."""
    if not _pixel_rows_ok(g, dtype):
        return 0.0
    nr = _pixel_tile(dtype, _pixel_half(g, dtype))[1]
    return g.c_out / (-(-g.c_out // nr) * nr)


def _narrow_ok(g, dtype):
    """The narrow kernel: channels_last, one group, too few output channels for the
    pixel-row kernel's columns (e.g. the input gradient of a layer with 3 input
    channels), input channels in whole vectors.  Measured: cifar.c1's input gradient
    (32 -> 3 channels) 6 ms instead of 9-12 ms on the shifted kernels."""
    if not (_PIXEL_ROWS and g.channels_last and g.groups == 1):
        return False
    mr, no, vl = _ext.conv2d.narrow_tile(dtype == np.float64)
    return (g.c_out <= 2 * no and g.c_in % vl == 0 and g.c_in >= 2 * vl
            and g.oh * g.ow >= mr)


def _narrow_weights(g, w):
    """(C_out, C_in, kh, kw) -> (ceil(C_out/NO), kh*kw, NO, C_in), zero past C_out."""
    _, no, _ = _ext.conv2d.narrow_tile(w.dtype == np.float64)
    nob = -(-g.c_out // no)
    out = _aligned_zeros(nob * no * g.k_group, w.dtype).reshape(
        nob, g.kh * g.kw, no, g.c_in)
    wk = w.transpose(2, 3, 0, 1).reshape(g.kh * g.kw, g.c_out, g.c_in)
    for ob in range(nob):
        rows = wk[:, ob * no:(ob + 1) * no]
        out[ob, :, :rows.shape[1]] = rows
    return out.reshape(-1)


def _pixel_weights(g, w, nr):
    """(C_out, C_in, kh, kw) -> (ceil(C_out/nr), kh*kw*C_in, nr), zero past C_out."""
    wk = w.transpose(2, 3, 1, 0).reshape(g.k_group, g.c_out)
    ncb = -(-g.c_out // nr)
    out = _aligned_zeros(ncb * g.k_group * nr, w.dtype).reshape(ncb, g.k_group, nr)
    for cb in range(ncb):
        cols = wk[:, cb * nr:(cb + 1) * nr]
        out[cb, :, :cols.shape[1]] = cols
    return out.reshape(-1)


def _aligned_zeros(size, dtype, align=64):
    """Zeros whose data starts on an `align`-byte boundary (a vector load of a packed
    row must not straddle two cache lines)."""
    return _aligned(np.zeros, size, dtype, align)


def _aligned_empty(size, dtype, align=64):
    """As _aligned_zeros, uninitialised."""
    return _aligned(np.empty, size, dtype, align)


def _aligned(alloc, size, dtype, align):
    itemsize = np.dtype(dtype).itemsize
    buf = alloc(size + align // itemsize, dtype)
    start = (-buf.ctypes.data % align) // itemsize
    return buf[start:start + size]


def _winograd_ok(g, dtype):
    """Whether g runs on the Winograd kernels (forward, and the weight gradient)."""
    return (_WINOGRAD and dtype == np.float32 and g.channels_last and
            (g.kh, g.kw) == (3, 3) and (g.sy, g.sx, g.dy, g.dx, g.groups) == (1, 1, 1, 1, 1)
            and g.oh >= 2 and g.ow >= 2 and
            min(g.c_in, g.c_out) >= _WINOGRAD_MIN_CHANNELS)


def _winograd_tile_for(oh, ow, forced=None):
    """The Winograd tile side of a pass whose output (y, grad_x for the input gradient,
    the tiles of grad_y for the weight gradient) is oh x ow: forced where given, else
    F(5x5) where its tiles hold fewer transformed values (tiles * (tile + 2)^2: the
    products, and the transforms' traffic) than F(4x4)'s, else F(4x4).  CIFAR-10's
    30x30, 15x15 and 13x13 take F(5x5) (0.77x F(4x4)'s values each), c2's 32x32 input
    gradient F(4x4).  (Measured, batch 128, ms, F(4x4) -> F(5x5), forward / input
    gradient / weight and bias gradients: c2 3.55 -> 3.08 / - / 4.45 -> 3.73, c3 1.60 ->
    1.39 / 1.54 -> 1.33 / 2.06 -> 1.86, c4 2.61 -> 2.34 / 2.81 -> 2.49 / 3.92 -> 3.39.)"""
    if forced is not None:
        return forced

    def values(t):
        return -(-oh // t) * -(-ow // t) * (t + 2) ** 2
    return 5 if values(5) < values(4) else 4


def _winograd_forward_tile(oh, ow):
    return _winograd_tile_for(oh, ow, _WINOGRAD_TILE)


def _winograd_grad_tile(oh, ow):
    return _winograd_tile_for(oh, ow, _WINOGRAD_GRAD_TILE)


def _winograd_pool_tile():
    """The forward tile of a convolution whose 2x2 max pool may be fused: F(4x4), or
    F(2x2) where forced."""
    return 2 if _WINOGRAD_TILE == 2 else 4


def _winograd_weights(w, tile):
    """U = G g G^T of w (C_out, C_in, 3, 3) for F(tile x tile, 3x3), packed for
    _ext.conv2d.winograd_forward."""
    nr = _ext.conv2d.winograd_tile()[1]
    u = _aligned_empty((tile + 2) ** 2 * -(-w.shape[0] // nr) * w.shape[1] * nr,
                       w.dtype)  # (every element written)
    _ext.conv2d.winograd_weights(w, u, tile)
    return u


def _winograd_block():
    mr = _ext.conv2d.winograd_tile()[0]
    return -(-_WINOGRAD_BLOCK // mr) * mr


def _forward_oihw(g, x, w, bias, dtype, relu=False, tanh=False, winograd_tile=None,
                  finite=None):
    """y of geometry g for a weight w in (C_out, C_in/groups, kh, kw) order, then ReLU
    (relu) or tanh (tanh, float32: fused into the wide kernels' output pass, a separate
    in-place pass after the other kernels).  winograd_tile: the Winograd tile, where g
    runs on it (None: the forward's, _winograd_forward_tile).  finite: whether w is
    finite (_finite), when the caller knows (None: checked here)."""
    tile = winograd_tile or _winograd_forward_tile(g.oh, g.ow)
    y, fused = _forward_kernels(g, x, w, bias, dtype, relu, tanh and dtype == np.float32,
                                tile, finite)
    return y if fused else _tanh_if(y, tanh)


# Non-finite values follow one rule on every path and layout, the reference's
# (fastconv/reference.py) and PyTorch's: each op is the arithmetic of its definition on
# the zero-padded input.  y sums w * x_pad over every tap of the window, padding
# included (a NaN or infinite weight makes its whole output channel NaN, or infinite
# where no padding is read); grad_x[i] sums grad_y[o] * w[t] over the (o, t) that read
# x[i] only; grad_weight[t] sums grad_y[o] * x_pad over the real outputs o.  The fast
# kernels take shortcuts that assume 0 * v == 0: the channels_last forwards skip kernel
# rows that read only padding, the stride-1 input gradient gathers over a zero-padded
# grad_y, the weight-gradient kernels run past the row ends with zeros.  Those hold
# for finite values only, so a non-finite weight (checked before: a pass over the
# weight) sends the forward and the input gradient to the kernels without shortcuts,
# and a non-finite weight gradient (checked after: a pass over the result, so x is not
# read twice) is recomputed on them.  (Winograd's NaN in x reaching its whole tile is
# the one documented exception, README "Kernels".)
def _finite(a):
    """True when the ndarray a (float32 or float64) holds no NaN or infinity."""
    return _ALL_FINITE[a.dtype.itemsize](np.ascontiguousarray(a).reshape(-1))


# (The specialisations themselves: the fused function's dispatch costs more than the
# check of a layer's weight.)
_ALL_FINITE = {4: _ext.conv2d.all_finite["float"], 8: _ext.conv2d.all_finite["double"]}


def _forward_path(g, dtype, finite=True):
    """The kernels _forward_kernels runs g on, in their order of preference: "winograd",
    "narrow", "wide", "pixel" (the pixel-row tiles), or "other" (shifted or packed);
    "other" alone when the weight is not finite (see _finite)."""
    if not finite:
        return "other"
    if _winograd_ok(g, dtype):
        return "winograd"
    if _narrow_ok(g, dtype):
        return "narrow"
    if _wide_ok(g, dtype, _pixel_cols(g, dtype)):
        return "wide"
    return "pixel" if _pixel_rows_ok(g, dtype) else "other"


def _forward_kernels(g, x, w, bias, dtype, relu, tanh, winograd_tile, finite=None):
    """(y, whether tanh is applied): the kernel path that suits g, ReLU fused; tanh
    only by the wide and pixel-row kernels."""
    y = _arena.empty(g.y_shape, dtype)
    if y.size == 0:
        return y, False
    if finite is None:
        finite = _finite(w)
    if x.size == 0:  # every window lies in the padding
        y[...] = 0 if bias is None else (bias if g.channels_last else bias[:, None, None])
        if not finite:  # 0 * w over the window's taps (NaN where w is not finite)
            zw = (w * 0).reshape(g.c_out, -1).sum(axis=1)
            y += zw if g.channels_last else zw[:, None, None]
        return (np.maximum(y, 0) if relu else y), False
    mr, nr = _mr(dtype)
    path = _forward_path(g, dtype, finite)
    if path == "winograd":
        _ext.conv2d.winograd_forward(x.reshape(-1), _winograd_weights(w, winograd_tile),
                                     bias, y.reshape(-1), _geom(g), _winograd_block(), relu,
                                     False, winograd_tile)
        return y, False
    if path == "narrow":
        _ext.conv2d.px_forward_narrow(x.reshape(-1), _narrow_weights(g, w), bias,
                                      y.reshape(-1), _geom(g), relu)
        return y, False
    if path == "wide":
        _ext.conv2d.wide_forward(x.reshape(-1), np.ascontiguousarray(w).reshape(g.c_out, -1),
                                 bias, y.reshape(-1), _geom(g), relu, tanh)
        return y, tanh
    if path == "pixel":
        half = _pixel_half(g, dtype)
        _ext.conv2d.px_forward(x.reshape(-1),
                               _pixel_weights(g, w, _pixel_tile(dtype, half)[1]),
                               bias, y.reshape(-1), _geom(g), relu, half, tanh=tanh)
        return y, tanh
    ap = _pack_rows(w.reshape(g.groups, g.c_out // g.groups, g.k_group), mr)
    if _shifted(g, nr):
        _ext.conv2d.forward_shift(x.reshape(-1), ap, bias, y.reshape(-1), _geom(g), relu)
    else:
        _ext.conv2d.forward(x.reshape(-1), ap, bias, y.reshape(-1), _geom(g), relu)
    return y, False


def _pool_path(g, x, weight, dtype):
    """The kernels g's forward runs on (_forward_path) where a 2x2/2 pool could be fused
    into it -- a pooled output of at least one pixel, a non-empty input, not a dense
    convolution, a finite weight (see _finite) -- else None."""
    if g.oh >= 2 and g.ow >= 2 and not _is_dense(g) and x.size != 0 and _finite(weight):
        return _forward_path(g, dtype)
    return None


def _forward_avg_pooled(g, x, weight, bias, dtype, relu=False, tanh=False, keep=False):
    """avg_pool2d(act(conv2d(x)), 2) -- 2x2 windows, stride 2, rows and columns past an
    even count dropped, act ReLU (relu), tanh (tanh) or none -- bit for bit, in the
    output pass of the wide or pixel-row kernels, each image pooled while it is in
    cache: the full-size output is never written (measured, tanh, batch 32 / 128, ms:
    LeNet-5's C1 + S2 0.35 -> 0.25 / 1.46 -> 0.94, C3 + S4 0.33 -> 0.27 / 0.76 ->
    0.65).  With keep, (act(conv2d(x)), its pool): the pool taken from each pair of
    output rows as they are written (training, where the backward pass needs the
    activations).  None where g runs on neither (or tanh is asked in float64, which they
    do not fuse)."""
    path = None if tanh and dtype != np.float32 else _pool_path(g, x, weight, dtype)
    if path not in ("wide", "pixel"):
        return None
    pooled = _arena.empty((g.n, g.oh // 2, g.ow // 2, g.c_out), dtype)
    y = _arena.empty(g.y_shape, dtype) if keep else None
    out, yq = (pooled, None) if y is None else (y, pooled)
    if path == "wide":
        w = np.ascontiguousarray(_weight_oihw(g, weight)).reshape(g.c_out, -1)
        _ext.conv2d.wide_forward(x.reshape(-1), w, bias, out.reshape(-1), _geom(g), relu,
                                 tanh, y is None, None if yq is None else yq.reshape(-1))
    else:
        half = _pixel_half(g, dtype)
        _ext.conv2d.px_forward(x.reshape(-1), _pixel_weights(
            g, _weight_oihw(g, weight), _pixel_tile(dtype, half)[1]), bias,
            out.reshape(-1), _geom(g), relu, half, tanh=tanh, avg_pool=y is None,
            yq=None if yq is None else yq.reshape(-1))
    return pooled if y is None else (y, pooled)


def _forward_max_pooled(g, x, weight, bias, dtype, relu=False, winograd_tile=None):
    """max_pool2d(act(conv2d(x)), 2) -- 2x2 windows, stride 2, rows and columns past an
    even count dropped, act ReLU (relu) or none -- bit for bit, the full-size output never
    written (inference only: the backward passes need it).  On the Winograd kernels each
    output tile holds whole pooling windows, pooled as the tile is written; on the
    pixel-row kernels each image is pooled from a per-thread copy of its output while it
    is in cache.  None where g runs on neither."""
    path = _pool_path(g, x, weight, dtype)
    if path == "winograd":
        tile = winograd_tile or _winograd_forward_tile(g.oh, g.ow)
        if tile % 2:  # (F(5x5): no tile holds whole windows)
            return None
        pooled = _arena.empty((g.n, g.oh // 2, g.ow // 2, g.c_out), dtype)
        _ext.conv2d.winograd_forward(x.reshape(-1), _winograd_weights(_weight_oihw(
            g, weight), tile), bias, pooled.reshape(-1), _geom(g), _winograd_block(),
            relu, True, tile)
        return pooled
    if path != "pixel":
        return None
    half = _pixel_half(g, dtype)
    pooled = _arena.empty((g.n, g.oh // 2, g.ow // 2, g.c_out), dtype)
    _ext.conv2d.px_forward(x.reshape(-1),
                           _pixel_weights(g, _weight_oihw(g, weight),
                                          _pixel_tile(dtype, half)[1]),
                           bias, pooled.reshape(-1), _geom(g), relu, half, True)
    return pooled


def _tanh_if(y, tanh):
    """y, with tanh applied in place when asked (y is a new array of the kernels)."""
    return _activations._tanh_inplace(y) if tanh else y


def _conv_forward(g, x, weight, bias, dtype, relu=False, tanh=False, winograd_tile=None):
    if _dense_blas(g):
        y = _blas._product(x.reshape(g.n, g.k_group), _dense_weight(g, weight), bias)
        if relu:
            np.maximum(y, 0, out=y)  # NaN stays NaN, as in the kernels
        return _tanh_if(y, tanh).reshape(g.y_shape)
    d = _dense(g, dtype)
    if d is not None:
        return _conv_forward(d, x.reshape(d.x_shape), weight.reshape(d.weight_shape), bias,
                             dtype, relu, tanh).reshape(g.y_shape)
    return _forward_oihw(g, x, _weight_oihw(g, weight), bias, dtype, relu, tanh,
                         winograd_tile)


def _grad_input(g, grad_y, weight, dtype):
    """grad_x: for stride 1, the forward kernels on grad_y with flipped, transposed
    weights (a gather, no scatter); otherwise W^T grad_y scattered back image by image."""
    if _dense_blas(g):
        gx = _blas._product(grad_y.reshape(g.n, g.c_out), _dense_weight(g, weight).T)
        return gx.reshape(g.x_shape)
    d = _dense(g, dtype)
    if d is not None:
        return _grad_input(d, grad_y.reshape(d.y_shape), weight.reshape(d.weight_shape),
                           dtype).reshape(g.x_shape)
    mr, _ = _mr(dtype)
    cog, cig = g.c_out // g.groups, g.c_in // g.groups
    w = _weight_oihw(g, weight)
    if g.sy == 1 and g.sx == 1 and g.oh >= g.kh and g.ow >= g.kw and _finite(w):
        # (When the output is smaller than the kernel, most of this gather would
        # multiply padding zeros: the scatter below is cheaper.  A weight that is not
        # finite takes the scatter too: the gather's zeros times it would be NaN.)
        wt = (w.reshape(g.groups, cog, cig, g.kh, g.kw)[:, :, :, ::-1, ::-1]
              .transpose(0, 2, 1, 3, 4).reshape(g.c_in, cog, g.kh, g.kw))
        pt, pl = (g.kh - 1) * g.dy - g.pad_top, (g.kw - 1) * g.dx - g.pad_left
        pb, pr = (g.kh - 1) * g.dy - g.pad_bottom, (g.kw - 1) * g.dx - g.pad_right
        g2 = _Geometry(g.n, g.c_out, g.oh, g.ow, g.c_in, g.groups, g.kh, g.kw, 1, 1, g.dy,
                       g.dx, pt, pb, pl, pr, g.h, g.w, g.channels_last)
        return _forward_oihw(g2, grad_y, wt, None, dtype,
                             winograd_tile=_winograd_grad_tile(g2.oh, g2.ow), finite=True)
    gx = np.zeros(g.x_shape, dtype)
    at = _pack_rows(w.reshape(g.groups, cog, g.k_group).transpose(0, 2, 1), mr)
    # Whole images per item, enough of them to fill a strip of NR pixels.
    n_per = max(1, -(-_mr(dtype)[1] // (g.oh * g.ow)))
    _ext.conv2d.grad_input_scatter(grad_y.reshape(-1), at, gx.reshape(-1),
                                   _geom(g), n_per)
    return gx


def _images_per_partial(g, itemsize):
    """Images per partial weight gradient: a function of the shapes only.  At most
    _MAX_WEIGHT_PARTIALS partials, each covering at least _MIN_PARTIAL_PIXELS output
    pixels (fewer, larger partials for small images) and at most _CHUNK_BYTES of
    grad_y."""
    pixels = max(g.oh * g.ow, 1)
    per_image = max(g.c_out * pixels * itemsize, 1)
    want = max(-(-g.n // _MAX_WEIGHT_PARTIALS), -(-_MIN_PARTIAL_PIXELS // pixels))
    return int(max(1, min(want, _CHUNK_BYTES // per_image, g.n)))


def _grad_weight_path(g, dtype):
    """The kernels the weight gradient of g (not dense, not empty) runs on: "winograd",
    "wide", "pixel" (the pixel-row tiles; their half-width tile stays ahead of the wide
    kernels), or "other" (shifted or packed)."""
    if _winograd_ok(g, dtype):
        return "winograd"
    pixel_rows = _pixel_rows_ok(g, dtype)
    if not (pixel_rows and _pixel_half(g, dtype)) and _wide_ok(g, dtype,
                                                              _pixel_cols(g, dtype)):
        return "wide"
    return "pixel" if pixel_rows else "other"


def _grad_weight(g, grad_y, x, dtype, with_bias):
    """(grad_weight in the weight's layout, grad_bias or None)."""
    gw, gb = _grad_weight_kernels(g, grad_y, x, dtype, with_bias)
    if not _finite(gw):  # the kernels' zeros may have met a NaN or infinity: see _finite
        gw = _grad_weight_packed(g, grad_y, x, dtype,
                                 _images_per_partial(g, np.dtype(dtype).itemsize), False)
    return gw, gb


def _grad_weight_kernels(g, grad_y, x, dtype, with_bias):
    """_grad_weight on the kernels that suit g (exact for finite values)."""
    if _dense_blas(g):
        gw = _blas._product(x.reshape(g.n, g.k_group).T, grad_y.reshape(g.n, g.c_out))
        gw = gw.reshape(g.weight_shape) if g.channels_last else np.ascontiguousarray(
            gw.T).reshape(g.weight_shape)
        gb = (_grad_bias_kernel(g, grad_y, dtype,
                                _images_per_partial(g, np.dtype(dtype).itemsize))
              if with_bias else None)
        return gw, gb
    d = _dense(g, dtype)
    if d is not None:
        gw, _ = _grad_weight(d, grad_y.reshape(d.y_shape), x.reshape(d.x_shape), dtype,
                             False)
        # The bias gradient's partial sums as conv2d_grad_bias groups them (g's images).
        gb = (_grad_bias_kernel(g, grad_y, dtype,
                                _images_per_partial(g, np.dtype(dtype).itemsize))
              if with_bias else None)
        return gw.reshape(g.weight_shape), gb
    if g.n == 0 or g.oh * g.ow == 0:
        gw = np.zeros(g.weight_shape, dtype)
        return gw, (np.zeros(g.c_out, dtype) if with_bias else None)
    mr, nr = _mr(dtype)
    n_per = _images_per_partial(g, np.dtype(dtype).itemsize)
    nig = -(-g.n // n_per)
    # The bias gradient's partial sums over the groups of n_per images that
    # conv2d_grad_bias makes (the same bits); the pixel-row and wide paths take each
    # group's in the work item of its weight gradient, before that reads the group's
    # grad_y (measured, batch 128, weight and bias gradients: CIFAR-10's first layer
    # 1.67 -> 1.59 ms, LeNet-5's C1 0.67 -> 0.54, C3 0.42 -> 0.38; no gain on the
    # Winograd path).
    path = _grad_weight_path(g, dtype)
    bsum = np.zeros((nig, g.c_out)) if with_bias else None
    if bsum is not None and path not in ("wide", "pixel"):  # (paths that take no bsum)
        _ext.conv2d.grad_bias(grad_y.reshape(-1), bsum.reshape(-1), _geom(g), n_per)
    if path == "winograd":
        return _winograd_grad_weight(g, grad_y, x, dtype), _bias_total(bsum, dtype)
    if path == "wide":
        return _wide_grad_weight(g, grad_y, x, dtype, n_per, bsum)
    if path == "pixel":
        half = _pixel_half(g, dtype)
        mr, nr = _pixel_tile(dtype, half)
        part = np.zeros((nig, -(-g.k_group // mr) * mr, -(-g.c_out // nr) * nr), dtype)
        _ext.conv2d.px_grad_weight(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                   _geom(g), n_per, half,
                                   None if bsum is None else bsum.reshape(-1))
        total = _sum_partials(part)
        gw = total[:g.k_group, :g.c_out].reshape(g.kh, g.kw, g.c_in, g.c_out)
        return np.ascontiguousarray(gw), _bias_total(bsum, dtype)
    return _grad_weight_packed(g, grad_y, x, dtype, n_per, _shifted(g, nr)), \
        _bias_total(bsum, dtype)


def _grad_weight_packed(g, grad_y, x, dtype, n_per, shifted):
    """grad_weight on the shifted (shifted) or the packed implicit-GEMM kernels; the
    packed ones take no shortcut over zeros (see _finite) and suit any g."""
    if g.n == 0 or g.oh * g.ow == 0:
        return np.zeros(g.weight_shape, dtype)
    mr, nr = _mr(dtype)
    cog = g.c_out // g.groups
    nig = -(-g.n // n_per)
    if shifted:
        kg_pad, cog_pad = -(-g.k_group // mr) * mr, -(-cog // nr) * nr
        part = np.zeros((nig, g.groups, kg_pad, cog_pad), dtype)
        _ext.conv2d.grad_weight_shift(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                      _geom(g), n_per, _WEIGHT_BLOCK_PIXELS)
    else:
        cog_pad, kg_pad = -(-cog // mr) * mr, -(-g.k_group // nr) * nr
        part = np.zeros((nig, g.groups, cog_pad, kg_pad), dtype)
        _ext.conv2d.grad_weight(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                _geom(g), n_per, _WEIGHT_BLOCK_PIXELS)
    total = _sum_partials(part)
    if shifted:
        total = total[:, :g.k_group, :cog].transpose(0, 2, 1)
    else:
        total = total[:, :cog, :g.k_group]
    gw = total.reshape(g.c_out, g.c_in // g.groups, g.kh, g.kw)
    if g.channels_last:
        gw = gw.transpose(2, 3, 1, 0)
    return np.ascontiguousarray(gw)


def _wide_grad_weight(g, grad_y, x, dtype, n_per, bsum, grad_pooled=None, a=None):
    """(grad_weight, grad_bias or None) on the wide kernels, bsum the bias gradient's
    partial sums over groups of n_per images (or None).  With grad_pooled and a,
    grad_y (None) is the gradient through tanh (a: its output) of the 2x2/2 average pool
    whose output gradient is grad_pooled (see _grad_weight_avg_tanh)."""
    n_wide = -(-_wide_images_per_partial(g, dtype, n_per) // n_per) * n_per
    nwg = -(-g.n // n_wide)
    gco = _ext.conv2d.wide_tile(dtype == np.float64)[1]
    part = np.zeros((nwg, g.k_group, -(-g.c_out // gco) * gco), dtype)
    flat = (lambda v: None if v is None else v.reshape(-1))
    _ext.conv2d.wide_grad_weight(x.reshape(-1), flat(grad_y), part.reshape(-1), _geom(g),
                                 n_wide, flat(bsum), n_per, flat(grad_pooled), flat(a))
    total = _sum_partials(part)
    gw = total[:, :g.c_out].reshape(g.kh, g.kw, g.c_in, g.c_out)
    return np.ascontiguousarray(gw), _bias_total(bsum, dtype)


def _grad_weight_avg_tanh(g, grad_pooled, x, a, dtype, with_bias):
    """(grad_weight, grad_bias or None) of a tanh convolution followed by a 2x2/2
    average pool, from the pool's output gradient grad_pooled and tanh's output a --
    the gradient with respect to the convolution's output (what the pool's and tanh's
    backward give) made image by image inside the weight gradient's work items while in
    cache, never written whole: the same values as _grad_weight on it.  Measured,
    LeNet-5's C1 + S2 at batch 128, pooling's and C1's backward 0.58 -> 0.51 ms alone,
    the training step 3.22 -> 3.13 ms.  None where g does not run on the wide kernels
    (the weight gradient's only path that takes it) or the shapes do not suit."""
    if not (g.channels_last and g.oh >= 2 and g.ow >= 2 and g.n and
            a.shape == g.y_shape and grad_pooled.shape == (g.n, g.oh // 2, g.ow // 2,
                                                           g.c_out) and
            a.dtype == grad_pooled.dtype == dtype and a.flags.c_contiguous and
            grad_pooled.flags.c_contiguous and not _is_dense(g)):
        return None
    if _grad_weight_path(g, dtype) != "wide":
        return None
    n_per = _images_per_partial(g, np.dtype(dtype).itemsize)
    bsum = np.zeros((-(-g.n // n_per), g.c_out)) if with_bias else None
    out = _wide_grad_weight(g, None, x, dtype, n_per, bsum, grad_pooled, a)
    # (Not finite: the layers' separate passes run instead, whose _grad_weight applies
    # the rule of _finite.)
    return out if _finite(out[0]) else None


def _bias_total(bsum, dtype):
    """The bias gradient from its partial sums (as _grad_bias_kernel adds them)."""
    return None if bsum is None else bsum.sum(axis=0).astype(dtype)


def _winograd_grad_weight(g, grad_y, x, dtype):
    """grad_weight (3, 3, C_in, C_out) on the Winograd kernels: partial sums dU over
    fixed groups of images (see _WINOGRAD_PARTIALS), added in order, then G^T dU G."""
    mr, nr = _ext.conv2d.winograd_tile()
    n_per = max(_WINOGRAD_PARTIAL_IMAGES, -(-g.n // _WINOGRAD_PARTIALS))
    cpad, ldg = -(-g.c_in // mr) * mr, -(-g.c_out // nr) * nr
    tile = _winograd_grad_tile(g.oh, g.ow)
    part = np.zeros((-(-g.n // n_per), (tile + 2) ** 2 * cpad * ldg), dtype)
    _ext.conv2d.winograd_grad_weight(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                     _geom(g), n_per, _WINOGRAD_GRAD_BLOCK, tile)
    gw = np.empty(g.weight_shape, dtype)
    _ext.conv2d.winograd_grad_weight_out(_sum_partials(part), gw.reshape(-1), g.c_in,
                                         g.c_out, cpad, ldg, tile)
    return gw


def _sum_partials(part):
    """part[0] + part[1] + ... added in this fixed order (in place into part[0]): the
    same sum for any thread count."""
    total = part[0]
    for i in range(1, part.shape[0]):
        total += part[i]
    return total


def _grad_bias_kernel(g, grad_y, dtype, n_per):
    """grad_y summed over all but C_out: float64 partial sums per group of n_per images,
    added in a fixed order."""
    bsum = np.zeros((-(-g.n // n_per), g.c_out))
    _ext.conv2d.grad_bias(grad_y.reshape(-1), bsum.reshape(-1), _geom(g), n_per)
    return _bias_total(bsum, dtype)


def _backward(g, grad_y, x, weight, dtype, need_input, need_weight, with_bias=False):
    """(grad_x or None, grad_weight or None, grad_bias or None)."""
    grad_x = gw = gb = None
    if need_input:
        grad_x = (np.zeros(g.x_shape, dtype) if grad_y.size == 0 or _x_empty(g)
                  else _grad_input(g, grad_y, weight, dtype))
    if need_weight:
        gw, gb = _grad_weight(g, grad_y, x, dtype, with_bias)
    return grad_x, gw, gb


def _x_empty(g):
    return g.n * g.c_in * g.h * g.w == 0


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           data_format="channels_first"):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (no kernel flip).

    Parameters
    ----------
    x : ndarray, (N, C, H, W) for channels_first or (N, H, W, C) for channels_last.
    weight : ndarray, (C_out, C/groups, kh, kw) or (kh, kw, C/groups, C_out).
    bias : ndarray (C_out,) or None.
    stride, dilation : int or (sy, sx).
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        (TensorFlow's rule: output = ceil(n / stride), odd extra padding bottom/right).
    groups : int dividing both C and C_out.
    data_format : "channels_first" or "channels_last".

    Returns
    -------
    y : ndarray in the layout and dtype of x.
    """
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, data_format)


def _conv2d(x, weight, bias, stride, padding, dilation, groups, data_format, relu=False,
            tanh=False, winograd_tile=None):
    """conv2d, optionally followed by ReLU (relu) or tanh (tanh) in the output pass
    where the kernel has one (the Conv2D layer's activation="relu"/"tanh" forward: one
    pass over y instead of two).  Exactly activations.relu / activations.tanh of
    conv2d's result.  winograd_tile: as _forward_oihw's."""
    check_data_format(data_format)
    dtype, a = _inputs({"x": x, "weight": weight, "bias": bias},
                       {"x": (4, _X_DESC[data_format]), "weight": (4, None),
                        "bias": (1, "a 1-D array (C_out,)")})
    g = _geometry(a["x"].shape, a["weight"].shape, stride, padding, dilation, groups,
                  data_format)
    if a["bias"] is not None and a["bias"].shape != (g.c_out,):
        raise ValueError(f"bias must have shape ({g.c_out},) to match C_out, got "
                         f"{a['bias'].shape}")
    return _conv_forward(g, a["x"], a["weight"], a["bias"], dtype, relu, tanh,
                         winograd_tile)


def _backward_inputs(grad_y, x, weight, stride, padding, dilation, groups, data_format,
                     x_shape=None, weight_shape=None):
    """Check the backward arguments; x or weight may be replaced by a shape."""
    check_data_format(data_format)
    dtype, a = _inputs({"grad_y": grad_y, "x": x, "weight": weight},
                       {"grad_y": (4, _X_DESC[data_format].replace("(N, C,", "(N, C_out,")
                                   .replace("W, C)", "W, C_out)")),
                        "x": (4, _X_DESC[data_format]), "weight": (4, None)})
    xs = a["x"].shape if a["x"] is not None else tuple(x_shape)
    ws = a["weight"].shape if a["weight"] is not None else tuple(weight_shape)
    if len(xs) != 4:
        raise ValueError(f"x_shape must have 4 entries, got {xs}")
    if len(ws) != 4:
        raise ValueError(f"weight_shape must have 4 entries, got {ws}")
    g = _geometry(xs, ws, stride, padding, dilation, groups, data_format)
    if a["grad_y"].shape != g.y_shape:
        raise ValueError(f"grad_y must have the output shape {g.y_shape} of this "
                         f"convolution, got {a['grad_y'].shape}")
    return g, dtype, a


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    data_format="channels_first", has_bias=True):
    """All gradients of :func:`conv2d`: returns (grad_x, grad_weight, grad_bias).

    ``grad_bias`` is None when ``has_bias`` is False; it is summed in float64 alongside
    the weight gradient.
    """
    g, dtype, a = _backward_inputs(grad_y, x, weight, stride, padding, dilation, groups,
                                   data_format)
    return _backward(g, a["grad_y"], a["x"], a["weight"], dtype, True, True,
                     with_bias=bool(has_bias))


def conv2d_grad_input(grad_y, weight, x_shape, stride=1, padding=0, dilation=1, groups=1,
                      data_format="channels_first"):
    """Gradient of conv2d with respect to x (a transposed convolution of grad_y)."""
    g, dtype, a = _backward_inputs(grad_y, None, weight, stride, padding, dilation, groups,
                                   data_format, x_shape=x_shape)
    return _backward(g, a["grad_y"], None, a["weight"], dtype, True, False)[0]


def conv2d_grad_weight(grad_y, x, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                       data_format="channels_first"):
    """Gradient of conv2d with respect to the weight, in the weight's layout."""
    g, dtype, a = _backward_inputs(grad_y, x, None, stride, padding, dilation, groups,
                                   data_format, weight_shape=weight_shape)
    return _backward(g, a["grad_y"], a["x"], None, dtype, False, True)[1]


def conv2d_grad_bias(grad_y, data_format="channels_first"):
    """Gradient of conv2d with respect to the bias: grad_y summed over all but C_out."""
    check_data_format(data_format)
    gy = as_array(grad_y, "grad_y")
    check_ndim(gy, "grad_y", 4)
    dtype = common_float_dtype({"grad_y": gy})
    gy = np.ascontiguousarray(gy, dtype=dtype)
    last = data_format == "channels_last"
    n, c_out = gy.shape[0], gy.shape[3 if last else 1]
    oh, ow = gy.shape[1:3] if last else gy.shape[2:]
    if gy.size == 0:
        return np.zeros(c_out, dtype)
    # The same partial sums as conv2d_backward's fused bias gradient (identical result).
    g = _Geometry(n, 1, 1, 1, c_out, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, oh, ow, last)
    return _grad_bias_kernel(g, gy, dtype, _images_per_partial(g, np.dtype(dtype).itemsize))
