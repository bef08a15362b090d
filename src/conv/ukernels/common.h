/* Micro-kernel types, constants and per-function ISA attributes (see below). */
#ifndef FASTCONV_UK_COMMON
#define FASTCONV_UK_COMMON

/* Register-blocked matrix-product micro-kernels for fastconv's convolutions, with the
 * instruction set chosen at RUN TIME.
 *
 * A micro-kernel computes one MR x NR tile of C = A B over a reduction of length kc from
 * packed panels:
 *
 *     C[i * ldc + j] (=, or += when accumulate) sum_k A[k * MR + i] * B[k * NR + j]
 *
 * for every 0 <= i < MR and 0 <= j < NR (callers pad the panels with zeros and give a
 * full-size tile).  Three builds of each kernel exist:
 *
 *   avx512  AVX-512F  float 8 x 32, double 8 x 16 (16 accumulator registers of 32)
 *   avx2    AVX2+FMA  float 6 x 16, double 6 x 8  (12 accumulator registers of 16)
 *   portable plain C  4 x 8, for any compiler and CPU (the compiler vectorises what it can
 *            at the baseline instruction set of the target)
 *
 * The SIMD builds are compiled per function with GCC/Clang's target attribute, so the
 * extension itself is built for the baseline CPU (no -mavx / -march flags) and runs
 * anywhere; fc_best_isa() in conv/isa_config.h picks the best build the CPU and OS
 * support (GCC/Clang's __builtin_cpu_supports checks both) and fc_default_isa() starts
 * with it, or with the portable build when FASTCONV_DISABLE_SIMD=1 is in the
 * environment.  Other compilers (MSVC) get the portable build.
 *
 * Within one ISA the order of every floating-point operation depends only on the
 * shapes, never on the thread count, so results are bit-identical for any thread count.
 */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FC_X86_DISPATCH 1
#include <immintrin.h>
#define FC_TARGET_AVX512 __attribute__((target("avx512f")))
#define FC_TARGET_AVX2 __attribute__((target("avx2,fma")))
/* The glue loops (im2col, transforms, tile stores) are plain C that the compiler
 * vectorises: target_clones builds them for AVX-512, AVX2 and the baseline and picks one
 * at load time (they hold no FMA-contractible products that could change results). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6 && defined(__linux__)
#define FC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#elif defined(__clang__) && __clang_major__ >= 14 && defined(__linux__)
#define FC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
/* Rows ahead that the indirect kernels prefetch (their rows are not sequential). */
#define FC_PF_DIST 8
#else
#define FC_X86_DISPATCH 0
#endif
#ifndef FC_CLONES
#define FC_CLONES
#endif
#if defined(__GNUC__) || defined(__clang__)
#define FC_ALWAYS_INLINE __attribute__((always_inline))
#else
#define FC_ALWAYS_INLINE
#endif

typedef void (*fc_kernel_f)(ptrdiff_t kc, const float *A, const float *B, float *C,
                            ptrdiff_t ldc, int accumulate);
typedef void (*fc_kernel_d)(ptrdiff_t kc, const double *A, const double *B, double *C,
                            ptrdiff_t ldc, int accumulate);

/* Indirect-B kernel: B row k is read in place at xb + off[k] (no packed panel):
 *     C[i * ldc + j] = sum_k A[k * MR + i] * xb[off[k] + j]
 * Indirect-A kernel: A column i is read in place at xa + off[i], one element per step:
 *     C[i * ldc + j] (=, or +=) sum_p xa[off[i] + p] * B[p * NR + j]            */
typedef void (*fc_kib_f)(ptrdiff_t kc, const float *A, const float *xb,
                         const ptrdiff_t *off, float *C, ptrdiff_t ldc);
typedef void (*fc_kib_d)(ptrdiff_t kc, const double *A, const double *xb,
                         const ptrdiff_t *off, double *C, ptrdiff_t ldc);
typedef void (*fc_kia_f)(ptrdiff_t kc, const float *xa, const ptrdiff_t *off,
                         const float *B, float *C, ptrdiff_t ldc, int accumulate);
typedef void (*fc_kia_d)(ptrdiff_t kc, const double *xa, const ptrdiff_t *off,
                         const double *B, double *C, ptrdiff_t ldc, int accumulate);

/* Pixel-row kernel (channels_last convolutions): rows are read in place at xa + off[i],
 * the reduction runs over nseg segments of len steps, and B rows are strided:
 *     C[i * ldc + j] (=, or +=) sum_s sum_p xa[off[i] + sega[s] + p * as]
 *                                            * B[segb[s] + p * bs + j]
 * The forward pass uses it with rows = output pixels, columns = output channels, the
 * reduction over (ki, kj, c) of one window (contiguous in channels_last); the weight
 * gradient with rows = (ki, kj, c), columns = output channels, the reduction over
 * output pixels. */
typedef void (*fc_kpx_f)(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega,
                         const ptrdiff_t *segb, const float *xa, const ptrdiff_t *off,
                         ptrdiff_t as, const float *B, ptrdiff_t bs, float *C,
                         ptrdiff_t ldc, int accumulate);
typedef void (*fc_kpx_d)(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega,
                         const ptrdiff_t *segb, const double *xa, const ptrdiff_t *off,
                         ptrdiff_t as, const double *B, ptrdiff_t bs, double *C,
                         ptrdiff_t ldc, int accumulate);

/* The pixel-row kernel's forward tile written into y with the bias (the kernels'
 * NAME_out, templates.h): rows as a kpx call with as = 1 and B packed (bs = its
 * columns), C[i * ldc + j] = sum + bias[j] (bias NULL: the sum). */
typedef void (*fc_kpxo_f)(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega,
                          const ptrdiff_t *segb, const float *xa, const ptrdiff_t *off,
                          const float *B, float *C, ptrdiff_t ldc, const float *bias);
typedef void (*fc_kpxo_d)(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega,
                          const ptrdiff_t *segb, const double *xa, const ptrdiff_t *off,
                          const double *B, double *C, ptrdiff_t ldc, const double *bias);

/* Narrow kernel (channels_last convolutions with few output channels): MR rows (output
 * pixels, read in place at xa + off[i]) x FC_NO output channels, vectorised along the
 * input channels instead -- the reduction:
 *     y[i * ldy + o] = sum_s sum_{c < C} xa[off[i] + sega[s] + c] * W[(s * FC_NO + o) * C + c]
 * C must be a multiple of the vector length (vl of the ISA). */
#define FC_NO 4
typedef void (*fc_knr_f)(ptrdiff_t nseg, ptrdiff_t C, const ptrdiff_t *sega,
                         const float *xa, const ptrdiff_t *off, const float *W, float *y,
                         ptrdiff_t ldy);
typedef void (*fc_knr_d)(ptrdiff_t nseg, ptrdiff_t C, const ptrdiff_t *sega,
                         const double *xa, const ptrdiff_t *off, const double *W,
                         double *y, ptrdiff_t ldy);
/* Wide kernels (channels_last, stride 1, few channels): vectorised along the output
 * row, on a channel-major zero-padded copy of the image ("planar": plane c, row r,
 * column t at xs[c * ldp + r * ldr + t]).
 * Forward: R output rows x CO output channels x one vector of VL columns, stored
 * channels_last (transposed in registers) with the bias added,
 *     y[r * ldy + l * ldc + o] = sum_k xs[off[k] + r * ldr + l] * W[k * CO + o] + bias[o]
 * for r < nr and l < nl (the rows and lanes past them are computed and dropped), with
 * off[k] the offset of k = (ki, c, kj); CO is 1, 2, 4, 6 or 8 (fc_wide_co, kwf[0..4])
 * and R depends on CO and the ISA (wr[0..4]).
 * Weight gradient: CO = wg_co output channels x KJ kernel columns (kwg[KJ - 1], KJ up
 * to FC_WKJ) of one (c, ki), reduced over nq row vectors q,
 *     out[j * ldo + o] += sum_q sum_{l < nl[q]} xa[xo[q] + j * dx + l] * ga[go[q] + o * ldg + l]
 * (lanes past nl[q] of xa are zeroed after the load: a value there may be inf, and
 * inf * 0 would turn a sum into NaN). */
#define FC_WCO 5
#define FC_WKJ 5
typedef void (*fc_kwf_f)(ptrdiff_t K, const ptrdiff_t *off, const float *xs,
                         ptrdiff_t ldr, const float *W, const float *bias, float *y,
                         ptrdiff_t ldy, ptrdiff_t ldc, int nr, int nl, int act, float *yq,
                         ptrdiff_t ldq);
typedef void (*fc_kwf_d)(ptrdiff_t K, const ptrdiff_t *off, const double *xs,
                         ptrdiff_t ldr, const double *W, const double *bias, double *y,
                         ptrdiff_t ldy, ptrdiff_t ldc, int nr, int nl, int act,
                         double *yq, ptrdiff_t ldq);
/* The activation a forward pass may apply to its output (the wide and pixel-row kernels
 * take all three; the others a flag for ReLU).  tanh: fc_tanh1_f in float32 (the
 * compiled tanh of fastconv.activations); the double instance exists but Python never
 * asks for it. */
#define FC_ACT_NONE 0
#define FC_ACT_RELU 1
#define FC_ACT_TANH 2
/* The relu flag of the pixel-row forward (fc_tile_store): 1 max(v, 0); FC_RELU6 also
 * min(., 6) (ReLU6: MobileNet's bound, one pass with the store).  The other forward
 * kernels take 0 or 1 alone (Python passes FC_RELU6 only to the pixel-row paths). */
#define FC_RELU6 2
/* Output channels of the wide forward kernels kwf[0..FC_WCO-1]. */
static const int fc_wide_co[FC_WCO] = {1, 2, 4, 6, 8};
typedef void (*fc_kwg_f)(ptrdiff_t nq, const ptrdiff_t *xo, const ptrdiff_t *go,
                         const ptrdiff_t *nl, const float *xa, ptrdiff_t dx,
                         const float *ga, ptrdiff_t ldg, float *out, ptrdiff_t ldo);
typedef void (*fc_kwg_d)(ptrdiff_t nq, const ptrdiff_t *xo, const ptrdiff_t *go,
                         const ptrdiff_t *nl, const double *xa, ptrdiff_t dx,
                         const double *ga, ptrdiff_t ldg, double *out, ptrdiff_t ldo);
/* Winograd F(tile x tile, 3x3) output transform of one tile, tile 4 or 5
 * (drivers/winograd-transforms.h's fc_wg4_output and fc_wg5_output call it where the ISA has one): the
 * tile's (tile + 2)^2 entries at m + e * ms, its channels j < cols contiguous; Y = A^T M
 * A + bias (NULL: none), then ReLU (relu), Y[a][b] stored to y + a * rs + b * cs + j for
 * a < nrow, b < ncol (the tile's part inside the output), or with pool (tile 4) the 2x2
 * max pools of Y's four 2x2 windows, pool (a, b) likewise (a, b < 2).  The operations
 * and their order are those loops', so the same bits. */
typedef void (*fc_kwo_f)(int tile, const float *m, ptrdiff_t ms, const float *bias,
                         float *y, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t cols, int nrow,
                         int ncol, int relu, int pool);
typedef void (*fc_kwo_d)(int tile, const double *m, ptrdiff_t ms, const double *bias,
                         double *y, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t cols, int nrow,
                         int ncol, int relu, int pool);

#endif
