/* float 6 x 16 indirect-B and indirect-A GEMM micro-kernels (the shifted algorithm),
 * AVX2 + FMA. */
#ifndef FASTCONV_UK_F32_GEMMI_AVX2
#define FASTCONV_UK_F32_GEMMI_AVX2

#include "avx2.h"

FC_AVX2_KIB(fc_kib_avx2_f, float, ps, __m256, 8)
FC_AVX2_KIA(fc_kia_avx2_f, float, ps, __m256, 8)

#endif
