/* float 4 x 8 indirect-B and indirect-A GEMM micro-kernels (the shifted algorithm), portable C. */
#ifndef FASTCONV_UK_F32_GEMMI_PORTABLE
#define FASTCONV_UK_F32_GEMMI_PORTABLE

#include "portable.h"

FC_PORTABLE_KIB(fc_kib_portable_f, float)
FC_PORTABLE_KIA(fc_kia_portable_f, float)

#endif
