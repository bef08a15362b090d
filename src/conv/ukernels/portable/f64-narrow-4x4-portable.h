/* double narrow micro-kernel, 4 pixels x 4 channels, portable C. */
#ifndef FASTCONV_UK_F64_NARROW_PORTABLE
#define FASTCONV_UK_F64_NARROW_PORTABLE

#include "portable.h"

FC_HSUM4_EACH(fc_hsum4_portable_d, , double, double, FC_S_HSUM)
FC_KNR(fc_knr_portable_d, , double, double, FC_S_ZERO, FC_S_LOAD, FC_S_FMA,
       fc_hsum4_portable_d, 4, 1)

#endif
