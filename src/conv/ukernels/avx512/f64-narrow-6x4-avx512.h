/* double narrow micro-kernel, 6 pixels x 4 channels, vectors of 8 input channels,
 * AVX-512F. */
#ifndef FASTCONV_UK_F64_NARROW_AVX512
#define FASTCONV_UK_F64_NARROW_AVX512

#include "avx512.h"

FC_KNR(fc_knr_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_setzero_pd(),
       _mm512_loadu_pd, _mm512_fmadd_pd, fc_hsum4_avx512_d, 6, 8)

#endif
