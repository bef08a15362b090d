/* float pixel-row micro-kernel, 6 pixels x 16 channels, AVX2 + FMA. */
#ifndef FASTCONV_UK_F32_PX_AVX2
#define FASTCONV_UK_F32_PX_AVX2

#include "avx2.h"

FC_KPX(fc_kpx_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(),
       _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
       6, 2, 8)

#endif
