/* float half-width pixel-row micro-kernel, 12 pixels x 16 channels, AVX-512F. */
#ifndef FASTCONV_UK_F32_PX1_AVX512
#define FASTCONV_UK_F32_PX1_AVX512

#include "avx512.h"

/* Half width: 12 pixels x 16 channels (float) / 12 x 8 (double), 12 broadcasts and one
 * load per 12 FMAs (LeNet-5's C3 has 16 output channels). */
FC_KPX(fc_kpx1_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
       _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
       12, 1, 16)

#endif
