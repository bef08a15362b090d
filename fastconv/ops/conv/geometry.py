"""One convolution's sizes, checked once: ConvGeometry, and the geometries the
algorithms rewrite a call into (a dense layer as a 1x1 convolution, the stride-1 input
gradient as a forward on grad_y).  The shape and padding arithmetic is fastconv/shapes.py,
shared with pooling."""
from dataclasses import dataclass
from functools import cached_property

from ... import _ext
from ..._validation import check_data_format, check_int
from ...shapes import (conv_output_shape, layout_shape, memoised, normalize_pair,
                       normalize_padding, resolve_padding)

__all__ = ["ConvGeometry", "geometry", "check_geometry"]


@dataclass(frozen=True)
class ConvGeometry:
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

    def __hash__(self):  # (a plan-cache key on every call: hashed once)
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(self.astuple())
            object.__setattr__(self, "_hash", h)
        return h

    def astuple(self):
        return (self.n, self.c_in, self.h, self.w, self.c_out, self.groups, self.kh,
                self.kw, self.sy, self.sx, self.dy, self.dx, self.pad_top,
                self.pad_bottom, self.pad_left, self.pad_right, self.oh, self.ow,
                self.channels_last)

    @property
    def x_shape(self):
        return layout_shape(self.n, self.c_in, self.h, self.w, self.channels_last)

    @property
    def y_shape(self):
        return layout_shape(self.n, self.c_out, self.oh, self.ow, self.channels_last)

    @property
    def weight_shape(self):
        cg = self.c_in // self.groups
        if self.channels_last:
            return (self.kh, self.kw, cg, self.c_out)
        return (self.c_out, cg, self.kh, self.kw)

    @property
    def k_group(self):
        return (self.c_in // self.groups) * self.kh * self.kw

    @cached_property
    def c(self):
        """The compiled kernels' Geometry (the C struct, src/_conv2d.pyx), built once
        per checked geometry.  With 1x1 images in and out both layouts are the same
        memory: the kernels then use the channels_last addressing, whose loops run over
        pixels instead of row segments."""
        one_pixel = self.h == self.w == self.oh == self.ow == 1
        return _ext.conv2d.Geometry(
            n=self.n, c_in=self.c_in, h=self.h, w=self.w, c_out=self.c_out, oh=self.oh,
            ow=self.ow, groups=self.groups, kh=self.kh, kw=self.kw, sy=self.sy,
            sx=self.sx, dy=self.dy, dx=self.dx, pad_top=self.pad_top,
            pad_left=self.pad_left, channels_last=self.channels_last or one_pixel)

    @property
    def is_dense(self):
        """One output pixel from a window covering the whole unpadded input (LeNet-5's
        C5): a dense layer, (N, K) @ (K, C_out) with K = C*kh*kw."""
        return ((self.oh, self.ow, self.groups) == (1, 1, 1) and
                (self.kh, self.kw) == (self.h, self.w) and
                not any((self.pad_top, self.pad_bottom, self.pad_left, self.pad_right))
                and self.h * self.w != 1)

    @property
    def x_empty(self):
        return self.n * self.c_in * self.h * self.w == 0

    def as_dense(self, images, rows, channels_last):
        """This dense geometry as a 1x1 convolution of `images` images of 1 x `rows`
        pixels (the batch's rows): the reshapes are free in both layouts, x[n] and
        weight[co] flatten in the same (c, ki, kj) or (ki, kj, c) order."""
        k = self.c_in * self.kh * self.kw
        return ConvGeometry(images, k, 1, rows, self.c_out, 1, 1, 1, 1, 1, 1, 1, 0, 0,
                            0, 0, 1, rows, channels_last)

    def mirrored(self):
        """The stride-1 input gradient as a forward: grad_y (C_out channels) through the
        flipped, transposed kernel with the padding that gives x's size back."""
        pt, pl = (self.kh - 1) * self.dy - self.pad_top, (self.kw - 1) * self.dx - self.pad_left
        pb = (self.kh - 1) * self.dy - self.pad_bottom
        pr = (self.kw - 1) * self.dx - self.pad_right
        return ConvGeometry(self.n, self.c_out, self.oh, self.ow, self.c_in, self.groups,
                            self.kh, self.kw, 1, 1, self.dy, self.dx, pt, pb, pl, pr,
                            self.h, self.w, self.channels_last)

    def describe(self):
        """One line: N C HxW -> K khxkw, stride, padding, dilation, groups, layout."""
        pads = (self.pad_top, self.pad_bottom, self.pad_left, self.pad_right)
        pad = (f"p{pads[0]}" if len(set(pads)) == 1 else "p" + ",".join(map(str, pads)))
        return (f"N{self.n} C{self.c_in} {self.h}x{self.w} -> K{self.c_out} "
                f"{self.kh}x{self.kw} s{self.sy}x{self.sx} {pad} d{self.dy}x{self.dx} "
                f"g{self.groups} -> {self.oh}x{self.ow} "
                f"{'nhwc' if self.channels_last else 'nchw'}")


def check_geometry(x_shape, weight_shape, stride, padding, dilation, groups, data_format):
    """The ConvGeometry of these arguments, or a ValueError/TypeError naming the one at
    fault."""
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
    return ConvGeometry(n, c_in, h, w, c_out, groups, kh, kw, stride[0], stride[1],
                        dilation[0], dilation[1], pt, pb, pl, pr, oh, ow, last)


# Checked geometries by their arguments: a layer calls conv2d with the same ones every
# step, and the same object back keeps its plans' cache keys cheap.
geometry = memoised(check_geometry)
