/* double pixel-row micro-kernel, 6 pixels x 8 channels, AVX2 + FMA. */
#ifndef FASTCONV_UK_F64_PX_AVX2
#define FASTCONV_UK_F64_PX_AVX2

#include "avx2.h"

FC_KPX(fc_kpx_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_setzero_pd(),
       _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd,
       6, 2, 4)

#endif
