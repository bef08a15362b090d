/* Vectorised pointwise activations (src/_activations.pyx runs them on each thread's
 * share of an array).
 *
 * fc_tanh_f: float32 tanh as x P(x^2) / Q(x^2), degrees 6 and 3, with x clamped to
 * [-9.1, 9.1] (beyond, tanh rounds to +-1 in float32).  The coefficients are this
 * project's own fit (iteratively reweighted least squares on the relative error over
 * [0, 9.1], rounded to float32): 7.5e-9 relative error in exact arithmetic, at most 6 ulp
 * evaluated in float32 -- the rounding of P and Q near |x| = 7, where the result is just
 * below 1 (tests/test_activations.py sweeps the range).  About 15 vector operations and
 * one division per vector, branch-free: the compiler vectorises the loop, built for
 * AVX-512, AVX2 and the baseline (target_clones, picked at load time).  NaN stays NaN;
 * the sign of zero is kept.
 */
#ifndef FASTCONV_ACTIVATION_KERNELS_H
#define FASTCONV_ACTIVATION_KERNELS_H

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6 && defined(__linux__) && \
    (defined(__x86_64__) || defined(__i386__))
#define FC_ACT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FC_ACT_CLONES
#endif

static inline float fc_tanh1_f(float x)
{
    /* clamp: a NaN fails both tests and passes through */
    const float c = x > 9.1f ? 9.1f : (x < -9.1f ? -9.1f : x);
    const float z = c * c;
    float p = -8.228282015161972e-14f;
    p = p * z + 5.1776263831904146e-11f;
    p = p * z + -2.0019033541984754e-08f;
    p = p * z + 1.1103905308118556e-05f;
    p = p * z + 0.0030991602689027786f;
    p = p * z + 0.13079722225666046f;
    p = p * z + 1.0f;
    float q = 0.00025391479721292853f;
    q = q * z + 0.024476099759340286f;
    q = q * z + 0.4641304910182953f;
    q = q * z + 1.0f;
    return (c * p) / q;
}

/* y[i] = tanh(x[i]) for i < n; x == y is allowed (in place). */
FC_ACT_CLONES static void fc_tanh_f(const float *x, float *y, ptrdiff_t n)
{
    ptrdiff_t i;
    for (i = 0; i < n; i++)
        y[i] = fc_tanh1_f(x[i]);
}

#endif
