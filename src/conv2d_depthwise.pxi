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
