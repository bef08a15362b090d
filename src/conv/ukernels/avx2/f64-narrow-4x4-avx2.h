/* double narrow micro-kernel, 4 pixels x 4 channels, vectors of 4 input channels,
 * AVX2 + FMA. */
#ifndef FASTCONV_UK_F64_NARROW_AVX2
#define FASTCONV_UK_F64_NARROW_AVX2

#include "avx2.h"

FC_KNR(fc_knr_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_setzero_pd(),
       _mm256_loadu_pd, _mm256_fmadd_pd, fc_hsum4_avx2_d, 4, 4)

#endif
