# Included by _conv2d.pyx (Cython include: one extension module, split by concern).
# Depthwise (groups == C_in): forward, input and weight gradients, both layouts.

cdef int _dw_check(fc_conv g, Py_ssize_t wk_size, str what) except -1:
    if g.groups != g.c or g.cout % g.c:
        raise ValueError(f"the depthwise kernels need groups == C_in dividing C_out, got "
                         f"groups {g.groups}, C_in {g.c}, C_out {g.cout}")
    if wk_size != g.cout * g.kh * g.kw:
        raise ValueError(f"{what} must hold C_out * kh * kw = {g.cout * g.kh * g.kw} "
                         f"weights, got {wk_size}")
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def dw_forward(const floating[::1] x, const floating[::1] wk, const floating[::1] bias,
               floating[::1] y, Geometry geom, int relu=0):
    """Depthwise (groups == C_in): y = conv(x) (+ bias), then ReLU (relu 1) or ReLU6
    (relu RELU6) on each output row or plane while it is in cache; wk (kh*kw, C_out)
    for channels_last, (C_out, kh*kw) for channels_first.  Parallel over output rows
    (channels_last) or planes (channels_first)."""
    cdef fc_conv g = geom.g
    _dw_check(g, wk.shape[0], "wk")
    if relu < 0 or relu > FC_RELU6:
        raise ValueError(f"dw_forward: relu must be 0, 1 or {FC_RELU6}, got {relu}")
    cdef int rc
    with nogil:
        rc = fc_dw_forward(floating is double, _isa, &g, _in(x), _in(wk), _opt(bias),
                           _out(y), relu)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def dw_grad_input(const floating[::1] gy, const floating[::1] wk, floating[::1] gx,
                  Geometry geom):
    """Depthwise input gradient into gx (every element written), any stride; wk as
    dw_forward's."""
    cdef fc_conv g = geom.g
    _dw_check(g, wk.shape[0], "wk")
    cdef int rc
    with nogil:
        rc = fc_dw_grad_input(floating is double, _isa, &g, _in(gy), _in(wk), _out(gx))
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def dw_grad_weight(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                   Geometry geom, Py_ssize_t n_per):
    """Depthwise weight gradient: part (zeroed) gets one partial sum per group of n_per
    images, (groups, kh*kw, C_out) for channels_last, (groups, C_out, kh*kw) for
    channels_first."""
    cdef fc_conv g = geom.g
    _dw_check(g, g.cout * g.kh * g.kw, "part")
    if n_per < 1 or part.shape[0] != (g.n + n_per - 1) // n_per * g.cout * g.kh * g.kw:
        raise ValueError("part must hold one (kh*kw, C_out) partial per group of images")
    cdef int rc
    with nogil:
        rc = fc_dw_grad_weight(floating is double, _isa, &g, _in(x), _in(gy), _out(part),
                               n_per)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def edw_forward(const floating[::1] x, const floating[::1] we, const floating[::1] be,
                const floating[::1] wd, const floating[::1] bd, floating[::1] y,
                Geometry expand, Geometry depthwise, int acte=0, int actd=0):
    """channels_last, inference: y = the depthwise convolution (depthwise, + bd, then
    actd) of the 1x1 convolution (expand, + be, then acte) of x, the expanded tensor
    never written out (src/conv/drivers/expand_dw.h); we packed for the pixel-row tile
    (px_forward's bpk), wd as dw_forward's wk; acte / actd 0, 1 (ReLU) or RELU6.
    Parallel over bands of output rows."""
    cdef fc_conv ge = expand.g
    cdef fc_conv gd = depthwise.g
    cdef int nr = _isa.nr_px_d if floating is double else _isa.nr_px_f
    if not (ge.last and gd.last and ge.kh == ge.kw == 1 and ge.sy == ge.sx == 1 and
            ge.pt == 0 and ge.pl == 0 and ge.groups == 1 and ge.oh == ge.h and
            ge.ow == ge.w):
        raise ValueError("edw_forward: expand must be a channels_last 1x1 convolution "
                         "of stride 1, one group, no padding")
    if (gd.n != ge.n or gd.h != ge.oh or gd.w != ge.ow or gd.c != ge.cout or
            gd.cout != gd.c):
        raise ValueError("edw_forward: depthwise must read expand's output, one "
                         "channel per channel")
    _dw_check(gd, wd.shape[0], "wd")
    if we.shape[0] != (ge.cout + nr - 1) // nr * ge.c * nr:
        raise ValueError(f"edw_forward: we must hold the pixel-row panels of "
                         f"{ge.c} x {ge.cout} weights, got {we.shape[0]} elements")
    if (x.shape[0] != ge.n * ge.h * ge.w * ge.c or
            y.shape[0] != gd.n * gd.oh * gd.ow * gd.cout):
        raise ValueError("edw_forward: x or y does not hold its geometry's elements")
    if ((be is not None and be.shape[0] != ge.cout) or
            (bd is not None and bd.shape[0] != gd.cout)):
        raise ValueError("edw_forward: a bias of the wrong length")
    if not (0 <= acte <= FC_RELU6 and 0 <= actd <= FC_RELU6):
        raise ValueError(f"edw_forward: acte and actd must be 0, 1 or {FC_RELU6}")
    cdef int rc
    with nogil:
        rc = fc_edw_forward(floating is double, _isa, &ge, &gd, _in(x), _in(we), _opt(be),
                            _in(wd), _opt(bd), _out(y), acte, actd)
    _check(rc, "conv2d")
