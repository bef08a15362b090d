# cython: language_level=3
"""Compiled conv2d kernels: implicit-GEMM forward, weight and input gradients.

The arithmetic lives in C under src/conv/ (ukernels/: register-blocked micro-kernels for
AVX-512, AVX2+FMA and portable C, chosen at run time through isa_config.h; drivers/: one
file per algorithm, e.g. im2col straight into the packed panels, tile stores with the
bias fused).  This module only splits the work into
items and runs them on OpenMP threads, each thread with its own scratch buffers.  One
thread pool (OpenMP): no BLAS is called, so nothing competes for the cores.

Work items never depend on the thread count (strips of output pixels, whole images,
fixed groups of images), and each item is computed by one thread in a fixed order, so
the results are bit-identical for any number of threads.  Items are handed out
dynamically, which keeps both cores busy when another process takes one of them.

The callers in fastconv/conv.py validate everything; these functions trust their inputs:
flat C-contiguous arrays of one floating dtype and a consistent geometry tuple
(n, c, h, w, c_out, oh, ow, groups, kh, kw, sy, sx, dy, dx, pad_top, pad_left, last).
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memset

from omp_shim cimport fc_get_max_threads

cimport cython

cdef extern from "conv/conv.h" nogil:
    ctypedef void (*fc_kernel_f)(Py_ssize_t kc, const float *A, const float *B, float *C,
                                 Py_ssize_t ldc, int accumulate)
    ctypedef void (*fc_kernel_d)(Py_ssize_t kc, const double *A, const double *B,
                                 double *C, Py_ssize_t ldc, int accumulate)
    ctypedef void (*fc_kib_f)(Py_ssize_t kc, const float *A, const float *xb,
                              const Py_ssize_t *off, float *C, Py_ssize_t ldc)
    ctypedef void (*fc_kib_d)(Py_ssize_t kc, const double *A, const double *xb,
                              const Py_ssize_t *off, double *C, Py_ssize_t ldc)
    ctypedef void (*fc_kia_f)(Py_ssize_t kc, const float *xa, const Py_ssize_t *off,
                              const float *B, float *C, Py_ssize_t ldc, int accumulate)
    ctypedef void (*fc_kia_d)(Py_ssize_t kc, const double *xa, const Py_ssize_t *off,
                              const double *B, double *C, Py_ssize_t ldc, int accumulate)
    ctypedef void (*fc_kpx_f)(Py_ssize_t nseg, Py_ssize_t len, const Py_ssize_t *sega,
                              const Py_ssize_t *segb, const float *xa,
                              const Py_ssize_t *off, Py_ssize_t a_s, const float *B,
                              Py_ssize_t bs, float *C, Py_ssize_t ldc, int accumulate)
    ctypedef void (*fc_kpx_d)(Py_ssize_t nseg, Py_ssize_t len, const Py_ssize_t *sega,
                              const Py_ssize_t *segb, const double *xa,
                              const Py_ssize_t *off, Py_ssize_t a_s, const double *B,
                              Py_ssize_t bs, double *C, Py_ssize_t ldc, int accumulate)
    ctypedef void (*fc_knr_f)(Py_ssize_t nseg, Py_ssize_t C, const Py_ssize_t *sega,
                              const float *xa, const Py_ssize_t *off, const float *W,
                              float *y, Py_ssize_t ldy)
    ctypedef void (*fc_knr_d)(Py_ssize_t nseg, Py_ssize_t C, const Py_ssize_t *sega,
                              const double *xa, const Py_ssize_t *off, const double *W,
                              double *y, Py_ssize_t ldy)
    enum: FC_WCO
    enum: FC_WKJ
    ctypedef void (*fc_kwf_f)(Py_ssize_t K, const Py_ssize_t *off, const float *xs,
                              Py_ssize_t ldr, const float *W, const float *bias, float *y,
                              Py_ssize_t ldy, Py_ssize_t ldc, int nr, int nl, int act,
                              float *yq, Py_ssize_t ldq)
    ctypedef void (*fc_kwf_d)(Py_ssize_t K, const Py_ssize_t *off, const double *xs,
                              Py_ssize_t ldr, const double *W, const double *bias,
                              double *y, Py_ssize_t ldy, Py_ssize_t ldc, int nr, int nl,
                              int act, double *yq, Py_ssize_t ldq)
    const int fc_wide_co[FC_WCO]
    ctypedef void (*fc_kwg_f)(Py_ssize_t nq, const Py_ssize_t *xo, const Py_ssize_t *go,
                              const Py_ssize_t *nl, const float *xa, Py_ssize_t dx,
                              const float *ga, Py_ssize_t ldg, float *out, Py_ssize_t ldo)
    ctypedef void (*fc_kwg_d)(Py_ssize_t nq, const Py_ssize_t *xo, const Py_ssize_t *go,
                              const Py_ssize_t *nl, const double *xa, Py_ssize_t dx,
                              const double *ga, Py_ssize_t ldg, double *out,
                              Py_ssize_t ldo)
    ctypedef void (*fc_kwo_f)(int tile, const float *m, Py_ssize_t ms, const float *bias,
                              float *y, Py_ssize_t rs, Py_ssize_t cs, Py_ssize_t cols,
                              int nrow, int ncol, int relu, int pool)
    ctypedef void (*fc_kwo_d)(int tile, const double *m, Py_ssize_t ms,
                              const double *bias, double *y, Py_ssize_t rs, Py_ssize_t cs,
                              Py_ssize_t cols, int nrow, int ncol, int relu, int pool)
    ctypedef struct fc_isa:
        int id
        const char *name
        int mr_f, nr_f, mr_d, nr_d
        fc_kernel_f kern_f
        fc_kernel_d kern_d
        fc_kib_f kib_f
        fc_kib_d kib_d
        fc_kia_f kia_f
        fc_kia_d kia_d
        int mr_px_f, nr_px_f, mr_px_d, nr_px_d
        fc_kpx_f kpx_f
        fc_kpx_d kpx_d
        int mr_px1_f, nr_px1_f, mr_px1_d, nr_px1_d
        fc_kpx_f kpx1_f
        fc_kpx_d kpx1_d
        int mr_nr, vl_f, vl_d
        fc_knr_f knr_f
        fc_knr_d knr_d
        int wr[FC_WCO]
        int wg_co
        int wpool_f
        fc_kwf_f kwf_f[FC_WCO]
        fc_kwf_d kwf_d[FC_WCO]
        fc_kwg_f kwg_f[FC_WKJ]
        fc_kwg_d kwg_d[FC_WKJ]
        fc_kwo_f wgo_f
    enum: FC_NO
    enum: FC_ACT_NONE, FC_ACT_RELU, FC_ACT_TANH
    ctypedef struct fc_conv:
        Py_ssize_t n, c, h, w, cout, oh, ow, groups, cg, cog, kg
        Py_ssize_t kh, kw, sy, sx, dy, dx, pt, pl
        int last, mr, nr
    ctypedef struct fc_seg:
        Py_ssize_t n, oy, ox0, len, jj0
    ctypedef struct fc_krow:
        Py_ssize_t off, dy, dx
    ctypedef struct fc_col:
        Py_ssize_t base, iy, ix
    void fc_fill_krows(const fc_conv *g, fc_krow *kr)
    const fc_isa *fc_default_isa()
    const fc_isa *fc_best_isa()
    const fc_isa *fc_isa_by_name(const char *name)
    int fc_wide_block(const int *wr, Py_ssize_t left, const fc_conv *g)
    Py_ssize_t fc_wide_rows(const int *wr, Py_ssize_t oh, Py_ssize_t kh, Py_ssize_t dy)
    void *fc_alloc(size_t nbytes)
    void fc_free(void *p)
    void fc_forward_strip_f(const fc_conv *g, fc_kernel_f kern, const float *x,
                            const float *ap, const fc_krow *kr, const float *bias,
                            float *y, Py_ssize_t s, int relu, float *bp, float *tile,
                            fc_seg *seg, fc_col *col)
    void fc_forward_strip_d(const fc_conv *g, fc_kernel_d kern, const double *x,
                            const double *ap, const fc_krow *kr, const double *bias,
                            double *y, Py_ssize_t s, int relu, double *bp, double *tile,
                            fc_seg *seg, fc_col *col)
    void fc_grad_weight_item_f(const fc_conv *g, fc_kernel_f kern, const float *x,
                               const float *gy, const fc_krow *kr, float *part,
                               Py_ssize_t n_lo, Py_ssize_t n_hi, Py_ssize_t grp,
                               Py_ssize_t pcmax, float *ap, float *bp, fc_seg *seg,
                               fc_col *col)
    void fc_grad_weight_item_d(const fc_conv *g, fc_kernel_d kern, const double *x,
                               const double *gy, const fc_krow *kr, double *part,
                               Py_ssize_t n_lo, Py_ssize_t n_hi, Py_ssize_t grp,
                               Py_ssize_t pcmax, double *ap, double *bp, fc_seg *seg,
                               fc_col *col)
    void fc_grad_input_images_f(const fc_conv *g, fc_kernel_f kern, const float *gy,
                                const float *at, float *gx, Py_ssize_t n_lo,
                                Py_ssize_t n_hi, float *bp, float *tile, fc_seg *seg)
    void fc_grad_input_images_d(const fc_conv *g, fc_kernel_d kern, const double *gy,
                                const double *at, double *gx, Py_ssize_t n_lo,
                                Py_ssize_t n_hi, double *bp, double *tile, fc_seg *seg)
    void fc_bias_grad_item_f(const fc_conv *g, const float *gy, double *bsum,
                             Py_ssize_t n_lo, Py_ssize_t n_hi)
    void fc_bias_grad_item_d(const fc_conv *g, const double *gy, double *bsum,
                             Py_ssize_t n_lo, Py_ssize_t n_hi)
    void fc_forward_shift_image_f(const fc_conv *g, fc_kib_f kib, const float *x,
                                  const float *ap, const Py_ssize_t *off,
                                  const float *bias, float *y, Py_ssize_t n, int relu,
                                  float *xp, float *tile, fc_seg *seg)
    void fc_forward_shift_image_d(const fc_conv *g, fc_kib_d kib, const double *x,
                                  const double *ap, const Py_ssize_t *off,
                                  const double *bias, double *y, Py_ssize_t n, int relu,
                                  double *xp, double *tile, fc_seg *seg)
    void fc_grad_weight_shift_item_f(const fc_conv *g, fc_kia_f kia, const float *x,
                                     const float *gy, const Py_ssize_t *off, float *part,
                                     Py_ssize_t n_lo, Py_ssize_t n_hi, Py_ssize_t grp,
                                     Py_ssize_t pcmax, float *xp, float *gyt)
    void fc_grad_weight_shift_item_d(const fc_conv *g, fc_kia_d kia, const double *x,
                                     const double *gy, const Py_ssize_t *off,
                                     double *part, Py_ssize_t n_lo, Py_ssize_t n_hi,
                                     Py_ssize_t grp, Py_ssize_t pcmax, double *xp,
                                     double *gyt)
    void fc_px_forward_image_f(const fc_conv *g, fc_kpx_f kpx, const float *x,
                               const float *bpk, const float *bias, float *y, Py_ssize_t n,
                               int relu, float *xp, float *tile, Py_ssize_t *idx)
    void fc_px_forward_image_d(const fc_conv *g, fc_kpx_d kpx, const double *x,
                               const double *bpk, const double *bias, double *y,
                               Py_ssize_t n, int relu, double *xp, double *tile,
                               Py_ssize_t *idx)
    void fc_dense_block_f(fc_kpx_f kpx, Py_ssize_t mr, Py_ssize_t nr, const float *x,
                          Py_ssize_t m, Py_ssize_t k, const float *w, const float *bias,
                          float *y, Py_ssize_t n, Py_ssize_t co0, Py_ssize_t cols,
                          int relu, int x_t, int w_t, float *wb, float *tile,
                          Py_ssize_t *off)
    void fc_dense_block_d(fc_kpx_d kpx, Py_ssize_t mr, Py_ssize_t nr, const double *x,
                          Py_ssize_t m, Py_ssize_t k, const double *w, const double *bias,
                          double *y, Py_ssize_t n, Py_ssize_t co0, Py_ssize_t cols,
                          int relu, int x_t, int w_t, double *wb, double *tile,
                          Py_ssize_t *off)
    void fc_max_pool_2x2_image_f(const float *y, Py_ssize_t oh, Py_ssize_t ow,
                                 Py_ssize_t c, float *yq)
    void fc_max_pool_2x2_image_d(const double *y, Py_ssize_t oh, Py_ssize_t ow,
                                 Py_ssize_t c, double *yq)
    void fc_act_pool_image_f(float *y, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t cout,
                             int act, float *yq)
    void fc_act_pool_image_d(double *y, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t cout,
                             int act, double *yq)
    void fc_px_grad_weight_item_f(const fc_conv *g, fc_kpx_f kpx, const float *x,
                                  const float *gy, float *part, Py_ssize_t n_lo,
                                  Py_ssize_t n_hi, float *xp, float *gyp, Py_ssize_t *idx)
    void fc_px_grad_weight_item_d(const fc_conv *g, fc_kpx_d kpx, const double *x,
                                  const double *gy, double *part, Py_ssize_t n_lo,
                                  Py_ssize_t n_hi, double *xp, double *gyp,
                                  Py_ssize_t *idx)
    void fc_px_forward_narrow_image_f(const fc_conv *g, fc_knr_f knr, const float *x,
                                      const float *wn, const float *bias, float *y,
                                      Py_ssize_t n, int relu, float *xp, float *tile,
                                      Py_ssize_t *idx)
    void fc_px_forward_narrow_image_d(const fc_conv *g, fc_knr_d knr, const double *x,
                                      const double *wn, const double *bias, double *y,
                                      Py_ssize_t n, int relu, double *xp, double *tile,
                                      Py_ssize_t *idx)
    void fc_wd_forward_image_f(const fc_conv *g, const fc_kwf_f *kwf, const int *wr,
                               const int *blk, int nblk, int inkernel,
                               Py_ssize_t vl, const float *x, const float *wpk,
                               const Py_ssize_t *off, const float *bias, float *y,
                               Py_ssize_t n, int act, int pool, float *yq, float *xs,
                               float *yp, Py_ssize_t Hs, Py_ssize_t Ws)
    void fc_wd_forward_image_d(const fc_conv *g, const fc_kwf_d *kwf, const int *wr,
                               const int *blk, int nblk, int inkernel,
                               Py_ssize_t vl, const double *x, const double *wpk,
                               const Py_ssize_t *off, const double *bias, double *y,
                               Py_ssize_t n, int act, int pool, double *yq, double *xs,
                               double *yp, Py_ssize_t Hs, Py_ssize_t Ws)
    void fc_avg_tanh_grad_image_f(const float *gp, const float *a, float *gy,
                                  Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t cout)
    void fc_avg_tanh_grad_image_d(const double *gp, const double *a, double *gy,
                                  Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t cout)
    void fc_wd_grad_weight_item_f(const fc_conv *g, const fc_kwg_f *kwg, Py_ssize_t gco,
                                  Py_ssize_t vl, const float *x, const float *gy,
                                  float *part, Py_ssize_t n_lo, Py_ssize_t n_hi,
                                  float *xs, float *gs, Py_ssize_t *tab)
    void fc_wd_grad_weight_item_d(const fc_conv *g, const fc_kwg_d *kwg, Py_ssize_t gco,
                                  Py_ssize_t vl, const double *x, const double *gy,
                                  double *part, Py_ssize_t n_lo, Py_ssize_t n_hi,
                                  double *xs, double *gs, Py_ssize_t *tab)
    const double fc_wg_G[4][3]
    const double fc_wg4_G[6][3]
    const double fc_wg5_G[7][3]
    enum: FC_WG_NRMAX
    void fc_wg_weights_f(const float *w, Py_ssize_t so, Py_ssize_t sc, Py_ssize_t si,
                         Py_ssize_t sj, Py_ssize_t co_n, Py_ssize_t c_n, const double *G,
                         int L, Py_ssize_t nr, float *u, Py_ssize_t c_lo,
                         Py_ssize_t c_hi) noexcept nogil
    void fc_wg_weights_d(const double *w, Py_ssize_t so, Py_ssize_t sc, Py_ssize_t si,
                         Py_ssize_t sj, Py_ssize_t co_n, Py_ssize_t c_n, const double *G,
                         int L, Py_ssize_t nr, double *u, Py_ssize_t c_lo,
                         Py_ssize_t c_hi) noexcept nogil
    void fc_wg_grad_weights_f(const float *du, Py_ssize_t cpad, Py_ssize_t ldg,
                              Py_ssize_t co_n, Py_ssize_t c_n, const double *G, int L,
                              float *gw, Py_ssize_t c_lo, Py_ssize_t c_hi) noexcept nogil
    void fc_wg_grad_weights_d(const double *du, Py_ssize_t cpad, Py_ssize_t ldg,
                              Py_ssize_t co_n, Py_ssize_t c_n, const double *G, int L,
                              double *gw, Py_ssize_t c_lo, Py_ssize_t c_hi) noexcept nogil
    void fc_wg_forward_block_f(const fc_conv *g, fc_kpx_f kpx, int tile, const float *x,
                               const float *zero, const float *u, const float *bias,
                               float *y, Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t th,
                               Py_ssize_t tw, int relu, int pool, fc_kwo_f wo, float *v,
                               float *m, Py_ssize_t *off)
    void fc_wg_forward_block_d(const fc_conv *g, fc_kpx_d kpx, int tile, const double *x,
                               const double *zero, const double *u, const double *bias,
                               double *y, Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t th,
                               Py_ssize_t tw, int relu, int pool, fc_kwo_d wo, double *v,
                               double *m, Py_ssize_t *off)
    void fc_wg_grad_weight_block_f(const fc_conv *g, fc_kpx_f kpx, int tile,
                                   const float *x,
                                   const float *gy, const float *zero, float *part,
                                   Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t th,
                                   Py_ssize_t tw, float *v, float *mg, Py_ssize_t *off)
    void fc_wg_grad_weight_block_d(const fc_conv *g, fc_kpx_d kpx, int tile,
                                   const double *x,
                                   const double *gy, const double *zero, double *part,
                                   Py_ssize_t t0, Py_ssize_t cnt, Py_ssize_t th,
                                   Py_ssize_t tw, double *v, double *mg, Py_ssize_t *off)

ctypedef fused floating:
    float
    double

cdef const fc_isa *_isa = fc_default_isa()


def isa():
    """Name of the micro-kernel build in use: 'avx512', 'avx2' or 'portable'."""
    return _isa.name.decode()


def best_isa():
    """The best build this CPU supports (what runs unless FASTCONV_DISABLE_SIMD=1)."""
    return fc_best_isa().name.decode()


def set_isa(str name):
    """Select the micro-kernel build by name; ValueError if this CPU cannot run it."""
    global _isa
    cdef const fc_isa *p = fc_isa_by_name(name.encode())
    if p == NULL:
        raise ValueError(f"isa must be one of the builds this CPU supports (best: "
                         f"{best_isa()!r}; 'portable' always works), got {name!r}")
    _isa = p


def micro_tile(bint double):
    """(MR, NR) of the selected build for float64 (double=True) or float32."""
    if double:
        return _isa.mr_d, _isa.nr_d
    return _isa.mr_f, _isa.nr_f


def narrow_tile(bint double):
    """(rows, output channels per tile, vector length) of the selected build's narrow
    kernel (channels_last forward with few output channels)."""
    return _isa.mr_nr, FC_NO, (_isa.vl_d if double else _isa.vl_f)


def pixel_tile(bint double, bint half=False):
    """(MR, NR) of the selected build's pixel-row kernel (channels_last paths); half:
    of its half-width tile (one vector of columns)."""
    if half:
        return (_isa.mr_px1_d, _isa.nr_px1_d) if double else (_isa.mr_px1_f, _isa.nr_px1_f)
    if double:
        return _isa.mr_px_d, _isa.nr_px_d
    return _isa.mr_px_f, _isa.nr_px_f


cdef void _px_kernels(bint double, bint half, int *mr, int *nr, fc_kpx_f *kf,
                      fc_kpx_d *kd) noexcept:
    """The pixel-row tile and kernels that pixel_tile(double, half) describes."""
    if half:
        mr[0] = _isa.mr_px1_d if double else _isa.mr_px1_f
        nr[0] = _isa.nr_px1_d if double else _isa.nr_px1_f
        kf[0], kd[0] = _isa.kpx1_f, _isa.kpx1_d
    else:
        mr[0] = _isa.mr_px_d if double else _isa.mr_px_f
        nr[0] = _isa.nr_px_d if double else _isa.nr_px_f
        kf[0], kd[0] = _isa.kpx_f, _isa.kpx_d


def wide_tile(bint double):
    """(vector length, output channels per weight-gradient call) of the wide kernels
    for the selected ISA."""
    return (_isa.vl_d if double else _isa.vl_f), _isa.wg_co


cdef void _fill(fc_conv *g, tuple geom, int mr, int nr) except *:
    (g.n, g.c, g.h, g.w, g.cout, g.oh, g.ow, g.groups, g.kh, g.kw, g.sy, g.sx, g.dy, g.dx,
     g.pt, g.pl, g.last) = geom
    g.cg = g.c // g.groups
    g.cog = g.cout // g.groups
    g.kg = g.cg * g.kh * g.kw
    g.mr = mr
    g.nr = nr


# Below this many multiply-adds a call runs on one thread: waking a second thread costs
# tens of microseconds.  (Work items and results do not depend on the thread count.)
cdef double _MIN_PARALLEL_MACS = 4.0e5


cdef int _threads(double macs, Py_ssize_t items) noexcept:
    cdef int t = fc_get_max_threads()
    if macs < _MIN_PARALLEL_MACS:
        return 1
    if items < t:
        t = <int>items
    return t if t > 1 else 1


cdef fc_krow *_krows(const fc_conv *g) except NULL:
    cdef fc_krow *kr = <fc_krow *>fc_alloc((g.kg + g.mr + g.nr) * sizeof(fc_krow))
    if kr == NULL:
        raise MemoryError("conv2d: could not allocate the im2col row table")
    fc_fill_krows(g, kr)
    return kr


cdef Py_ssize_t *_shift_offsets(const fc_conv *g, Py_ssize_t length) except NULL:
    """off[k] = c*Hp*Wp + ki*dy*Wp + kj*dx for k < kg, then zeros up to length."""
    cdef Py_ssize_t wp = g.ow + (g.kw - 1) * g.dx, hp = g.oh + (g.kh - 1) * g.dy
    cdef Py_ssize_t c, ki, kj, k = 0
    cdef Py_ssize_t *off = <Py_ssize_t *>fc_alloc(length * sizeof(Py_ssize_t))
    if off == NULL:
        raise MemoryError("conv2d: could not allocate the offset table")
    for c in range(g.cg):
        for ki in range(g.kh):
            for kj in range(g.kw):
                off[k] = c * hp * wp + ki * g.dy * wp + kj * g.dx
                k += 1
    while k < length:
        off[k] = 0
        k += 1
    return off


@cython.boundscheck(False)
@cython.wraparound(False)
def forward(const floating[::1] x, const floating[::1] ap, const floating[::1] bias,
            floating[::1] y, tuple geom, bint relu=False):
    """y = conv(x) (+ bias) (then ReLU), flat arrays; ap = packed weights
    (groups, ceil(cog / MR), kg, MR).  Parallel over strips of NR output pixels."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef int mr = _isa.mr_d if dbl else _isa.mr_f
    cdef int nr = _isa.nr_d if dbl else _isa.nr_f
    cdef fc_kernel_f kf = _isa.kern_f
    cdef fc_kernel_d kd = _isa.kern_d
    _fill(&g, geom, mr, nr)
    cdef Py_ssize_t total = g.n * g.oh * g.ow
    cdef Py_ssize_t nstrips = (total + nr - 1) // nr, s
    cdef const floating *bp_bias = NULL
    if bias is not None:
        bp_bias = &bias[0]
    cdef const floating *px = &x[0]
    cdef const floating *pa = &ap[0]
    cdef floating *py = &y[0]
    cdef floating *bp
    cdef floating *tile
    cdef fc_seg *seg
    cdef fc_col *col
    cdef int fail[1]
    cdef int nt = _threads(<double>total * g.cout * g.kg, nstrips)
    cdef fc_krow *kr = _krows(&g)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        bp = <floating *>fc_alloc(g.kg * nr * sizeof(floating))
        tile = <floating *>fc_alloc(mr * nr * sizeof(floating))
        seg = <fc_seg *>fc_alloc(nr * sizeof(fc_seg))
        col = <fc_col *>fc_alloc(nr * sizeof(fc_col))
        if bp == NULL or tile == NULL or seg == NULL or col == NULL:
            fail[0] = 1
        for s in prange(nstrips, schedule="dynamic", chunksize=2):
            if fail[0] == 0:
                if floating is float:
                    fc_forward_strip_f(&g, kf, px, pa, kr, bp_bias, py, s, relu, bp, tile,
                                       seg, col)
                else:
                    fc_forward_strip_d(&g, kd, px, pa, kr, bp_bias, py, s, relu, bp, tile,
                                       seg, col)
        fc_free(bp)
        fc_free(tile)
        fc_free(seg)
        fc_free(col)
    fc_free(kr)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_weight(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                tuple geom, Py_ssize_t n_per, Py_ssize_t pcmax):
    """Partial weight gradients, one per group of n_per images: part is zeroed,
    (n_igroups, groups, ceil(cog/MR)*MR, ceil(kg/NR)*NR).  Parallel over (image group,
    conv group) items."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef int mr = _isa.mr_d if dbl else _isa.mr_f
    cdef int nr = _isa.nr_d if dbl else _isa.nr_f
    cdef fc_kernel_f kf = _isa.kern_f
    cdef fc_kernel_d kd = _isa.kern_d
    _fill(&g, geom, mr, nr)
    cdef Py_ssize_t nig = (g.n + n_per - 1) // n_per
    cdef Py_ssize_t cog_pad = (g.cog + mr - 1) // mr * mr
    cdef Py_ssize_t kg_pad = (g.kg + nr - 1) // nr * nr
    cdef Py_ssize_t part_stride = g.groups * cog_pad * kg_pad
    cdef Py_ssize_t items = nig * g.groups, it, ig, grp, n_lo, n_hi
    cdef const floating *px = &x[0]
    cdef const floating *pgy = &gy[0]
    cdef floating *pp = &part[0]
    cdef floating *ap
    cdef floating *bp
    cdef fc_seg *seg
    cdef fc_col *col
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout * g.kg, items)
    cdef fc_krow *kr = _krows(&g)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        ap = <floating *>fc_alloc(cog_pad * pcmax * sizeof(floating))
        bp = <floating *>fc_alloc(pcmax * nr * sizeof(floating))
        seg = <fc_seg *>fc_alloc(pcmax * sizeof(fc_seg))
        col = <fc_col *>fc_alloc(pcmax * sizeof(fc_col))
        if ap == NULL or bp == NULL or seg == NULL or col == NULL:
            fail[0] = 1
        for it in prange(items, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                ig = it // g.groups
                grp = it % g.groups
                n_lo = ig * n_per
                n_hi = n_lo + n_per
                if n_hi > g.n:
                    n_hi = g.n
                if floating is float:
                    fc_grad_weight_item_f(&g, kf, px, pgy, kr, pp + ig * part_stride, n_lo,
                                          n_hi, grp, pcmax, ap, bp, seg, col)
                else:
                    fc_grad_weight_item_d(&g, kd, px, pgy, kr, pp + ig * part_stride, n_lo,
                                          n_hi, grp, pcmax, ap, bp, seg, col)
        fc_free(ap)
        fc_free(bp)
        fc_free(seg)
        fc_free(col)
    fc_free(kr)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_input_scatter(const floating[::1] gy, const floating[::1] at, floating[::1] gx,
                       tuple geom, Py_ssize_t n_per):
    """gx (zeroed) += scatter of W^T gy, any stride; at = packed transposed weights
    (groups, ceil(kg/MR), cog, MR).  Parallel over groups of n_per whole images (no two
    threads add into the same element)."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef int mr = _isa.mr_d if dbl else _isa.mr_f
    cdef int nr = _isa.nr_d if dbl else _isa.nr_f
    cdef fc_kernel_f kf = _isa.kern_f
    cdef fc_kernel_d kd = _isa.kern_d
    _fill(&g, geom, mr, nr)
    cdef Py_ssize_t it, n_lo, n_hi, items = (g.n + n_per - 1) // n_per
    cdef const floating *pgy = &gy[0]
    cdef const floating *pa = &at[0]
    cdef floating *pgx = &gx[0]
    cdef floating *bp
    cdef floating *tile
    cdef fc_seg *seg
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout * g.kg, items)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        bp = <floating *>fc_alloc(g.cog * nr * sizeof(floating))
        tile = <floating *>fc_alloc(mr * nr * sizeof(floating))
        seg = <fc_seg *>fc_alloc(nr * sizeof(fc_seg))
        if bp == NULL or tile == NULL or seg == NULL:
            fail[0] = 1
        for it in prange(items, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                n_lo = it * n_per
                n_hi = n_lo + n_per
                if n_hi > g.n:
                    n_hi = g.n
                if floating is float:
                    fc_grad_input_images_f(&g, kf, pgy, pa, pgx, n_lo, n_hi, bp, tile, seg)
                else:
                    fc_grad_input_images_d(&g, kd, pgy, pa, pgx, n_lo, n_hi, bp, tile, seg)
        fc_free(bp)
        fc_free(tile)
        fc_free(seg)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_bias(const floating[::1] gy, double[::1] bsum, tuple geom, Py_ssize_t n_per):
    """Partial bias gradients (n_igroups, C_out), zeroed, one per group of n_per images
    (float64 sums in a fixed order, see fc_bias_grad_item)."""
    cdef fc_conv g
    _fill(&g, geom, 1, 1)
    cdef Py_ssize_t nig = (g.n + n_per - 1) // n_per, ig, n_hi
    cdef const floating *pgy = &gy[0]
    cdef double *pb = &bsum[0]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout / 4, nig)
    for ig in prange(nig, nogil=True, schedule="dynamic", chunksize=1, num_threads=nt):
        n_hi = (ig + 1) * n_per
        if n_hi > g.n:
            n_hi = g.n
        if floating is float:
            fc_bias_grad_item_f(&g, pgy, pb + ig * g.cout, ig * n_per, n_hi)
        else:
            fc_bias_grad_item_d(&g, pgy, pb + ig * g.cout, ig * n_per, n_hi)


cdef double *_bias_partials(double[::1] bsum, Py_ssize_t groups,
                            Py_ssize_t cout) except? NULL:
    """bsum's data (groups x cout partial bias sums, checked), or NULL without bsum."""
    if bsum is None:
        return NULL
    if bsum.shape[0] != groups * cout:
        raise ValueError(f"bsum must hold {groups * cout} partial sums, "
                         f"got {bsum.shape[0]}")
    return &bsum[0]


@cython.boundscheck(False)
@cython.wraparound(False)
def forward_shift(const floating[::1] x, const floating[::1] ap,
                  const floating[::1] bias, floating[::1] y, tuple geom,
                  bint relu=False):
    """Stride-1 forward through a padded copy of each image (see src/conv/drivers/shifted.h).
    Parallel over images."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef int mr = _isa.mr_d if dbl else _isa.mr_f
    cdef int nr = _isa.nr_d if dbl else _isa.nr_f
    cdef fc_kib_f kf = _isa.kib_f
    cdef fc_kib_d kd = _isa.kib_d
    _fill(&g, geom, mr, nr)
    cdef Py_ssize_t wp = g.ow + (g.kw - 1) * g.dx, hp = g.oh + (g.kh - 1) * g.dy
    cdef Py_ssize_t xp_len = g.cg * hp * wp + (g.kw - 1) * g.dx + nr, n
    cdef const floating *bp_bias = NULL
    if bias is not None:
        bp_bias = &bias[0]
    cdef const floating *px = &x[0]
    cdef const floating *pa = &ap[0]
    cdef floating *py = &y[0]
    cdef floating *xp
    cdef floating *tile
    cdef fc_seg *seg
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * wp * g.cout * g.kg, g.n)
    cdef Py_ssize_t *po = _shift_offsets(&g, g.kg)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        xp = <floating *>fc_alloc(xp_len * sizeof(floating))
        tile = <floating *>fc_alloc(mr * nr * sizeof(floating))
        seg = <fc_seg *>fc_alloc(nr * sizeof(fc_seg))
        if xp == NULL or tile == NULL or seg == NULL:
            fail[0] = 1
        for n in prange(g.n, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                if floating is float:
                    fc_forward_shift_image_f(&g, kf, px, pa, po, bp_bias, py, n, relu, xp,
                                             tile, seg)
                else:
                    fc_forward_shift_image_d(&g, kd, px, pa, po, bp_bias, py, n, relu, xp,
                                             tile, seg)
        fc_free(xp)
        fc_free(tile)
        fc_free(seg)
    fc_free(po)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_weight_shift(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                      tuple geom, Py_ssize_t n_per, Py_ssize_t pcmax):
    """Stride-1 partial weight gradients, one per group of n_per images: part zeroed,
    (n_igroups, groups, ceil(kg/MR)*MR, ceil(cog/NR)*NR) -- rows k, columns co.
    Parallel over (image group, conv group)."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef int mr = _isa.mr_d if dbl else _isa.mr_f
    cdef int nr = _isa.nr_d if dbl else _isa.nr_f
    cdef fc_kia_f kf = _isa.kia_f
    cdef fc_kia_d kd = _isa.kia_d
    _fill(&g, geom, mr, nr)
    cdef Py_ssize_t wp = g.ow + (g.kw - 1) * g.dx, hp = g.oh + (g.kh - 1) * g.dy
    cdef Py_ssize_t xp_len = g.cg * hp * wp + (g.kw - 1) * g.dx + nr
    cdef Py_ssize_t cog_pad = (g.cog + nr - 1) // nr * nr
    cdef Py_ssize_t kg_pad = (g.kg + mr - 1) // mr * mr
    cdef Py_ssize_t gyt_len = cog_pad * g.oh * wp
    cdef Py_ssize_t nig = (g.n + n_per - 1) // n_per
    cdef Py_ssize_t part_stride = g.groups * kg_pad * cog_pad
    cdef Py_ssize_t items = nig * g.groups, it, ig, grp, n_lo, n_hi
    cdef const floating *px = &x[0]
    cdef const floating *pgy = &gy[0]
    cdef floating *pp = &part[0]
    cdef floating *xp
    cdef floating *gyt
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * wp * g.cout * g.kg, items)
    cdef Py_ssize_t *po = _shift_offsets(&g, kg_pad)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        xp = <floating *>fc_alloc(xp_len * sizeof(floating))
        gyt = <floating *>fc_alloc(gyt_len * sizeof(floating))
        if xp == NULL or gyt == NULL:
            fail[0] = 1
        for it in prange(items, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                ig = it // g.groups
                grp = it % g.groups
                n_lo = ig * n_per
                n_hi = n_lo + n_per
                if n_hi > g.n:
                    n_hi = g.n
                if floating is float:
                    fc_grad_weight_shift_item_f(&g, kf, px, pgy, po, pp + ig * part_stride,
                                                n_lo, n_hi, grp, pcmax, xp, gyt)
                else:
                    fc_grad_weight_shift_item_d(&g, kd, px, pgy, po, pp + ig * part_stride,
                                                n_lo, n_hi, grp, pcmax, xp, gyt)
        fc_free(xp)
        fc_free(gyt)
    fc_free(po)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


cdef Py_ssize_t _px_xp_len(const fc_conv *g) noexcept nogil:
    """Elements of the zero-padded image copy of the pixel-row paths (fc_px_image)."""
    return ((g.oh - 1) * g.sy + (g.kh - 1) * g.dy + 1) * \
        ((g.ow - 1) * g.sx + (g.kw - 1) * g.dx + 1) * g.c


@cython.boundscheck(False)
@cython.wraparound(False)
def px_forward(const floating[::1] x, const floating[::1] bpk, const floating[::1] bias,
               floating[::1] y, tuple geom, bint relu=False, bint half=False,
               bint max_pool=False, bint tanh=False, bint avg_pool=False,
               floating[::1] yq=None):
    """channels_last, one group: y = conv(x) (+ bias) (then ReLU, or tanh in float32) by
    the pixel-row kernel (half: its half-width tile); bpk = weights packed
    (ceil(cout/NR), kg, NR), k = (ki, kj, c), NR of that tile.  max_pool / avg_pool: y
    is instead the 2x2/2 max / average pool of that, (N, oh // 2, ow // 2, C_out), each
    image pooled from a per-thread copy while it is in cache (the full-size output is
    never written); yq (without a pool): the average pool as well as y.  Parallel over
    images."""
    cdef fc_conv g
    cdef int mr, nr
    cdef fc_kpx_f kf
    cdef fc_kpx_d kd
    cdef int act = FC_ACT_TANH if tanh else FC_ACT_NONE  # (ReLU: in the kernel)
    if tanh and (relu or floating is double):
        raise ValueError("px_forward: tanh is for float32 alone, without relu")
    if max_pool and avg_pool:
        raise ValueError("px_forward: max_pool or avg_pool, not both")
    cdef bint pooled = max_pool or avg_pool
    _px_kernels(floating is double, half, &mr, &nr, &kf, &kd)
    _fill(&g, geom, mr, nr)
    cdef Py_ssize_t xp_len = _px_xp_len(&g), n
    cdef Py_ssize_t idx_len = (g.oh * g.ow + mr - 1) // mr * mr + 2 * g.kh * g.kw
    cdef Py_ssize_t img = g.oh * g.ow * g.cout, x_img = g.h * g.w * g.c
    cdef Py_ssize_t q_img = (g.oh // 2) * (g.ow // 2) * g.cout
    if y.shape[0] != g.n * (q_img if pooled else img):
        raise ValueError(f"px_forward: y must hold {g.n * (q_img if pooled else img)} "
                         f"elements, got {y.shape[0]}")
    if yq is not None and (pooled or yq.shape[0] != g.n * q_img):
        raise ValueError(f"px_forward: yq must hold {g.n * q_img} elements, without a "
                         f"pool")
    cdef floating *pq = &yq[0] if yq is not None and q_img > 0 else NULL
    cdef bint post = act != FC_ACT_NONE or avg_pool or pq != NULL
    cdef const floating *bp_bias = NULL
    if bias is not None:
        bp_bias = &bias[0]
    cdef const floating *px = &x[0]
    cdef const floating *pb = &bpk[0]
    cdef floating *py = &y[0]
    cdef floating *xp
    cdef floating *tile
    cdef floating *yimg
    cdef floating *out
    cdef floating *qout
    cdef Py_ssize_t *idx
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout * g.kg, g.n)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        xp = <floating *>fc_alloc(xp_len * sizeof(floating))
        tile = <floating *>fc_alloc(mr * nr * sizeof(floating))
        idx = <Py_ssize_t *>fc_alloc(idx_len * sizeof(Py_ssize_t))
        yimg = <floating *>fc_alloc((img if pooled else 1) * sizeof(floating))
        if xp == NULL or tile == NULL or idx == NULL or yimg == NULL:
            fail[0] = 1
        for n in prange(g.n, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                # pooled: image n as image 0 of x + n * x_img, written to yimg
                out = yimg if pooled else py + n * img
                qout = py + n * q_img if avg_pool else (pq + n * q_img if pq != NULL
                                                        else NULL)
                if floating is float:
                    fc_px_forward_image_f(&g, kf, px + n * x_img if pooled else px, pb,
                                          bp_bias, yimg if pooled else py,
                                          0 if pooled else n, relu, xp, tile, idx)
                    if post:
                        fc_act_pool_image_f(out, g.oh, g.ow, g.cout, act, qout)
                    if max_pool:
                        fc_max_pool_2x2_image_f(yimg, g.oh, g.ow, g.cout, py + n * q_img)
                else:
                    fc_px_forward_image_d(&g, kd, px + n * x_img if pooled else px, pb,
                                          bp_bias, yimg if pooled else py,
                                          0 if pooled else n, relu, xp, tile, idx)
                    if post:
                        fc_act_pool_image_d(out, g.oh, g.ow, g.cout, act, qout)
                    if max_pool:
                        fc_max_pool_2x2_image_d(yimg, g.oh, g.ow, g.cout, py + n * q_img)
        fc_free(xp)
        fc_free(tile)
        fc_free(idx)
        fc_free(yimg)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def dense_forward(const floating[:, ::1] x, const floating[:, ::1] w,
                  const floating[::1] bias, floating[:, ::1] y, bint relu=False,
                  bint x_t=False, bint w_t=False):
    """y = x @ w (+ bias) (then ReLU), x (m, k), w (k, n), y (m, n), all non-empty: the
    pixel-row kernel on blocks of NR columns of w (each copied once into a per-thread
    buffer) and x's rows read in place, each output the kernel's sum over k in order
    whatever the thread count.  x_t: x is given as x.T, (k, m) row-major; w_t: w as
    w.T, (n, k) row-major (read where they are, no copy).  Parallel over the column
    blocks."""
    cdef Py_ssize_t m = x.shape[1] if x_t else x.shape[0]
    cdef Py_ssize_t k = x.shape[0] if x_t else x.shape[1]
    cdef Py_ssize_t kw = w.shape[1] if w_t else w.shape[0]
    cdef Py_ssize_t n = w.shape[0] if w_t else w.shape[1]
    if kw != k or y.shape[0] != m or y.shape[1] != n or m * k * n == 0 or \
            (bias is not None and bias.shape[0] != n):
        raise ValueError(f"dense_forward: shapes x {(m, k)}, w {(kw, n)}, "
                         f"y {(y.shape[0], y.shape[1])} do not match or are empty")
    cdef int mr, nr
    cdef fc_kpx_f kf
    cdef fc_kpx_d kd
    _px_kernels(floating is double, False, &mr, &nr, &kf, &kd)
    cdef Py_ssize_t ncb = (n + nr - 1) // nr, cb
    cdef const floating *bp_bias = NULL
    if bias is not None:
        bp_bias = &bias[0]
    cdef const floating *px = &x[0, 0]
    cdef const floating *pw = &w[0, 0]
    cdef floating *py = &y[0, 0]
    cdef floating *wb
    cdef floating *tile
    cdef Py_ssize_t *off
    cdef int fail[1]
    cdef int nt = _threads(<double>m * k * n, ncb)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        wb = <floating *>fc_alloc(k * nr * sizeof(floating))
        tile = <floating *>fc_alloc(mr * nr * sizeof(floating))
        off = <Py_ssize_t *>fc_alloc(mr * sizeof(Py_ssize_t))
        if wb == NULL or tile == NULL or off == NULL:
            fail[0] = 1
        for cb in prange(ncb, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                if floating is float:
                    fc_dense_block_f(kf, mr, nr, px, m, k, pw, bp_bias, py, n, cb * nr,
                                     min(nr, n - cb * nr), relu, x_t, w_t, wb, tile, off)
                else:
                    fc_dense_block_d(kd, mr, nr, px, m, k, pw, bp_bias, py, n, cb * nr,
                                     min(nr, n - cb * nr), relu, x_t, w_t, wb, tile, off)
        fc_free(wb)
        fc_free(tile)
        fc_free(off)
    if fail[0]:
        raise MemoryError("dense_forward: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def px_forward_narrow(const floating[::1] x, const floating[::1] wn,
                      const floating[::1] bias, floating[::1] y, tuple geom,
                      bint relu=False):
    """channels_last, one group, few output channels, C a multiple of the vector length:
    y = conv(x) (+ bias) (then ReLU) by the narrow kernel; wn = weights packed
    (ceil(cout/FC_NO), kh*kw, FC_NO, C).  Parallel over images."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef int mr = _isa.mr_nr
    cdef int vl = _isa.vl_d if dbl else _isa.vl_f
    cdef fc_knr_f kf = _isa.knr_f
    cdef fc_knr_d kd = _isa.knr_d
    _fill(&g, geom, mr, FC_NO)
    if g.groups != 1 or g.c % vl:
        raise ValueError(f"the narrow kernel needs one group and C a multiple of {vl}")
    cdef Py_ssize_t xp_len = _px_xp_len(&g), n
    cdef Py_ssize_t idx_len = mr + g.kh * g.kw
    cdef const floating *bp_bias = NULL
    if bias is not None:
        bp_bias = &bias[0]
    cdef const floating *px = &x[0]
    cdef const floating *pw = &wn[0]
    cdef floating *py = &y[0]
    cdef floating *xp
    cdef floating *tile
    cdef Py_ssize_t *idx
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout * g.kg, g.n)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        xp = <floating *>fc_alloc(xp_len * sizeof(floating))
        tile = <floating *>fc_alloc(mr * FC_NO * sizeof(floating))
        idx = <Py_ssize_t *>fc_alloc(idx_len * sizeof(Py_ssize_t))
        if xp == NULL or tile == NULL or idx == NULL:
            fail[0] = 1
        for n in prange(g.n, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                if floating is float:
                    fc_px_forward_narrow_image_f(&g, kf, px, pw, bp_bias, py, n, relu, xp,
                                                 tile, idx)
                else:
                    fc_px_forward_narrow_image_d(&g, kd, px, pw, bp_bias, py, n, relu, xp,
                                                 tile, idx)
        fc_free(xp)
        fc_free(tile)
        fc_free(idx)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def px_grad_weight(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                   tuple geom, Py_ssize_t n_per, bint half=False, double[::1] bsum=None):
    """channels_last, one group: partial weight gradients by the pixel-row kernel (half:
    its half-width tile), one per group of n_per images; part zeroed, (n_igroups,
    ceil(kg/MR)*MR, ceil(cout/NR)*NR) -- rows k = (ki, kj, c), columns co, (MR, NR) of
    that tile.  With bsum (n_igroups, C_out), zeroed: grad_bias's partial sums of the
    same groups too (as grad_bias with n_per computes them), each while its group's
    grad_y is about to be read.  Parallel over image groups."""
    cdef fc_conv g
    cdef int mr, nr
    cdef fc_kpx_f kf
    cdef fc_kpx_d kd
    _px_kernels(floating is double, half, &mr, &nr, &kf, &kd)
    _fill(&g, geom, mr, nr)
    cdef Py_ssize_t xp_len = _px_xp_len(&g)
    cdef Py_ssize_t cout_pad = (g.cout + nr - 1) // nr * nr
    cdef Py_ssize_t kg_pad = (g.kg + mr - 1) // mr * mr
    cdef Py_ssize_t gyp_len = g.oh * g.ow * cout_pad
    cdef Py_ssize_t idx_len = kg_pad + 2 * g.oh
    cdef Py_ssize_t nig = (g.n + n_per - 1) // n_per, ig, n_lo, n_hi
    cdef Py_ssize_t part_stride = kg_pad * cout_pad
    cdef const floating *px = &x[0]
    cdef const floating *pgy = &gy[0]
    cdef floating *pp = &part[0]
    cdef floating *xp
    cdef floating *gyp
    cdef Py_ssize_t *idx
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout * g.kg, nig)
    cdef double *pb = _bias_partials(bsum, nig, g.cout)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        xp = <floating *>fc_alloc(xp_len * sizeof(floating))
        gyp = <floating *>fc_alloc(gyp_len * sizeof(floating))
        idx = <Py_ssize_t *>fc_alloc(idx_len * sizeof(Py_ssize_t))
        if xp == NULL or gyp == NULL or idx == NULL:
            fail[0] = 1
        for ig in prange(nig, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                n_lo = ig * n_per
                n_hi = n_lo + n_per
                if n_hi > g.n:
                    n_hi = g.n
                if pb != NULL:
                    if floating is float:
                        fc_bias_grad_item_f(&g, pgy, pb + ig * g.cout, n_lo, n_hi)
                    else:
                        fc_bias_grad_item_d(&g, pgy, pb + ig * g.cout, n_lo, n_hi)
                if floating is float:
                    fc_px_grad_weight_item_f(&g, kf, px, pgy, pp + ig * part_stride, n_lo,
                                             n_hi, xp, gyp, idx)
                else:
                    fc_px_grad_weight_item_d(&g, kd, px, pgy, pp + ig * part_stride, n_lo,
                                             n_hi, xp, gyp, idx)
        fc_free(xp)
        fc_free(gyp)
        fc_free(idx)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def all_finite(const floating[::1] a):
    """True when no element of a is NaN or +-inf (the kernels' shortcuts over zero
    padding assume 0 * w == 0, which holds for finite w only: fastconv/conv.py).  An
    integer min over the exponent fields, which the compiler vectorises: all finite iff
    no element has its exponent bits all set."""
    cdef Py_ssize_t i, n = a.shape[0]
    cdef const uint32_t *u
    cdef const uint64_t *v
    cdef uint32_t m32 = 0x7F800000U, lo32 = 0x7F800000U
    cdef uint64_t m64 = 0x7FF0000000000000ULL, lo64 = 0x7FF0000000000000ULL
    cdef bint finite
    if n == 0:
        return True
    with nogil:
        if floating is float:
            u = <const uint32_t *>&a[0]
            for i in range(n):
                lo32 = min(lo32, (~u[i]) & m32)
            finite = lo32 != 0
        else:
            v = <const uint64_t *>&a[0]
            for i in range(n):
                lo64 = min(lo64, (~v[i]) & m64)
            finite = lo64 != 0
    return finite


@cython.boundscheck(False)
@cython.wraparound(False)
def pack_rows(const floating[:, :, :] mat, floating[::1] out, Py_ssize_t mr):
    """out[g, m, k, i] = mat[g, m * mr + i, k] (zero past the last row): the micro-kernel
    A panels (groups, ceil(rows/mr), kc, mr) of any strided (groups, rows, kc) view."""
    cdef Py_ssize_t G = mat.shape[0], rows = mat.shape[1], kc = mat.shape[2]
    cdef Py_ssize_t nm = (rows + mr - 1) // mr, g, m, k, i, r, o
    with nogil:
        for g in range(G):
            for m in range(nm):
                for k in range(kc):
                    o = ((g * nm + m) * kc + k) * mr
                    for i in range(mr):
                        r = m * mr + i
                        out[o + i] = mat[g, r, k] if r < rows else 0


def winograd_tile():
    """(MR, NR) of the Winograd products (the pixel-row kernel's tile, float32)."""
    return _isa.mr_px_f, _isa.nr_px_f


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_weights(const floating[:, :, :, :] w, floating[::1] u, int tile=2):
    """U = G g G^T of a 3x3 kernel w (C_out, C_in, 3, 3) (any strides) into u, packed
    (E, ceil(C_out/NR), C_in, NR) for the selected build's pixel-row tile, zero past
    C_out, for F(tile x tile, 3x3) (tile 2, 4 or 5, E = (tile + 2)^2 entries); computed in
    float64, rounded once.  Every element of u is written.  Parallel over C_in."""
    cdef Py_ssize_t co_n = w.shape[0], c_n = w.shape[1]
    cdef Py_ssize_t nr = _isa.nr_px_d if floating is double else _isa.nr_px_f
    cdef Py_ssize_t ncb = (co_n + nr - 1) // nr, c
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
    cdef const floating *pw = &w[0, 0, 0, 0]
    cdef Py_ssize_t so = w.strides[0] // isz, sc = w.strides[1] // isz
    cdef Py_ssize_t si = w.strides[2] // isz, sj = w.strides[3] // isz
    cdef int nt = _threads(<double>co_n * c_n * 400, c_n)
    for c in prange(c_n, nogil=True, schedule="static", num_threads=nt):
        if floating is float:
            fc_wg_weights_f(pw, so, sc, si, sj, co_n, c_n, G, L, nr, &u[0], c, c + 1)
        else:
            fc_wg_weights_d(pw, so, sc, si, sj, co_n, c_n, G, L, nr, &u[0], c, c + 1)


cdef void *_zero_row(size_t nbytes) except NULL:
    """nbytes of zeros from fc_alloc (freed with fc_free): Winograd's padding row."""
    cdef void *row = fc_alloc(nbytes if nbytes > 0 else 1)
    if row == NULL:
        raise MemoryError("conv2d: could not allocate the Winograd zero row")
    memset(row, 0, nbytes)
    return row


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
def winograd_grad_weight_out(const floating[::1] du, floating[::1] gw, Py_ssize_t c_n,
                             Py_ssize_t co_n, Py_ssize_t cpad, Py_ssize_t ldg,
                             int tile=2):
    """grad_w = G^T dU G: du (E, cpad, ldg) (the summed partials of
    winograd_grad_weight) into gw (3, 3, C_in, C_out) (channels_last's weight layout),
    in float64, rounded once.  Parallel over C_in."""
    cdef Py_ssize_t c
    cdef const double *G = _winograd_G(tile)
    cdef int L = tile + 2
    if du.shape[0] != L * L * cpad * ldg or gw.shape[0] != 9 * c_n * co_n or \
            cpad < c_n or ldg < co_n:
        raise ValueError("winograd_grad_weight_out: du or gw of the wrong size")
    if co_n * c_n == 0:
        return
    cdef int nt = _threads(<double>co_n * c_n * 400, c_n)
    for c in prange(c_n, nogil=True, schedule="static", num_threads=nt):
        if floating is float:
            fc_wg_grad_weights_f(&du[0], cpad, ldg, co_n, c_n, G, L, &gw[0], c, c + 1)
        else:
            fc_wg_grad_weights_d(&du[0], cpad, ldg, co_n, c_n, G, L, &gw[0], c, c + 1)


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_forward(const floating[::1] x, const floating[::1] u,
                     const floating[::1] bias, floating[::1] y, tuple geom,
                     Py_ssize_t block, bint relu=False, bint pool=False, int tile=2):
    """Winograd F(tile x tile, 3x3) forward (tile 2, 4 or 5), channels_last (3x3,
    stride 1, dilation 1, one group): y = conv(x) (+ bias) (then ReLU); u from
    winograd_weights with the same tile.  pool (tile 2 or 4): y is instead the 2x2/2 max
    pool of that, (N, oh // 2, ow // 2, C_out), each tile holding whole pooling windows.
    Parallel over blocks of `block` tiles (a multiple of MR)."""
    cdef fc_conv g
    cdef int mr, nr
    cdef fc_kpx_f kf
    cdef fc_kpx_d kd
    _px_kernels(floating is double, False, &mr, &nr, &kf, &kd)
    _fill(&g, geom, mr, nr)
    _winograd_G(tile)  # (checks tile)
    if pool and tile % 2:
        raise ValueError(f"winograd_forward: the fused pool needs an even tile, got {tile}")
    cdef Py_ssize_t E = (tile + 2) * (tile + 2), side = tile // 2 if pool else tile
    cdef Py_ssize_t th = ((g.oh // 2 if pool else g.oh) + side - 1) // side
    cdef Py_ssize_t tw = ((g.ow // 2 if pool else g.ow) + side - 1) // side
    cdef Py_ssize_t total = g.n * th * tw, ncb = (g.cout + nr - 1) // nr
    cdef Py_ssize_t items = (total + block - 1) // block, it, t0, cnt
    cdef Py_ssize_t want = (g.n * (g.oh // 2) * (g.ow // 2) * g.cout if pool else
                            g.n * g.oh * g.ow * g.cout)
    if y.shape[0] != want or u.shape[0] != E * ncb * g.c * nr or block % mr:
        raise ValueError(f"winograd_forward: y must hold {want} elements and u "
                         f"{E * ncb * g.c * nr}, block be a multiple of {mr}; got "
                         f"{y.shape[0]}, {u.shape[0]}, {block}")
    cdef const floating *bp_bias = NULL
    if bias is not None:
        bp_bias = &bias[0]
    cdef const floating *px = &x[0]
    cdef const floating *pu = &u[0]
    cdef floating *py = &y[0]
    cdef floating *v
    cdef floating *m
    cdef Py_ssize_t *off
    cdef int fail[1]
    cdef int nt = _threads(<double>total * E * g.c * g.cout, items)
    cdef floating *zero = <floating *>_zero_row(g.c * sizeof(floating))
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        v = <floating *>fc_alloc(E * block * g.c * sizeof(floating))
        m = <floating *>fc_alloc(E * mr * nr * sizeof(floating))
        off = <Py_ssize_t *>fc_alloc(mr * sizeof(Py_ssize_t))
        if v == NULL or m == NULL or off == NULL:
            fail[0] = 1
        for it in prange(items, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                t0 = it * block
                cnt = total - t0 if total - t0 < block else block
                if floating is float:
                    fc_wg_forward_block_f(&g, kf, tile, px, zero, pu, bp_bias, py, t0,
                                          cnt, th, tw, relu, pool, _isa.wgo_f, v, m, off)
                else:
                    fc_wg_forward_block_d(&g, kd, tile, px, zero, pu, bp_bias, py, t0,
                                          cnt, th, tw, relu, pool, NULL, v, m, off)
        fc_free(v)
        fc_free(m)
        fc_free(off)
    fc_free(zero)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_grad_weight(const floating[::1] x, const floating[::1] gy,
                         floating[::1] part, tuple geom, Py_ssize_t n_per,
                         Py_ssize_t block, int tile=2):
    """Partial weight gradients in Winograd's space (see src/conv/drivers/winograd.h), one per
    group of n_per images: part (groups, E, cpad, ldg) with cpad = C_in rounded up to
    MR and ldg = C_out rounded up to NR, zeroed by the caller.  Each group's tiles are
    taken `block` at a time (the transformed x and grad_y of a block stay in cache)."""
    cdef fc_conv g
    cdef int mr, nr
    cdef fc_kpx_f kf
    cdef fc_kpx_d kd
    _px_kernels(floating is double, False, &mr, &nr, &kf, &kd)
    _fill(&g, geom, mr, nr)
    _winograd_G(tile)  # (checks tile)
    cdef Py_ssize_t E = (tile + 2) * (tile + 2)
    cdef Py_ssize_t th = (g.oh + tile - 1) // tile, tw = (g.ow + tile - 1) // tile
    cdef Py_ssize_t tpi = th * tw
    cdef Py_ssize_t ldg = (g.cout + nr - 1) // nr * nr, cpad = (g.c + mr - 1) // mr * mr
    cdef Py_ssize_t items = (g.n + n_per - 1) // n_per, psize = E * cpad * ldg
    cdef Py_ssize_t it, t0, t1, cnt
    if part.shape[0] != items * psize:
        raise ValueError(f"winograd_grad_weight: part must hold {items * psize} "
                         f"elements, got {part.shape[0]}")
    cdef const floating *px = &x[0]
    cdef const floating *pg = &gy[0]
    cdef floating *pp = &part[0]
    cdef floating *v
    cdef floating *mg
    cdef Py_ssize_t *off
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * tpi * E * g.c * g.cout, items)
    cdef Py_ssize_t zlen = g.c if g.c > g.cout else g.cout
    cdef floating *zero = <floating *>_zero_row(zlen * sizeof(floating))
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        v = <floating *>fc_alloc(E * block * g.c * sizeof(floating))
        mg = <floating *>fc_alloc(E * block * ldg * sizeof(floating))
        off = <Py_ssize_t *>fc_alloc(mr * sizeof(Py_ssize_t))
        if v == NULL or mg == NULL or off == NULL:
            fail[0] = 1
        for it in prange(items, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                t1 = (it + 1) * n_per * tpi
                if t1 > g.n * tpi:
                    t1 = g.n * tpi
                t0 = it * n_per * tpi
                while t0 < t1:
                    cnt = t1 - t0 if t1 - t0 < block else block
                    if floating is float:
                        fc_wg_grad_weight_block_f(&g, kf, tile, px, pg, zero,
                                                  pp + it * psize, t0, cnt, th, tw, v, mg,
                                                  off)
                    else:
                        fc_wg_grad_weight_block_d(&g, kd, tile, px, pg, zero,
                                                  pp + it * psize, t0, cnt, th, tw, v, mg,
                                                  off)
                    t0 = t0 + cnt
        fc_free(v)
        fc_free(mg)
        fc_free(off)
    fc_free(zero)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def wide_forward(const floating[::1] x, const floating[:, ::1] w, const floating[::1] bias,
                 floating[::1] y, tuple geom, bint relu=False, bint tanh=False,
                 bint pool=False, floating[::1] yq=None):
    """channels_last, one group, stride 1: y = conv(x) (+ bias) (then ReLU, or tanh in
    float32) by the wide kernels (vectorised along output rows); w = the weights
    (C_out, kg), k = (c, ki, kj).  pool: y is instead the 2x2/2 average pool of that
    (N, oh // 2, ow // 2, C_out); yq (without pool): that pool as well as y.  Parallel
    over images."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef Py_ssize_t vl = _isa.vl_d if dbl else _isa.vl_f
    _fill(&g, geom, 0, 0)
    cdef Py_ssize_t Hs = fc_wide_rows(_isa.wr, g.oh, g.kh, g.dy)
    cdef Py_ssize_t Ws = (g.ow + vl - 1) // vl * vl + (g.kw - 1) * g.dx
    cdef Py_ssize_t K = g.kg, co0 = 0, CO, k, o, c, ki, kj, n
    cdef int b
    cdef int act = FC_ACT_TANH if tanh else (FC_ACT_RELU if relu else FC_ACT_NONE)
    if tanh and (relu or floating is double):
        raise ValueError("wide_forward: tanh is for float32 alone, without relu")
    if w.shape[0] != g.cout or w.shape[1] != K:
        raise ValueError(f"wide_forward: w must be ({g.cout}, {K}), got ({w.shape[0]}, {w.shape[1]})")
    cdef Py_ssize_t pw = g.ow // 2 if pool else g.ow
    cdef Py_ssize_t size = g.n * (g.oh // 2 if pool else g.oh) * pw * g.cout
    if y.shape[0] != size:
        raise ValueError(f"wide_forward: y must hold {size} elements, got {y.shape[0]}")
    cdef Py_ssize_t qsize = g.n * (g.oh // 2) * (g.ow // 2) * g.cout
    if yq is not None and (pool or yq.shape[0] != qsize):
        raise ValueError(f"wide_forward: yq must hold {qsize} elements, without pool")
    cdef floating *pq = &yq[0] if yq is not None and qsize > 0 else NULL
    cdef floating *wpk = <floating *>fc_alloc((g.cout * K + g.cout) * sizeof(floating))
    cdef floating *pb = wpk + g.cout * K
    cdef Py_ssize_t *off = <Py_ssize_t *>fc_alloc(K * sizeof(Py_ssize_t))
    if wpk == NULL or off == NULL:
        fc_free(wpk)
        fc_free(off)
        raise MemoryError("conv2d: could not allocate the packed weights")
    for o in range(g.cout):
        pb[o] = bias[o] if bias is not None else 0
    # k = (ki, c, kj) in the kernels (so that a range of kernel rows is a range of k),
    # (c, ki, kj) in w
    k = 0
    for ki in range(g.kh):
        for c in range(g.c):
            for kj in range(g.kw):
                off[k] = (c * Hs + ki * g.dy) * Ws + kj * g.dx
                k += 1
    # the blocks fc_wd_forward_image walks, (K, CO) each; whether its kernels take the
    # activation and the pool (an ISA that can, float, blocks of even row counts)
    cdef int *blk = <int *>fc_alloc(g.cout * sizeof(int))  # (at most one per channel)
    cdef int nblk = 0
    cdef int inkernel = _isa.wpool_f and floating is float
    if blk == NULL:
        fc_free(wpk)
        fc_free(off)
        raise MemoryError("conv2d: could not allocate the packed weights")
    while co0 < g.cout:
        b = fc_wide_block(_isa.wr, g.cout - co0, &g)
        CO = fc_wide_co[b]
        blk[nblk] = b
        nblk += 1
        if _isa.wr[b] % 2:
            inkernel = 0
        k = 0
        for ki in range(g.kh):
            for c in range(g.c):
                for kj in range(g.kw):
                    for o in range(CO):
                        wpk[co0 * K + k * CO + o] = w[co0 + o, (c * g.kh + ki) * g.kw + kj]
                    k += 1
        co0 += CO
    cdef const floating *px = &x[0]
    cdef floating *py = &y[0]
    cdef floating *xs
    cdef floating *yimg
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout * g.kg, g.n)
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        xs = <floating *>fc_alloc(g.c * Hs * Ws * sizeof(floating))
        yimg = <floating *>fc_alloc((g.oh * g.ow * g.cout if pool else 1) *
                                    sizeof(floating))
        if xs == NULL or yimg == NULL:
            fail[0] = 1
        for n in prange(g.n, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                if floating is float:
                    fc_wd_forward_image_f(&g, _isa.kwf_f, _isa.wr, blk, nblk, inkernel,
                                          vl, px, wpk, off, pb, py, n, act, pool, pq, xs,
                                          yimg, Hs, Ws)
                else:
                    fc_wd_forward_image_d(&g, _isa.kwf_d, _isa.wr, blk, nblk, inkernel,
                                          vl, px, wpk, off, pb, py, n, act, pool, pq, xs,
                                          yimg, Hs, Ws)
        fc_free(xs)
        fc_free(yimg)
    fc_free(wpk)
    fc_free(off)
    fc_free(blk)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")


@cython.boundscheck(False)
@cython.wraparound(False)
def wide_grad_weight(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                     tuple geom, Py_ssize_t n_per, double[::1] bsum=None,
                     Py_ssize_t bias_per=1, const floating[::1] gp=None,
                     const floating[::1] a=None):
    """channels_last, one group, stride 1: partial weight gradients by the wide kernels,
    one per group of n_per images; part zeroed, (n_igroups, kg, coutp) -- rows
    k = (ki, kj, c), coutp = C_out rounded up to wide_tile()[1].  With bsum
    ((n + bias_per - 1) // bias_per, C_out), zeroed, and n_per a multiple of bias_per:
    grad_bias's partial sums of groups of bias_per images too (as grad_bias with
    bias_per computes them), in the item of their images, before it reads their
    grad_y.  With gp and a (gy then unused, may be None): grad_y is the gradient through
    tanh (a, the output's shape: tanh's output) of a 2x2/2 average pool whose output
    gradient is gp (N, oh // 2, ow // 2, C_out), made for each item's images in a
    per-thread buffer while in cache -- the same values as avg_pool_backward_tanh_nhwc
    writes, so the same gradients.  Parallel over image groups."""
    cdef fc_conv g
    cdef bint dbl = floating is double
    cdef Py_ssize_t vl = _isa.vl_d if dbl else _isa.vl_f, gco = _isa.wg_co
    _fill(&g, geom, 0, 0)
    cdef Py_ssize_t owv = (g.ow + vl - 1) // vl
    cdef Py_ssize_t Hs = g.oh + (g.kh - 1) * g.dy, Ws = owv * vl + (g.kw - 1) * g.dx
    cdef Py_ssize_t coutp = (g.cout + gco - 1) // gco * gco
    cdef Py_ssize_t xs_len = n_per * g.c * Hs * Ws
    cdef Py_ssize_t gs_len = n_per * coutp * g.oh * owv * vl
    cdef Py_ssize_t tab_len = 3 * n_per * g.oh * owv
    cdef Py_ssize_t nig = (g.n + n_per - 1) // n_per, ig, n_lo, n_hi, i
    cdef Py_ssize_t part_stride = g.kg * coutp
    cdef Py_ssize_t y_img = g.oh * g.ow * g.cout, x_img = g.h * g.w * g.c, s
    cdef Py_ssize_t q_img = (g.oh // 2) * (g.ow // 2) * g.cout
    cdef bint pooled = gp is not None
    if pooled and (a is None or a.shape[0] != g.n * y_img or gp.shape[0] != g.n * q_img):
        raise ValueError(f"wide_grad_weight: a must hold {g.n * y_img} and gp "
                         f"{g.n * q_img} elements")
    if not pooled and (gy is None or gy.shape[0] != g.n * y_img):
        raise ValueError(f"wide_grad_weight: gy must hold {g.n * y_img} elements")
    cdef const floating *px = &x[0]
    cdef const floating *pgy = NULL
    cdef const floating *pgp = NULL
    cdef const floating *pa = NULL
    if pooled:
        pa = &a[0]
        if q_img > 0:
            pgp = &gp[0]
    else:
        pgy = &gy[0]
    cdef floating *pp = &part[0]
    cdef floating *xs
    cdef floating *gs
    cdef floating *gys
    cdef const floating *gyi
    cdef Py_ssize_t *tab
    cdef int fail[1]
    cdef int nt = _threads(<double>g.n * g.oh * g.ow * g.cout * g.kg, nig)
    if bsum is not None and (bias_per < 1 or n_per % bias_per):
        raise ValueError(f"n_per ({n_per}) must be a multiple of bias_per ({bias_per})")
    cdef double *pb = _bias_partials(bsum, (g.n + bias_per - 1) // bias_per, g.cout)
    cdef Py_ssize_t b_lo, b_hi
    fail[0] = 0
    with nogil, parallel(num_threads=nt):
        xs = <floating *>fc_alloc(xs_len * sizeof(floating))
        gs = <floating *>fc_alloc(gs_len * sizeof(floating))
        tab = <Py_ssize_t *>fc_alloc(tab_len * sizeof(Py_ssize_t))
        gys = <floating *>fc_alloc((n_per * y_img if pooled else 1) * sizeof(floating))
        if xs == NULL or gs == NULL or tab == NULL or gys == NULL:
            fail[0] = 1
        for ig in prange(nig, schedule="dynamic", chunksize=1):
            if fail[0] == 0:
                n_lo = ig * n_per
                n_hi = n_lo + n_per
                if n_hi > g.n:
                    n_hi = g.n
                # the items read images [n_lo - s, n_hi - s) of gyi and xi: gy and x
                # (s = 0), or (pooled) gys, its images made here, and x from image n_lo
                # on (s = n_lo)
                gyi = pgy
                s = 0
                if pooled:
                    s = n_lo
                    gyi = gys
                    for i in range(n_hi - n_lo):
                        if floating is float:
                            fc_avg_tanh_grad_image_f(pgp + (n_lo + i) * q_img,
                                                     pa + (n_lo + i) * y_img,
                                                     gys + i * y_img, g.oh, g.ow, g.cout)
                        else:
                            fc_avg_tanh_grad_image_d(pgp + (n_lo + i) * q_img,
                                                     pa + (n_lo + i) * y_img,
                                                     gys + i * y_img, g.oh, g.ow, g.cout)
                b_lo = n_lo
                while pb != NULL and b_lo < n_hi:
                    b_hi = b_lo + bias_per
                    if b_hi > n_hi:
                        b_hi = n_hi
                    if floating is float:
                        fc_bias_grad_item_f(&g, gyi, pb + b_lo // bias_per * g.cout,
                                            b_lo - s, b_hi - s)
                    else:
                        fc_bias_grad_item_d(&g, gyi, pb + b_lo // bias_per * g.cout,
                                            b_lo - s, b_hi - s)
                    b_lo = b_hi
                if floating is float:
                    fc_wd_grad_weight_item_f(&g, _isa.kwg_f, gco, vl, px + s * x_img, gyi,
                                             pp + ig * part_stride, n_lo - s, n_hi - s,
                                             xs, gs, tab)
                else:
                    fc_wd_grad_weight_item_d(&g, _isa.kwg_d, gco, vl, px + s * x_img, gyi,
                                             pp + ig * part_stride, n_lo - s, n_hi - s,
                                             xs, gs, tab)
        fc_free(xs)
        fc_free(gs)
        fc_free(tab)
        fc_free(gys)
    if fail[0]:
        raise MemoryError("conv2d: could not allocate per-thread scratch buffers")

