/* double 6 x 8 packed-panel GEMM micro-kernel, AVX2 + FMA. */
#ifndef FASTCONV_UK_F64_GEMM_AVX2
#define FASTCONV_UK_F64_GEMM_AVX2

#include "avx2.h"

FC_AVX2_KERNEL(fc_kernel_avx2_d, double, pd, __m256d, 4)

#endif
