/* double wide micro-kernels (forward 4/4/4/2/2 rows x 1/2/4/6/8 channels; weight
 * gradient 2 channels x 1..5 columns), portable C. */
#ifndef FASTCONV_UK_F64_WIDE_PORTABLE
#define FASTCONV_UK_F64_WIDE_PORTABLE

#include "portable.h"

FC_WTS_BUFFER(fc_wts_portable_d, , double, double, FC_S_STORE, 1)
FC_WIDE_SET(fc_wide_portable_d, , double, double, FC_S_ZERO, FC_S_LOAD, FC_S_XLOAD,
            FC_S_SET1, FC_S_FMA, FC_S_QFMA, FC_S_ADD, FC_S_HSUM, fc_wts_portable_d,
            FC_NO_ACTV, FC_NO_POOLQ, 4, 4, 4, 2, 2, 2)

#endif
