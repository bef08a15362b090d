/* double wide micro-kernels (forward 6/4/2/2/1 rows x 1/2/4/6/8 channels; weight
 * gradient 2 channels x 1..5 columns), AVX2 + FMA. */
#ifndef FASTCONV_UK_F64_WIDE_AVX2
#define FASTCONV_UK_F64_WIDE_AVX2

#include "avx2.h"

FC_WIDE_SET(fc_wide_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_setzero_pd(),
            _mm256_loadu_pd, fc_xload256_d, _mm256_set1_pd, _mm256_fmadd_pd, FC_QFMA256_D,
            _mm256_add_pd, fc_hsum256_d, fc_wts_avx2_d, FC_NO_ACTV, FC_NO_POOLQ, 6, 4, 2,
            2, 1, 2)

#endif
