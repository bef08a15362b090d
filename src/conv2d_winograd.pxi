# Included by _conv2d.pyx (Cython include: one extension module, split by concern).
# Winograd F(2x2)/F(4x4)/F(5x5): tiles, weight transforms, forward, weight gradient.

def winograd_tile(bint half=False):
    """(MR, NR) of the Winograd products (the pixel-row kernel's tile, float32; half:
    its half-width tile, one vector of output channels)."""
    if half:
        return _isa.mr_px1_f, _isa.nr_px1_f
    return _isa.mr_px_f, _isa.nr_px_f


cdef const double *_winograd_G(int tile) except NULL:
    if tile == 2:
        return &fc_wg_G[0][0]
    if tile == 4:
        return &fc_wg4_G[0][0]
    if tile == 5:
        return &fc_wg5_G[0][0]
    raise ValueError(f"Winograd tile must be 2, 4 or 5, got {tile}")


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_weights(const floating[:, :, :, :] w, floating[::1] u, int tile=2,
                     bint half=False):
    """U = G g G^T of a 3x3 kernel w (C_out, C_in, 3, 3) (any strides) into u, packed
    (E, ceil(C_out/NR), C_in, NR) for the selected build's pixel-row tile, zero past
    C_out, for F(tile x tile, 3x3) (tile 2, 4 or 5, E = (tile + 2)^2 entries); computed in
    float64, rounded once (half: for the half-width tile).  Every element of u is
    written.  Parallel over C_in."""

    cdef Py_ssize_t co_n = w.shape[0], c_n = w.shape[1]
    cdef Py_ssize_t nr = ((_isa.nr_px1_d if half else _isa.nr_px_d) if floating is double
                          else (_isa.nr_px1_f if half else _isa.nr_px_f))
    cdef Py_ssize_t ncb = (co_n + nr - 1) // nr
    cdef const double *G = _winograd_G(tile)
    cdef int L = tile + 2
    cdef Py_ssize_t isz = sizeof(floating)
    if u.shape[0] != L * L * ncb * c_n * nr or nr > FC_WG_NRMAX or w.shape[2] != 3 or \
            w.shape[3] != 3:
        raise ValueError(f"winograd_weights: w must be (C_out, C_in, 3, 3) and u hold "
                         f"{L * L * ncb * c_n * nr} elements, got "
                         f"{tuple(w.shape)[:4]} and {u.shape[0]}")
    if co_n * c_n == 0:
        return
    cdef Py_ssize_t so = w.strides[0] // isz, sc = w.strides[1] // isz
    cdef Py_ssize_t si = w.strides[2] // isz, sj = w.strides[3] // isz
    with nogil:
        fc_wg_weights_run(floating is double, _isa, <const void *>&w[0, 0, 0, 0], so, sc,
                          si, sj, co_n, c_n, G, L, _out(u), half)


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_grad_weight_out(const floating[::1] du, floating[::1] gw, Py_ssize_t c_n,
                             Py_ssize_t co_n, Py_ssize_t cpad, Py_ssize_t ldg,
                             int tile=2):
    """grad_w = G^T dU G: du (E, cpad, ldg) (the summed partials of
    winograd_grad_weight) into gw (3, 3, C_in, C_out) (channels_last's weight layout),
    in float64, rounded once.  Parallel over C_in."""

    cdef const double *G = _winograd_G(tile)
    cdef int L = tile + 2
    if du.shape[0] != L * L * cpad * ldg or gw.shape[0] != 9 * c_n * co_n or \
            cpad < c_n or ldg < co_n:
        raise ValueError("winograd_grad_weight_out: du or gw of the wrong size")
    if co_n * c_n == 0:
        return
    with nogil:
        fc_wg_grad_weights_run(floating is double, _in(du), _out(gw), c_n, co_n, cpad, ldg,
                               G, L)


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_forward(const floating[::1] x, const floating[::1] u,
                     const floating[::1] bias, floating[::1] y, Geometry geom,
                     Py_ssize_t block, bint relu=False, bint pool=False, int tile=2,
                     bint half=False):
    """Winograd F(tile x tile, 3x3) forward (tile 2, 4 or 5), channels_last (3x3,
    stride 1, dilation 1, one group): y = conv(x) (+ bias) (then ReLU); u from
    winograd_weights with the same tile.  pool (tile 2 or 4): y is instead the 2x2/2 max
    pool of that, (N, oh // 2, ow // 2, C_out), each tile holding whole pooling windows.
    Parallel over blocks of `block` tiles (a multiple of MR).  half: the products on
    the half-width tile (u from winograd_weights with half)."""

    cdef fc_conv g = geom.g
    cdef int mr = ((_isa.mr_px1_d if half else _isa.mr_px_d) if floating is double
                   else (_isa.mr_px1_f if half else _isa.mr_px_f))
    cdef int nr = ((_isa.nr_px1_d if half else _isa.nr_px_d) if floating is double
                   else (_isa.nr_px1_f if half else _isa.nr_px_f))
    _winograd_G(tile)  # (checks tile)
    if pool and tile % 2:
        raise ValueError(f"winograd_forward: the fused pool needs an even tile, got {tile}")
    cdef Py_ssize_t E = (tile + 2) * (tile + 2), ncb = (g.cout + nr - 1) // nr
    cdef Py_ssize_t want = (g.n * (g.oh // 2) * (g.ow // 2) * g.cout if pool else
                            g.n * g.oh * g.ow * g.cout)
    if y.shape[0] != want or u.shape[0] != E * ncb * g.c * nr or block % mr:
        raise ValueError(f"winograd_forward: y must hold {want} elements and u "
                         f"{E * ncb * g.c * nr}, block be a multiple of {mr}; got "
                         f"{y.shape[0]}, {u.shape[0]}, {block}")
    cdef int rc
    with nogil:
        rc = fc_wg_forward(floating is double, _isa, &g, tile, _in(x), _in(u), _opt(bias),
                           _out(y), block, relu, pool, half)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_grad_weight(const floating[::1] x, const floating[::1] gy,
                         floating[::1] part, Geometry geom, Py_ssize_t n_per,
                         Py_ssize_t block, int tile=2, bint half=False):
    """Partial weight gradients in Winograd's space (src/conv/drivers/winograd.h), one per
    group of n_per images: part (groups, E, cpad, ldg) with cpad = C_in rounded up to
    MR and ldg = C_out rounded up to NR (half: the half-width tile's), zeroed by the
    caller.  Each group's tiles are taken `block` at a time (the transformed x and
    grad_y of a block stay in cache)."""

    cdef fc_conv g = geom.g
    cdef int mr = ((_isa.mr_px1_d if half else _isa.mr_px_d) if floating is double
                   else (_isa.mr_px1_f if half else _isa.mr_px_f))
    cdef int nr = ((_isa.nr_px1_d if half else _isa.nr_px_d) if floating is double
                   else (_isa.nr_px1_f if half else _isa.nr_px_f))
    _winograd_G(tile)  # (checks tile)
    cdef Py_ssize_t E = (tile + 2) * (tile + 2)
    cdef Py_ssize_t ldg = (g.cout + nr - 1) // nr * nr, cpad = (g.c + mr - 1) // mr * mr
    cdef Py_ssize_t items = (g.n + n_per - 1) // n_per, psize = E * cpad * ldg
    if part.shape[0] != items * psize:
        raise ValueError(f"winograd_grad_weight: part must hold {items * psize} "
                         f"elements, got {part.shape[0]}")
    cdef int rc
    with nogil:
        rc = fc_wg_grad_weight(floating is double, _isa, &g, tile, _in(x), _in(gy),
                               _out(part), n_per, block, half)
    _check(rc, "conv2d")
