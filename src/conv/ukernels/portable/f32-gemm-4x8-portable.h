/* float 4 x 8 packed-panel GEMM micro-kernel, portable C. */
#ifndef FASTCONV_UK_F32_GEMM_PORTABLE
#define FASTCONV_UK_F32_GEMM_PORTABLE

#include "portable.h"

FC_PORTABLE_KERNEL(fc_kernel_portable_f, float)

#endif
