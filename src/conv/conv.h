/* Everything src/_conv2d.pyx needs from C: the micro-kernels and their per-ISA tables
 * (isa_config.h), the geometry of one convolution (geometry.h), per-thread scratch
 * (parallel.h), and the drivers of drivers/ instantiated for float (suffix _f) and
 * double (suffix _d).
 */
#ifndef FASTCONV_CONV_H
#define FASTCONV_CONV_H

#include <stdint.h>
#include <math.h>
#include "isa_config.h"
#include "activation_kernels.h"
#include "pool_grad.h"
#include "geometry.h"
#include "parallel.h"

typedef fc_kernel_f fc_kernel_t_f;
typedef fc_kernel_d fc_kernel_t_d;
typedef fc_kib_f fc_kib_t_f;
typedef fc_kib_d fc_kib_t_d;
typedef fc_kia_f fc_kia_t_f;
typedef fc_kia_d fc_kia_t_d;
typedef fc_kpx_f fc_kpx_t_f;
typedef fc_kpx_d fc_kpx_t_d;
typedef fc_kpxo_f fc_kpxo_t_f;
typedef fc_kpxo_d fc_kpxo_t_d;
typedef fc_knr_f fc_knr_t_f;
typedef fc_knr_d fc_knr_t_d;
typedef fc_kwf_f fc_kwf_t_f;
typedef fc_kwf_d fc_kwf_t_d;
typedef fc_kwg_f fc_kwg_t_f;
typedef fc_kwg_d fc_kwg_t_d;
typedef fc_kwo_f fc_kwo_t_f;
typedef fc_kwo_d fc_kwo_t_d;

#if defined(__GNUC__) || defined(__clang__)
#define FC_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define FC_RESTRICT __restrict
#else
#define FC_RESTRICT
#endif

#if defined(_OPENMP)
#define FC_OMP_SIMD _Pragma("omp simd")
#else
#define FC_OMP_SIMD
#endif

/* G of Winograd F(2x2, 3x3)'s kernel transform U = G g G^T (drivers/winograd.h). */
static const double fc_wg_G[4][3] = {
    {1.0, 0.0, 0.0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0.0, 0.0, 1.0}};
/* G of F(4x4, 3x3). */
static const double fc_wg4_G[6][3] = {
    {1.0 / 4, 0.0, 0.0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0.0, 0.0, 1.0}};
/* G of F(5x5, 3x3). */
static const double fc_wg5_G[7][3] = {
    {-1.0 / 2, 0.0, 0.0}, {-1.0 / 3, -1.0 / 3, -1.0 / 3}, {1.0 / 9, -1.0 / 9, 1.0 / 9},
    {1.0 / 36, 1.0 / 18, 1.0 / 9}, {-1.0 / 60, 1.0 / 30, -1.0 / 15},
    {32.0 / 45, 16.0 / 45, 8.0 / 45}, {0.0, 0.0, 1.0}};

#define FC_T float
#define FC_FN(name) name##_f
#define FC_TANH1(v) fc_tanh1_f(v)
#define FC_WGO(isa) ((isa)->wgo_f)
#include "drivers/drivers.h"
#undef FC_T
#undef FC_FN
#undef FC_TANH1
#undef FC_WGO

#define FC_T double
#define FC_FN(name) name##_d
#define FC_TANH1(v) tanh(v)
#define FC_WGO(isa) ((fc_kwo_d)NULL)
#include "drivers/drivers.h"
#undef FC_T
#undef FC_FN
#undef FC_TANH1
#undef FC_WGO

/* The entry points of src/_conv2d.pyx, by dtype (dbl: float64; the arrays come as void
 * pointers): each runs one parallel loop (parallel.h) and returns 0 or FC_ENOMEM*. */
#define fc_gemm_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_gemm_forward, __VA_ARGS__)
#define fc_gemm_grad_weight(dbl, ...) FC_BY_DTYPE(dbl, fc_gemm_grad_weight, __VA_ARGS__)
#define fc_gemm_grad_input(dbl, ...) FC_BY_DTYPE(dbl, fc_gemm_grad_input, __VA_ARGS__)
#define fc_bias_grad(dbl, ...) FC_BY_DTYPE(dbl, fc_bias_grad, __VA_ARGS__)
#define fc_shift_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_shift_forward, __VA_ARGS__)
#define fc_shift_grad_weight(dbl, ...) FC_BY_DTYPE(dbl, fc_shift_grad_weight, __VA_ARGS__)
#define fc_px_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_px_forward, __VA_ARGS__)
#define fc_dense_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_dense_forward, __VA_ARGS__)
#define fc_px_grad_weight(dbl, ...) FC_BY_DTYPE(dbl, fc_px_grad_weight, __VA_ARGS__)
#define fc_narrow_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_narrow_forward, __VA_ARGS__)
#define fc_wide_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_wide_forward, __VA_ARGS__)
#define fc_wide_grad_weight(dbl, ...) FC_BY_DTYPE(dbl, fc_wide_grad_weight, __VA_ARGS__)
#define fc_wg_weights_run(dbl, ...) FC_BY_DTYPE(dbl, fc_wg_weights_run, __VA_ARGS__)
#define fc_wg_grad_weights_run(dbl, ...) FC_BY_DTYPE(dbl, fc_wg_grad_weights_run, __VA_ARGS__)
#define fc_wg_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_wg_forward, __VA_ARGS__)
#define fc_wg_grad_weight(dbl, ...) FC_BY_DTYPE(dbl, fc_wg_grad_weight, __VA_ARGS__)
#define fc_dw_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_dw_forward, __VA_ARGS__)
#define fc_dw_grad_input(dbl, ...) FC_BY_DTYPE(dbl, fc_dw_grad_input, __VA_ARGS__)
#define fc_dw_grad_weight(dbl, ...) FC_BY_DTYPE(dbl, fc_dw_grad_weight, __VA_ARGS__)
#define fc_edw_forward(dbl, ...) FC_BY_DTYPE(dbl, fc_edw_forward, __VA_ARGS__)

#endif
