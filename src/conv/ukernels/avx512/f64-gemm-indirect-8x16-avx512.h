/* double 8 x 16 indirect-B and indirect-A GEMM micro-kernels (the shifted algorithm),
 * AVX-512F. */
#ifndef FASTCONV_UK_F64_GEMMI_AVX512
#define FASTCONV_UK_F64_GEMMI_AVX512

#include "avx512.h"

FC_AVX512_KIB(fc_kib_avx512_d, double, pd, __m512d, 8)
FC_AVX512_KIA(fc_kia_avx512_d, double, pd, __m512d, 8)

#endif
