/* float 6 x 16 packed-panel GEMM micro-kernel, AVX2 + FMA. */
#ifndef FASTCONV_UK_F32_GEMM_AVX2
#define FASTCONV_UK_F32_GEMM_AVX2

#include "avx2.h"

FC_AVX2_KERNEL(fc_kernel_avx2_f, float, ps, __m256, 8)

#endif
