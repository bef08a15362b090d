/* double wide micro-kernels (forward 8/8/5/4/3 rows x 1/2/4/6/8 channels; weight
 * gradient 4 channels x 1..5 columns), AVX-512F. */
#ifndef FASTCONV_UK_F64_WIDE_AVX512
#define FASTCONV_UK_F64_WIDE_AVX512

#include "avx512.h"

FC_WIDE_SET(fc_wide_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_setzero_pd(),
            _mm512_loadu_pd, FC_XLOAD512_D, _mm512_set1_pd, _mm512_fmadd_pd, FC_QFMA512_D,
            _mm512_add_pd, _mm512_reduce_add_pd, fc_wts_avx512_d, FC_NO_ACTV, FC_NO_POOLQ,
            8, 8, 5, 4, 3, 4)

#endif
