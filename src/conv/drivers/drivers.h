/* Convolution drivers around the micro-kernels of conv/ukernels/: implicit GEMM.
 *
 * Nothing here allocates or spawns threads: src/conv/parallel.h splits the work into
 * items (a strip of output pixels, an image, a group of images), runs them in an OpenMP
 * loop, and hands each thread its own scratch buffers.  An item is computed entirely by
 * one thread in an order fixed by the shapes, so results never depend on the thread
 * count.
 *
 * Every product has the same orientation: rows (MR) are channels, columns (NR) are output
 * pixels, flattened over the batch as j = (n * oh + oy) * ow + ox.  The im2col step writes
 * straight into the packed B panel the micro-kernel reads (no column matrix for the
 * batch), and the tile is written out with the bias (and optionally ReLU) fused in.
 *
 *   forward      y[co, j]   = sum_k W[co, k] col[k, j]          k = (c, ki, kj)
 *   grad weight  gW[co, k] += sum_j gy[co, j] col[k, j]          (per group of images)
 *   grad input   gcol[k, j] = sum_co W[co, k] gy[co, j], scattered into gx (any stride;
 *                stride 1 instead runs the forward driver on gy with flipped weights)
 *
 * Layouts differ only in addressing: channels_first x[n, c, iy, ix] lives at
 * ((n C + c) H + iy) W + ix, channels_last x[n, iy, ix, c] at ((n H + iy) W + ix) C + c.
 *
 *
 * One file per algorithm; each is a template that conv/conv.h includes once per dtype
 * (FC_T the element type, FC_FN(name) its name with the suffix _f or _d).
 */
#ifndef FC_T
#error "conv/drivers/drivers.h is a template: include conv/conv.h"
#endif

#include "gemm.h"
#include "shifted.h"
#include "pixelrow.h"
#include "narrow.h"
#include "wide.h"
#include "winograd-transforms.h"
#include "winograd.h"
#include "depthwise.h"
#include "expand_dw.h"
