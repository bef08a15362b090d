/* float 8 x 32 indirect-B and indirect-A GEMM micro-kernels (the shifted algorithm),
 * AVX-512F. */
#ifndef FASTCONV_UK_F32_GEMMI_AVX512
#define FASTCONV_UK_F32_GEMMI_AVX512

#include "avx512.h"

FC_AVX512_KIB(fc_kib_avx512_f, float, ps, __m512, 16)
FC_AVX512_KIA(fc_kia_avx512_f, float, ps, __m512, 16)

#endif
