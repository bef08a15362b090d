/* float 8 x 32 packed-panel GEMM micro-kernel, AVX-512F. */
#ifndef FASTCONV_UK_F32_GEMM_AVX512
#define FASTCONV_UK_F32_GEMM_AVX512

#include "avx512.h"

FC_AVX512_KERNEL(fc_kernel_avx512_f, float, ps, __m512, 16)

#endif
