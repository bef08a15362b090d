/* float wide micro-kernels, AVX-512F. */
#ifndef FASTCONV_UK_F32_WIDE_AVX512
#define FASTCONV_UK_F32_WIDE_AVX512

#include "avx512.h"

/* Wide kernels: 8/8/5/4/3 rows for 1/2/4/6/8 channels (at most 24 accumulators); the
 * weight gradient 4 channels x up to 5 columns.  The multiply-adds of a row's last
 * vector are masked to its nl lanes (the accumulator's other lanes are kept: masking
 * the loads instead costs an instruction on the multiply-add ports per load:
 * docs/design/algorithms.md). */
FC_WIDE_SET(fc_wide_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
            _mm512_loadu_ps, FC_XLOAD512_F, _mm512_set1_ps, _mm512_fmadd_ps, FC_QFMA512_F,
            _mm512_add_ps, _mm512_reduce_add_ps, fc_wts_avx512_f, fc_act512_f,
            fc_poolq512_f, 8, 8, 5, 4, 3, 4)

#endif
