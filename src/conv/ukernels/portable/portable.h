/* The portable build's tile and scalar 'intrinsics' (plain C, any compiler and CPU). */
#ifndef FASTCONV_UK_PORTABLE
#define FASTCONV_UK_PORTABLE

#include "../templates.h"

/* ---------------------------------------------------------------- portable ----- */

#define FC_PORT_MR 4
#define FC_PORT_NR 8

#define FC_PORTABLE_KERNEL(NAME, T)                                                     \
    static void NAME(ptrdiff_t kc, const T *A, const T *B, T *C, ptrdiff_t ldc,        \
                     int accumulate)                                                     \
    {                                                                                    \
        T acc[FC_PORT_MR][FC_PORT_NR];                                                   \
        ptrdiff_t k;                                                                     \
        int i, j;                                                                        \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                acc[i][j] = 0;                                                           \
        for (k = 0; k < kc; k++) {                                                       \
            for (i = 0; i < FC_PORT_MR; i++) {                                           \
                T a = A[i];                                                              \
                for (j = 0; j < FC_PORT_NR; j++)                                         \
                    acc[i][j] += a * B[j];                                               \
            }                                                                            \
            A += FC_PORT_MR;                                                             \
            B += FC_PORT_NR;                                                             \
        }                                                                                \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc[i][j] : acc[i][j];    \
    }

#define FC_PORTABLE_KIB(NAME, T)                                                        \
    static void NAME(ptrdiff_t kc, const T *A, const T *xb, const ptrdiff_t *off, T *C, \
                     ptrdiff_t ldc)                                                      \
    {                                                                                    \
        T acc[FC_PORT_MR][FC_PORT_NR];                                                   \
        ptrdiff_t k;                                                                     \
        int i, j;                                                                        \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                acc[i][j] = 0;                                                           \
        for (k = 0; k < kc; k++) {                                                       \
            const T *B = xb + off[k];                                                    \
            for (i = 0; i < FC_PORT_MR; i++) {                                           \
                T a = A[i];                                                              \
                for (j = 0; j < FC_PORT_NR; j++)                                         \
                    acc[i][j] += a * B[j];                                               \
            }                                                                            \
            A += FC_PORT_MR;                                                             \
        }                                                                                \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                C[i * ldc + j] = acc[i][j];                                              \
    }

#define FC_PORTABLE_KIA(NAME, T)                                                        \
    static void NAME(ptrdiff_t kc, const T *xa, const ptrdiff_t *off, const T *B, T *C, \
                     ptrdiff_t ldc, int accumulate)                                      \
    {                                                                                    \
        T acc[FC_PORT_MR][FC_PORT_NR];                                                   \
        const T *a[FC_PORT_MR];                                                          \
        ptrdiff_t p;                                                                     \
        int i, j;                                                                        \
        for (i = 0; i < FC_PORT_MR; i++) {                                               \
            a[i] = xa + off[i];                                                          \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                acc[i][j] = 0;                                                           \
        }                                                                                \
        for (p = 0; p < kc; p++) {                                                       \
            for (i = 0; i < FC_PORT_MR; i++) {                                           \
                T av = a[i][p];                                                          \
                for (j = 0; j < FC_PORT_NR; j++)                                         \
                    acc[i][j] += av * B[j];                                              \
            }                                                                            \
            B += FC_PORT_NR;                                                             \
        }                                                                                \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc[i][j] : acc[i][j];    \
    }

#define FC_S_ZERO 0
#define FC_S_LOAD(p) (*(p))
#define FC_S_STORE(p, v) (*(p) = (v))
#define FC_S_SET1(x) (x)
#define FC_S_FMA(a, b, c) ((c) + (a) * (b))
#define FC_S_ADD(a, b) ((a) + (b))
#define FC_S_HSUM(v) (v)
#define FC_S_XLOAD(p, n) ((void)(n), *(p))
#define FC_S_QFMA(a, b, c, n) FC_S_FMA(a, b, c)

#endif
