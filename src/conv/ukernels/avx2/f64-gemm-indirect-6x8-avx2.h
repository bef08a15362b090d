/* double 6 x 8 indirect-B and indirect-A GEMM micro-kernels (the shifted algorithm),
 * AVX2 + FMA. */
#ifndef FASTCONV_UK_F64_GEMMI_AVX2
#define FASTCONV_UK_F64_GEMMI_AVX2

#include "avx2.h"

FC_AVX2_KIB(fc_kib_avx2_d, double, pd, __m256d, 4)
FC_AVX2_KIA(fc_kia_avx2_d, double, pd, __m256d, 4)

#endif
