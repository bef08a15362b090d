/* double 8 x 16 packed-panel GEMM micro-kernel, AVX-512F. */
#ifndef FASTCONV_UK_F64_GEMM_AVX512
#define FASTCONV_UK_F64_GEMM_AVX512

#include "avx512.h"

FC_AVX512_KERNEL(fc_kernel_avx512_d, double, pd, __m512d, 8)

#endif
