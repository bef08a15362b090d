/* float half-width pixel-row micro-kernel, 12 pixels x 8 channels, AVX2 + FMA. */
#ifndef FASTCONV_UK_F32_PX1_AVX2
#define FASTCONV_UK_F32_PX1_AVX2

#include "avx2.h"

/* Half width: 12 pixels x one vector (12 accumulators of the 16 registers). */
FC_KPX(fc_kpx1_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(),
       _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
       12, 1, 8)

#endif
