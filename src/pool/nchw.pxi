# The channels_first pooling kernels of src/_pool2d.pyx, included there (they use its
# fused types floating and index_t, _imax / _imin and the SSE2 rows of pool_simd.h).

# --------------------------------------------------------------------------------------
# channels_first: one (n, c) plane at a time
# --------------------------------------------------------------------------------------

cdef void _max_plane_2x2(const floating *xp, floating *yp, index_t *ip, bint store,
                         Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oy, ox
    cdef const floating *r0
    cdef const floating *r1
    cdef floating best, v
    cdef int k, w, nan
    if floating is float and index_t is uint8_t:
        if FC_POOL_SSE2:
            for oy in range(OH):
                fc_max_row_2x2_f32(xp + 2 * oy * W, xp + (2 * oy + 1) * W, yp + oy * OW,
                                   ip + oy * OW if store else NULL, OW)
            return
    for oy in range(OH):
        r0 = xp + 2 * oy * W
        r1 = r0 + W
        if store:
            for ox in range(OW):
                best = r0[2 * ox]
                nan = best != best
                v = r0[2 * ox + 1]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                k = 1 if w else 0
                nan = nan | (v != v)
                v = r1[2 * ox]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                k = 2 if w else k
                nan = nan | (v != v)
                v = r1[2 * ox + 1]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                k = 3 if w else k
                yp[oy * OW + ox] = best
                ip[oy * OW + ox] = <index_t>k
        else:
            for ox in range(OW):
                best = r0[2 * ox]
                nan = best != best
                v = r0[2 * ox + 1]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                nan = nan | (v != v)
                v = r1[2 * ox]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                nan = nan | (v != v)
                v = r1[2 * ox + 1]
                w = (not (v <= best)) & (not nan)
                yp[oy * OW + ox] = v if w else best


cdef void _max_plane(const floating *xp, floating *yp, index_t *ip, bint store,
                     Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                     Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, y0, x0, ylo, yhi, xlo, xhi, k
    cdef floating best, v
    cdef int w, nan
    for oy in range(OH):
        y0 = oy * sy - pt
        ylo = _imax(y0, 0)
        yhi = _imin(y0 + kh, H)
        for ox in range(OW):
            x0 = ox * sx - pl
            xlo = _imax(x0, 0)
            xhi = _imin(x0 + kw, W)
            best = xp[ylo * W + xlo]
            nan = best != best
            k = (ylo - y0) * kw + (xlo - x0)
            for iy in range(ylo, yhi):
                for ix in range(xlo, xhi):
                    v = xp[iy * W + ix]
                    w = (not (v <= best)) & (not nan)
                    best = v if w else best
                    k = (iy - y0) * kw + (ix - x0) if w else k
                    nan = nan | (v != v)
            yp[oy * OW + ox] = best
            if store:
                ip[oy * OW + ox] = <index_t>k


cdef void _avg_plane(const floating *xp, floating *yp,
                     Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                     Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                     Py_ssize_t pt, Py_ssize_t pl, bint include_pad) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, y0, x0, ylo, yhi, xlo, xhi, count
    cdef floating s
    for oy in range(OH):
        y0 = oy * sy - pt
        ylo = _imax(y0, 0)
        yhi = _imin(y0 + kh, H)
        for ox in range(OW):
            x0 = ox * sx - pl
            xlo = _imax(x0, 0)
            xhi = _imin(x0 + kw, W)
            s = 0
            for iy in range(ylo, yhi):
                for ix in range(xlo, xhi):
                    s = s + xp[iy * W + ix]
            count = kh * kw if include_pad else (yhi - ylo) * (xhi - xlo)
            yp[oy * OW + ox] = s / <floating>count


cdef void _avg_plane_2x2(const floating *xp, floating *yp, Py_ssize_t W, Py_ssize_t OH,
                         Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oy, ox
    cdef const floating *r0
    cdef const floating *r1
    for oy in range(OH):
        r0 = xp + 2 * oy * W
        r1 = r0 + W
        for ox in range(OW):
            yp[oy * OW + ox] = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox]
                                + r1[2 * ox + 1]) / <floating>4


cdef void _zero_tails_2x2(floating *gp, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                          Py_ssize_t OW) noexcept nogil:
    """Zero the cells of a plane that no 2x2/2 window covers: with OW = W // 2 that is
    at most the last column (one store per row: a loop here would become one tiny
    memset call per row) and the last row."""
    cdef Py_ssize_t iy
    if 2 * OW < W:
        for iy in range(2 * OH):
            gp[iy * W + W - 1] = 0
    if 2 * OH < H:
        memset(gp + 2 * OH * W, 0, (H - 2 * OH) * W * sizeof(floating))


cdef void _max_back_plane_2x2(const floating *gyp, const index_t *ip, floating *gp,
                              Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH,
                              Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oy, ox
    cdef floating z = 0
    cdef int k
    cdef floating *r0
    cdef floating *r1
    for oy in range(OH):
        r0 = gp + 2 * oy * W
        r1 = r0 + W
        if floating is float and index_t is uint8_t:
            if fc_max_back_row_2x2_f32(gyp + oy * OW, ip + oy * OW, r0, r1, OW):
                continue
        for ox in range(OW):
            # Zero the window, then store the gradient at the winner: an address that
            # depends on the data instead of an unpredictable branch.
            r0[2 * ox] = z
            r0[2 * ox + 1] = z
            r1[2 * ox] = z
            r1[2 * ox + 1] = z
            k = <int>ip[oy * OW + ox] & 3
            r0[(k >> 1) * W + 2 * ox + (k & 1)] = gyp[oy * OW + ox]
    _zero_tails_2x2(gp, H, W, OH, OW)


cdef void _max_back_plane(const floating *gyp, const index_t *ip, floating *gp,
                          Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                          Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                          Py_ssize_t pt, Py_ssize_t pl) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, k
    memset(gp, 0, H * W * sizeof(floating))
    for oy in range(OH):
        for ox in range(OW):
            k = <Py_ssize_t>ip[oy * OW + ox]
            if k < 0 or k >= kh * kw:
                continue
            iy = oy * sy - pt + k // kw
            ix = ox * sx - pl + k % kw
            if iy >= 0 and iy < H and ix >= 0 and ix < W:
                gp[iy * W + ix] = gp[iy * W + ix] + gyp[oy * OW + ox]


cdef void _avg_back_plane_2x2(const floating *gyp, floating *gp, Py_ssize_t H,
                              Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t oy, ox
    cdef floating d
    cdef floating *r0
    cdef floating *r1
    for oy in range(OH):
        r0 = gp + 2 * oy * W
        r1 = r0 + W
        for ox in range(OW):
            d = gyp[oy * OW + ox] / <floating>4
            r0[2 * ox] = d
            r0[2 * ox + 1] = d
            r1[2 * ox] = d
            r1[2 * ox + 1] = d
    _zero_tails_2x2(gp, H, W, OH, OW)


cdef void _avg_back_plane(const floating *gyp, floating *gp,
                          Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW,
                          Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                          Py_ssize_t pt, Py_ssize_t pl, bint include_pad) noexcept nogil:
    cdef Py_ssize_t oy, ox, iy, ix, y0, x0, ylo, yhi, xlo, xhi, count
    cdef floating d
    memset(gp, 0, H * W * sizeof(floating))
    for oy in range(OH):
        y0 = oy * sy - pt
        ylo = _imax(y0, 0)
        yhi = _imin(y0 + kh, H)
        for ox in range(OW):
            x0 = ox * sx - pl
            xlo = _imax(x0, 0)
            xhi = _imin(x0 + kw, W)
            count = kh * kw if include_pad else (yhi - ylo) * (xhi - xlo)
            d = gyp[oy * OW + ox] / <floating>count
            for iy in range(ylo, yhi):
                for ix in range(xlo, xhi):
                    gp[iy * W + ix] = gp[iy * W + ix] + d
