/* float wide micro-kernels (forward 6/4/2/2/1 rows x 1/2/4/6/8 channels; weight
 * gradient 2 channels x 1..5 columns), AVX2 + FMA. */
#ifndef FASTCONV_UK_F32_WIDE_AVX2
#define FASTCONV_UK_F32_WIDE_AVX2

#include "avx2.h"

FC_WIDE_SET(fc_wide_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(),
            _mm256_loadu_ps, fc_xload256_f, _mm256_set1_ps, _mm256_fmadd_ps, FC_QFMA256_F,
            _mm256_add_ps, fc_hsum256_f, fc_wts_avx2_f, FC_NO_ACTV, FC_NO_POOLQ, 6, 4, 2,
            2, 1, 2)

#endif
