/* float narrow micro-kernel, 6 pixels x 4 channels, vectors of 16 input channels,
 * AVX-512F. */
#ifndef FASTCONV_UK_F32_NARROW_AVX512
#define FASTCONV_UK_F32_NARROW_AVX512

#include "avx512.h"

FC_KNR(fc_knr_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
       _mm512_loadu_ps, _mm512_fmadd_ps, fc_hsum4_avx512_f, 6, 16)

#endif
