"""Every threshold the engine's choices depend on (convolutions and the layers' matrix
products), in one frozen object.

Each field says in one line why it has its value; the measurements behind the numbers
are in docs/design/algorithms.md.  ``current()`` is the tuning in force; ``override``
replaces some fields for the code inside a ``with`` block (tests and benchmarks, e.g. a
Winograd tile of 2, 4 or 5), in this thread or task only (a ContextVar).  Plans are
cached per tuning, so an override never sees a plan chosen under another.
"""
import contextlib
import contextvars
import dataclasses
import itertools

__all__ = ["Tuning", "current", "override", "DEFAULT"]

_serials = itertools.count()


@dataclasses.dataclass(frozen=True)
class Tuning:
    # -- weight gradient (every algorithm but Winograd and wide) --
    #: Most bytes of grad_y one partial weight gradient covers (the batch is cut into
    #: groups of whole images, one partial sum each, added in a fixed order: the same
    #: bits on any thread count).
    chunk_bytes: int = 4 << 20
    #: Most partial weight gradients (each is zeroed and summed once per call).
    max_weight_partials: int = 16
    #: Fewest output pixels a partial covers (fewer, larger partials for small images).
    min_partial_pixels: int = 64
    #: Output pixels per packed block of the weight gradient's reduction: its grad_y and
    #: im2col panels stay in the L2 cache.
    weight_block_pixels: int = 256

    # -- Winograd F(2x2)/F(4x4)/F(5x5), 3x3 --
    #: Forward tile side: None picks F(4x4) or F(5x5) by the output size (fewest
    #: transformed values); 2, 4 or 5 asks for that tile.
    winograd_tile: object = None
    #: The same for the input and weight gradients.
    winograd_grad_tile: object = None
    #: Fewest input and output channels: below, the direct kernels win (the transforms
    #: are not paid back by the products).
    winograd_min_channels: int = 16
    #: The weight's transform (on every call) as this many tile rows of products per
    #: transformed value, in the choice of the tile (algorithms/winograd.py tile_for).
    winograd_weight_rows: int = 32
    #: Tiles per forward work item (a multiple of the tile rows MR): their transformed
    #: input stays in the L2 cache.
    winograd_block: int = 36
    #: Tiles per block of the weight gradient, for the same reason.
    winograd_grad_block: int = 36
    #: Most partial weight gradients: each is (tile + 2)^2 / 9 times the weight's size,
    #: zeroed and summed once per call, so fewer pay.
    winograd_partials: int = 4
    #: Fewest images per partial weight gradient.
    winograd_partial_images: int = 16

    # -- pixel-row and wide kernels --
    #: Whether the pixel-row kernels take their half-width tile (one vector of output
    #: channels) where C_out fits in it: the full tile would leave half its columns empty.
    pixel_half: bool = True
    #: Most partial weight gradients of the wide kernels: each ends with horizontal
    #: sums, so fewer, longer runs pay.
    wide_partials: int = 4
    #: Most bytes of planar x and grad_y copies per wide partial (they stay in cache).
    wide_scratch: int = 128 << 10
    #: Multiply-adds the wide kernels' planar copy costs per value copied, in their
    #: choice against the pixel-row tile (a transposing copy of x for every call).
    wide_copy_macs: int = 16

    # -- the strided input gradient as phases (algorithms/phases.py) --
    #: Fewest multiply-adds for the phases: below, their sy * sx forward calls cost
    #: more than the scatter.
    phases_min_macs: int = 1 << 22

    # -- the layers' matrix products (fastconv/_blas.py: Dense, dense convolutions) --
    #: Products below this many multiply-adds run on one BLAS thread: the BLAS's pool
    #: and the kernels' OpenMP threads fight for the cores, and one thread gives the
    #: same bits on any thread count.
    blas_serial_macs: int = 1 << 28
    #: Products from this many multiply-adds (below blas_serial_macs) are cut in two
    #: one-thread halves, the second on a helper thread: both cores, no BLAS pool.
    blas_split_macs: int = 1 << 25
    #: Multiply-adds per band of a product cut into one-thread BLAS products
    #: (algorithms/blas.py): the bands depend on the shape only.
    blas_band_macs: int = 1 << 21
    #: Most bands per product.
    blas_max_bands: int = 8
    #: Most output bytes per band of a product whose output pass (bias, activation)
    #: runs on each band after its product, while in cache.
    blas_band_bytes: int = 256 << 10
    #: Largest weight of a pointwise convolution the pixel-row kernels run (they read
    #: all of it for every image; the BLAS keeps blocks of it in cache).
    pointwise_weight_bytes: int = 256 << 10
    #: Most output channels of a pointwise convolution whose every pass runs on the
    #: BLAS (pointwise_blas): the kernels' output vectors would be mostly empty lanes.
    pointwise_blas_max_c_out: int = 4
    #: Fewest pixels of a pointwise forward whose weight is packed on the call (not
    #: kept packed, as inference keeps it) for the pixel-row kernels to take it: under
    #: this, packing the weight costs more than the few pixels' products, and the BLAS
    #: (pointwise_blas), which packs blocks of it as it goes, runs it.
    pointwise_pack_pixels: int = 256
    #: Fewest weight bytes per output pixel of a call for im2col_blas to take it by
    #: default: each weight value then serves too few pixels for the kernels that
    #: pack (or transform) the weight on every call.
    blas_weight_bytes_per_pixel: int = 16 << 10
    #: Largest column matrix (bytes) im2col_blas makes.
    blas_col_bytes: int = 64 << 20
    #: Fewest multiply-adds per image of a channels_first 1x1 convolution for
    #: planes_blas (one BLAS product per image) to take it by default: below, each
    #: product's call and packing cost more than the channels_first kernels' whole
    #: image.
    planes_min_macs: int = 1 << 20
    #: Most bands a planes_blas batch's products are cut into (images count as
    #: bands): each band is a BLAS call that packs the weight again and is started
    #: under the GIL, so more bands than cores cost more than they balance.
    planes_bands: int = 2
    #: Fewest weight bytes per output pixel of a channels_first call above 1x1 for
    #: planes_blas (one product per image over its column matrices) to take it:
    #: each image's product streams the whole weight (im2col_blas's one product over
    #: the batch streams it once), so it needs more than blas_weight_bytes_per_pixel.
    planes_weight_bytes_per_pixel: int = 32 << 10
    #: Fewest multiply-adds for fastconv's own product kernel: below, the call costs
    #: more than the BLAS's packing it saves.
    kernel_min_macs: int = 1 << 19
    #: Shortest reduction for the kernel (its rows must fill the vector registers).
    kernel_min_k: int = 64
    #: Largest first operand for the kernel: it is read again for every block of
    #: columns, so it should stay in cache.
    kernel_max_input_bytes: int = 2 << 20
    #: Largest operand that is not C-contiguous the kernel takes (copied or read as a
    #: transpose); beyond, the copy costs more than the kernel saves.
    kernel_max_copy_bytes: int = 512 << 10

    def __post_init__(self):
        object.__setattr__(self, "serial", next(_serials))  # (plan-cache key)
        for name in ("winograd_tile", "winograd_grad_tile"):
            tile = getattr(self, name)
            if tile not in (None, 2, 4, 5):
                raise ValueError(f"{name} must be None, 2, 4 or 5, got {tile!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type is int and (type(value) is not int or value < 1):
                raise ValueError(f"{f.name} must be a positive int, got {value!r}")


DEFAULT = Tuning()
_current = contextvars.ContextVar("fastconv_tuning", default=DEFAULT)

#: The tuning in force (a ContextVar's get: cheap enough for every call).
current = _current.get


@contextlib.contextmanager
def override(**fields):
    """Context manager: the current tuning with ``fields`` replaced inside the block.
    Unknown fields raise TypeError naming them."""
    names = {f.name for f in dataclasses.fields(Tuning)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise TypeError(f"override got unknown tuning fields {unknown}; the fields are "
                        f"{sorted(names)}")
    token = _current.set(dataclasses.replace(current(), **fields))
    try:
        yield current()
    finally:
        _current.reset(token)
