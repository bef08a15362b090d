/* float pixel-row micro-kernel, 4 pixels x 8 channels, portable C. */
#ifndef FASTCONV_UK_F32_PX_PORTABLE
#define FASTCONV_UK_F32_PX_PORTABLE

#include "portable.h"

FC_KPX(fc_kpx_portable_f, , float, float, FC_S_ZERO, FC_S_LOAD, FC_S_STORE, FC_S_SET1,
       FC_S_FMA, FC_S_ADD, 4, 8, 1)

#endif
