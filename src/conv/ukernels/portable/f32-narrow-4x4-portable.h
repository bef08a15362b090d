/* float narrow micro-kernel, 4 pixels x 4 channels, portable C. */
#ifndef FASTCONV_UK_F32_NARROW_PORTABLE
#define FASTCONV_UK_F32_NARROW_PORTABLE

#include "portable.h"

FC_HSUM4_EACH(fc_hsum4_portable_f, , float, float, FC_S_HSUM)
FC_KNR(fc_knr_portable_f, , float, float, FC_S_ZERO, FC_S_LOAD, FC_S_FMA,
       fc_hsum4_portable_f, 4, 1)

#endif
