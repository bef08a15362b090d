/* float narrow micro-kernel, 4 pixels x 4 channels, vectors of 8 input channels,
 * AVX2 + FMA. */
#ifndef FASTCONV_UK_F32_NARROW_AVX2
#define FASTCONV_UK_F32_NARROW_AVX2

#include "avx2.h"

FC_KNR(fc_knr_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(), _mm256_loadu_ps,
       _mm256_fmadd_ps, fc_hsum4_avx2_f, 4, 8)

#endif
